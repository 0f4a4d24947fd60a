import numpy as np

from leukodx.evaluate.baseline import ColorHistogramClassifier
from leukodx.evaluate.calibration import expected_calibration_error
from leukodx.evaluate.metrics import compute_metrics
from leukodx.heads.referral import choose_threshold
from leukodx.heads.temperature import TemperatureScaler, softmax


def test_metrics_known_values():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]] * 0.8 + 0.2 / 3
    m = compute_metrics(y, probs, ["a", "b", "c"], n_boot=200)
    assert abs(m["accuracy"] - 4 / 6) < 1e-9
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["specificity"][1] == 3 / 4  # one of four non-b predicted b
    lo, hi = m["ci95"]["accuracy"]
    assert lo <= m["accuracy"] <= hi and hi - lo > 0.1


def test_group_bootstrap_is_wider_than_image_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    groups = np.repeat(np.arange(20), 20)
    wrong_groups = groups < 4  # errors cluster in a few groups
    pred = np.where(wrong_groups, 1 - y, y)
    probs = np.eye(2)[pred]
    img = compute_metrics(y, probs, ["a", "b"], n_boot=300)["ci95"]["accuracy"]
    grp = compute_metrics(y, probs, ["a", "b"], groups=groups, n_boot=300)["ci95"]["accuracy"]
    assert grp[1] - grp[0] > img[1] - img[0]


def test_temperature_scaling_reduces_ece_of_overconfident_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), y] += 1.5
    logits *= 4  # overconfident
    ts = TemperatureScaler().fit(logits, y)
    assert ts.temperature_ > 2
    assert expected_calibration_error(ts.predict_proba(logits), y) < expected_calibration_error(softmax(logits), y) / 2


def test_referral_threshold_reaches_target_on_kept_cases():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.3, 1, 1000)
    correct = rng.uniform(0, 1, 1000) < conf  # higher confidence, more often right
    t = choose_threshold(conf, correct, 0.95)
    keep = conf >= t
    assert correct[keep].mean() >= 0.95 and 0 < keep.mean() < 1


def test_colour_baseline_learns_colour():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 30)
    imgs = rng.integers(0, 60, (60, 3, 8, 8)).astype(np.uint8)
    imgs[y == 1, 2] += 150  # class 1 is bluer
    clf = ColorHistogramClassifier().fit(imgs[::2], y[::2])
    assert (clf.predict(imgs[1::2]) == y[1::2]).mean() > 0.9
