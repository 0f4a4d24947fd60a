"""Referral reasons fire on made-up inputs, survive save / load / ONNX export, and adapt behaves."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from leukodx.cli import main
from leukodx.data.synthetic import generate
from leukodx.data.torch_dataset import ImageDataset
from leukodx.errors import LeukodxError
from leukodx.heads.referral import Referral, fit_referral, lab_shift_flag
from leukodx.models import create_model
from leukodx.models.artifact import ModelBundle
from leukodx.predict import Predictor
from leukodx.predict.lean import OnnxPredictor
from leukodx.predict.onnx_export import export_onnx
from leukodx.train.adapt import adapt_bundle
from leukodx.train.referral import fit_bundle_referral
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

S = 64


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Offline ImageNet Lite0 + a head adapted on generated cells, with its referral fitted."""
    root = tmp_path_factory.mktemp("cells")
    index = generate(root, n_per_class=16, size=S, classes=["round", "large", "cleft"])
    m = create_model("efficientnet_lite0", 3, pretrained=True).eval()
    b = ModelBundle(m, "efficientnet_lite0", index.classes, {"image_size": S, "mean": [0.5] * 3, "std": [0.5] * 3})
    ds = ImageDataset(index, Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    x, y = ds.images, ds.labels.numpy()
    tr, va = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    b, _ = adapt_bundle(b, x[tr], y[tr])
    fit_bundle_referral(b, x[tr], y[tr], x[va], y[va], target_accuracy=0.9, unfamiliar_rate=0.05)
    return b, index, root


def made_up(tmp_path):
    blank = Image.new("RGB", (S, S), (236, 232, 240))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8))
    text = Image.new("RGB", (S, S), (250, 250, 250))
    d = ImageDraw.Draw(text)
    for i in range(4):
        d.text((2, 2 + 15 * i), "lab report 12", fill=(20, 20, 20))
    photo = Image.fromarray((np.mgrid[0:S, 0:S][1] * 4 % 256).astype(np.uint8)).convert("RGB")  # stripes
    out = {}
    for name, im in {"blank": blank, "noise": noise, "text": text, "stripes": photo}.items():
        im.save(tmp_path / f"{name}.png")
        out[name] = tmp_path / f"{name}.png"
    return out


def test_reasons_fire_on_made_up_inputs_and_not_on_known_cells(fitted, tmp_path):
    b, index, _ = fitted
    files = made_up(tmp_path)
    preds, errors = Predictor(b).predict_paths(list(files.values()))
    got = {p.path.rsplit("/", 1)[1][:-4]: p for p in preds}
    assert not errors and all(p.refer for p in preds)
    assert got["blank"].refer_reason == "unreadable"
    assert got["noise"].refer_reason == "not_a_cell"
    assert got["text"].refer_reason in ("unreadable", "not_a_cell", "unfamiliar_image")
    assert got["stripes"].refer_reason in ("not_a_cell", "unfamiliar_image")
    cells, _ = Predictor(b).predict_paths([r.path for r in index.records[1::8]])  # validation-side cells
    assert sum(p.refer_reason in ("unreadable", "not_a_cell", "unfamiliar_image") for p in cells) <= 1
    assert np.mean([p.label == index.classes[r.label] for p, r in zip(cells, index.records[1::8])]) >= 0.8


def test_not_a_cell_refuses_objects_no_blood_stain_colours_and_keeps_stained_cells_in_any_light():
    from leukodx.heads.image_checks import image_problem

    def disc(fg, bg=(235, 218, 205), lamp=(1.0, 1.0, 1.0)):
        im = Image.new("RGB", (96, 96), bg)
        ImageDraw.Draw(im).ellipse((30, 30, 66, 66), fill=fg)
        return (np.asarray(im, np.float32) * lamp).clip(0, 255).astype(np.uint8)

    purple = disc((95, 45, 135))
    assert image_problem(purple) is None
    assert image_problem(disc((95, 45, 135), lamp=(1.0, 0.95, 0.7))) is None  # a yellow lamp: still a stain
    assert image_problem(disc((95, 45, 135), lamp=(0.75, 0.85, 1.0))) is None  # a blue one
    assert image_problem(np.repeat(purple.mean(2, keepdims=True), 3, 2).astype(np.uint8)) is None  # grayscale
    assert image_problem(disc((110, 70, 40))) == "not_a_cell"   # brown: coffee, wood, a cat
    assert image_problem(disc((60, 140, 60))) == "not_a_cell"   # green
    assert image_problem(disc((200, 170, 30))) == "not_a_cell"  # yellow


def test_invalid_output_is_always_referred():
    rule = Referral(0.8, 0.3)
    probs = np.array([[np.nan, np.nan], [0.95, 0.05], [0.6, 0.4], [0.99, 0.01]])
    dist = np.array([0.1, 0.1, 0.1, 0.5])
    assert rule.reasons(probs, dist) == ["invalid_output", None, "low_confidence", "unfamiliar_image"]
    s = rule.score(probs, dist)
    assert np.isinf(s[0]) and s[1] < 1 <= min(s[2], s[3])
    fitted = fit_referral(np.array([[0.9, 0.1]] * 50 + [[0.6, 0.4]] * 50), np.array([0] * 60 + [1] * 40),
                          np.linspace(0, 1, 100), target_accuracy=0.99, unfamiliar_rate=0.1)
    assert 0.85 < fitted.unfamiliar < 0.95 and fitted.confidence >= 0.6


def test_score_puts_referred_first_then_least_confident():
    rule = Referral(0.8, 0.3)
    p_top = np.array([0.99, 0.85, 0.95, 0.7, 0.99, 0.6])
    probs = np.c_[p_top, 1 - p_top]
    dist = np.array([0.05, 0.05, 0.25, 0.05, 0.9, 0.05])  # the third: close to the threshold, yet confident
    referred = [r is not None for r in rule.reasons(probs, dist)]
    s = rule.score(probs, dist)
    assert referred == [False, False, False, True, True, True] and ((s >= 1) == referred).all()
    assert s[1] > s[2] > s[0]        # kept: the less confident answer ranks as more doubtful, whatever its distance
    assert s[5] > s[3] > s[4] >= 1   # referred: likewise
    assert (rule.ratio(probs, dist) >= 1).tolist() == referred


def test_thresholds_survive_save_load_and_onnx(fitted, tmp_path):
    b, index, _ = fitted
    b.save(tmp_path / "m.pt")
    loaded = ModelBundle.load(tmp_path / "m.pt")
    assert loaded.refer_threshold == pytest.approx(b.refer_threshold)
    assert loaded.unfamiliar_threshold == pytest.approx(b.unfamiliar_threshold)
    assert loaded.reference.shape == b.reference.shape
    onnx = export_onnx(loaded, tmp_path / "m.onnx")
    files = list(made_up(tmp_path).values()) + [r.path for r in index.records[::9]]
    t, _ = Predictor(loaded).predict_paths(files)
    o, _ = OnnxPredictor(onnx).predict_paths(files)
    assert OnnxPredictor(onnx).referral == loaded.referral
    for a, c in zip(t, o):
        assert (a.label, a.refer, a.refer_reason) == (c.label, c.refer, c.refer_reason)
        assert a.unfamiliarity == pytest.approx(c.unfamiliarity, abs=1e-3)


def test_broken_model_files_are_refused(fitted, tmp_path):
    b, _, _ = fitted
    b.save(tmp_path / "ok.pt")
    d = torch.load(tmp_path / "ok.pt", weights_only=True)
    cases = {"temperature": ("temperature", 0.0), "nan_t": ("temperature", float("nan")),
             "threshold": ("refer_threshold", float("nan")), "classes": ("classes", ["a", "b"]),
             "kwargs": ("model_kwargs", {"drop_rate": {"x": 1}})}
    for name, (k, v) in cases.items():
        torch.save({**d, k: v}, tmp_path / f"{name}.pt")
        with pytest.raises(LeukodxError, match="refused|do not fit"):
            ModelBundle.load(tmp_path / f"{name}.pt")
    sd = dict(d["state_dict"])
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key] = torch.full_like(sd[key], float("nan"))
    torch.save({**d, "state_dict": sd}, tmp_path / "nan.pt")
    with pytest.raises(LeukodxError, match="NaN"):
        ModelBundle.load(tmp_path / "nan.pt")


def test_adapt_writes_a_new_file_and_refuses_unknown_classes(fitted, tmp_path):
    b, _, _ = fitted
    b.save(tmp_path / "src.pt")
    before = (tmp_path / "src.pt").read_bytes()
    lab = generate(tmp_path / "lab", n_per_class=6, size=S, seed=5, classes=["round", "large", "lobed"])
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "x.pt"), "--quiet"]) == 2
    assert not (tmp_path / "x.pt").exists()
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "src.pt")]) == 2
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "new.pt"), "--add-classes",
                 "--quiet"]) == 0
    assert (tmp_path / "src.pt").read_bytes() == before
    new = ModelBundle.load(tmp_path / "new.pt")
    assert new.classes == list(b.classes) + ["lobed"]
    assert new.info["adapted"]["per_class"] == {"round": 6, "large": 6, "lobed": 6}
    assert "Adaptation data" in (tmp_path / "new.md").read_text()
    missing = [c for c in new.classes if c not in ("round", "large", "lobed")]  # the source's classes this lab lacks
    assert missing and new.info["adapted"]["classes_without_cells"] == missing
    assert f"Classes without adaptation cells: {', '.join(missing)}" in (tmp_path / "new.md").read_text()
    preds, _ = Predictor(new).predict_paths([r.path for r in lab.records])
    assert np.mean([p.label == lab.classes[r.label] for p, r in zip(preds, lab.records)]) >= 0.8
    assert json.dumps(new.info["adapted"])  # plain data


def test_an_interrupted_adapt_leaves_no_model_file_and_can_be_run_again(fitted, tmp_path, monkeypatch):
    import leukodx.train.adapt as adapt_module

    b, _, _ = fitted
    b.save(tmp_path / "src.pt")
    lab = generate(tmp_path / "lab", n_per_class=4, size=S, seed=5, classes=list(b.classes)[:2])
    out = tmp_path / "models" / "a.pt"  # a folder that does not exist yet
    args = ["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(out), "--quiet", "--no-cell-probe"]

    def interrupted(*_):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(adapt_module, "adapt_card", interrupted)
        assert main(args) == 130  # Ctrl-C while the card is being written
    assert not out.exists() and not list(out.parent.glob("*.tmp"))  # no model file without its card
    assert main(args) == 0 and out.with_suffix(".md").is_file() and ModelBundle.load(out).info["adapted"]


def test_conformal_sets_reach_their_coverage_and_travel_with_the_model(fitted, tmp_path):
    from leukodx.heads.conformal import ConformalSets
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1, (4000, 5))
    y = rng.integers(0, 5, 4000)
    logits[np.arange(4000), y] += 1.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    c = ConformalSets(0.1).fit(p[:2000], y[:2000])
    member = c.predict_set(p[2000:])
    assert 0.88 <= member[np.arange(2000), y[2000:]].mean() <= 0.93 and member.any(1).all()
    b, index, _ = fitted
    assert b.conformal_qhat is not None
    b.save(tmp_path / "m.pt")
    onnx = export_onnx(ModelBundle.load(tmp_path / "m.pt"), tmp_path / "m.onnx")
    files = [r.path for r in index.records[::7]]
    t, _ = Predictor.load(tmp_path / "m.pt").predict_paths(files)
    o, _ = OnnxPredictor(onnx).predict_paths(files)
    assert all(a.prediction_set == z.prediction_set and a.label in a.prediction_set for a, z in zip(t, o))


def test_adapt_fits_on_turned_and_mirrored_copies():
    from leukodx.transforms.views import dihedral_views

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    views = dihedral_views(x, 8)
    assert torch.equal(views[0], x) and len(views) == 8
    assert len({v.numpy().tobytes() for v in views}) == 8  # eight different arrangements
    assert all(sorted(v[0, 0].flatten().tolist()) == sorted(x[0, 0].flatten().tolist()) for v in views)
    with pytest.raises(Exception, match="views"):
        adapt_bundle(None, x, np.array([0, 1]), views=9)


def test_lab_shift_flag_fires_on_many_unfamiliar_images_only():
    ok = ["unfamiliar_image"] * 3 + [None] * 97  # 3%: what a model's own lab gives
    assert lab_shift_flag(ok) is None and lab_shift_flag([]) is None
    assert lab_shift_flag(["low_confidence"] * 60 + [None] * 40) is None  # hard cells, not another lab
    flag = lab_shift_flag(["unfamiliar_image"] * 20 + ["low_confidence"] * 10 + [None] * 70)
    assert flag.startswith("20 of 100 images (20%)") and "leukodx adapt" in flag
    assert lab_shift_flag(["unfamiliar_image"] * 3 + [None] * 7) is None  # 3 of 10 is not yet significant


def test_cross_fitted_distances_leave_out_the_own_slide_and_widen_the_threshold():
    from leukodx.heads.familiarity import KNNDistance
    rng = np.random.default_rng(0)
    # 9 ordinary slides near one direction, 1 odd slide near another; 10 images each
    base, odd = np.eye(16)[0], np.eye(16)[1]
    X = np.stack([base + 0.05 * rng.standard_normal(16) for _ in range(90)] +
                 [0.6 * base + odd + 0.05 * rng.standard_normal(16) for _ in range(10)])
    groups = np.repeat(np.arange(10), 10)
    knn = KNNDistance(n_reference=100, k=3).fit(X, np.zeros(100, int))
    plain, cross = knn.distance(X), knn.cross_fitted_distance(X, groups)
    assert plain.max() < 0.05  # every image finds itself in the reference
    assert cross[90:].min() > 0.1 > cross[:90].max()  # the odd slide, scored without itself, is far
    val = plain[:90] + 0.02  # a validation side drawn from ordinary slides only
    probs, y = np.tile([[0.9, 0.1]], (90, 1)), np.zeros(90, int)
    alone = fit_referral(probs, y, val, unfamiliar_rate=0.05)
    pooled = fit_referral(probs, y, val, unfamiliar_rate=0.05, more_distances=cross)
    assert pooled.unfamiliar > 0.1 > alone.unfamiliar  # the odd slide's images stop counting as unfamiliar


def test_adapted_lab_cells_stop_counting_as_unfamiliar(fitted, tmp_path):
    from leukodx.evaluate.evaluate_run import bundle_outputs
    b, _, _ = fitted
    lab = generate(tmp_path / "lab", n_per_class=12, size=S, seed=7, classes=["round", "large", "cleft"])
    ds = ImageDataset(lab, Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    cast = torch.tensor([1.0, 0.85, 0.45]).view(1, 3, 1, 1)  # another lab's yellow lamp
    x, y = (ds.images.float() * cast).round().to(torch.uint8), ds.labels.numpy()
    shots, rest = np.arange(len(y)) % 3 == 0, np.arange(len(y)) % 3 != 0
    _, _, before = bundle_outputs(b, x[rest])
    assert (before > b.unfamiliar_threshold).mean() >= 0.5  # the shifted lab is unfamiliar to the model
    new, report = adapt_bundle(b, x[shots], y[shots])
    _, _, after = bundle_outputs(new, x[rest])
    assert (after > new.unfamiliar_threshold).mean() <= 0.2
    assert report["unfamiliar_threshold"][1] >= report["unfamiliar_threshold"][0] == b.unfamiliar_threshold
    assert len(new.reference) == len(b.reference) + 8 * int(shots.sum())  # every view of every cell
    own = [bundle_outputs(m, ds.images[::5])[2] for m in (b, new)]  # unshifted cells: no farther than before
    assert (own[1] <= own[0] + 1e-5).all()


def test_views_average_turned_and_mirrored_copies_in_torch_and_onnx(fitted, tmp_path):
    """A model file with views = 8 answers the same for every quarter turn / mirror image of a cell,
    keeps its views through save / load and ONNX export, and refuses a view count it cannot use."""
    import copy

    from leukodx.config import TrainConfig
    from leukodx.errors import ConfigError
    from leukodx.predict.onnx_export import OnnxRunner
    from leukodx.transforms.views import dihedral_views

    b, index, _ = fitted
    ds = ImageDataset(index, Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    x, y = ds.images, ds.labels.numpy()
    tta = copy.deepcopy(b)
    tta.views = 8
    fit_bundle_referral(tta, x[::2], y[::2], x[1::2], y[1::2], target_accuracy=0.9, unfamiliar_rate=0.05)
    xn = (x[:6].float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        one = [b.net()(v.contiguous())[0].numpy() for v in dihedral_views(xn, 8)]
        turned = [[t.numpy() for t in tta.net()(v.contiguous())] for v in dihedral_views(xn, 8)]
    assert not all(np.allclose(z, one[0], atol=1e-3) for z in one)  # one view: logits change with the turn
    for z, d in turned:  # eight views: they do not
        assert np.allclose(z, turned[0][0], atol=1e-4) and np.allclose(d, turned[0][1], atol=1e-4)
    tta.save(tmp_path / "tta.pt")
    back = ModelBundle.load(tmp_path / "tta.pt")
    assert back.views == 8 and np.allclose(back.net()(xn)[0].detach().numpy(), turned[0][0], atol=1e-3)
    onnx = export_onnx(back, tmp_path / "tta.onnx")
    with torch.no_grad():
        z, dz = back.net()(torch.cat([xn, xn[:1]]))  # another batch size than the export's
        logits, dist = OnnxRunner(onnx)(torch.cat([xn, xn[:1]]))
    assert np.allclose(logits.numpy(), z.numpy(), atol=1e-3) and np.allclose(dist.numpy(), dz.numpy(), atol=1e-3)
    files = [r.path for r in index.records[::5]]
    t, _ = Predictor.load(tmp_path / "tta.pt").predict_paths(files)
    o, _ = OnnxPredictor(onnx).predict_paths(files)
    assert [a.label for a in t] == [a.label for a in o] and [a.refer_reason for a in t] == [a.refer_reason for a in o]
    # adapting a view-averaging model adds one reference row per cell (its features are already averaged)
    n_ref = len(tta.reference)
    few = np.arange(0, len(y), 4)[:12]
    assert len(set(y[few])) == 3
    new, _ = adapt_bundle(tta, x[few], y[few])
    assert len(new.reference) == n_ref + 12 and new.views == 8
    bad = torch.load(tmp_path / "tta.pt", weights_only=True)
    bad["views"] = 3
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(LeukodxError, match="views"):
        ModelBundle.load(tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="tta_views"):
        TrainConfig(tta_views=3)


def test_adapt_with_finetuning_moves_the_body_and_rebuilds_the_reference(fitted, tmp_path, monkeypatch):
    """`--mode head+finetune`: a new file whose every layer learnt from the lab's cells, the source file
    untouched, the lab's cells (every view) as the whole unfamiliar-image reference, the card saying so."""
    from leukodx.evaluate.evaluate_run import bundle_outputs
    from leukodx.train.adapt import FINETUNE

    monkeypatch.setitem(FINETUNE, "steps", 30)  # a short run keeps the test fast
    b, _, _ = fitted
    b.save(tmp_path / "src.pt")
    before = (tmp_path / "src.pt").read_bytes()
    lab = generate(tmp_path / "lab", n_per_class=12, size=S, seed=7, classes=["round", "large", "cleft"])
    for r in lab.records:  # another lab's yellow lamp
        a = np.asarray(Image.open(r.path).convert("RGB"), np.float32) * [1.0, 0.85, 0.45]
        Image.fromarray(a.round().astype(np.uint8)).save(r.path)
    shots = [r for i, r in enumerate(lab.records) if i % 3 == 0]
    for r in shots:  # a folder of 4 labelled cells per class
        dst = tmp_path / "shots" / lab.classes[r.label] / r.path.rsplit("/", 1)[1]
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(r.path).read_bytes())
    assert main(["adapt", str(tmp_path / "src.pt"), str(tmp_path / "shots"), "--out", str(tmp_path / "ft.pt"),
                 "--mode", "head+finetune", "--quiet"]) == 0
    assert (tmp_path / "src.pt").read_bytes() == before
    new = ModelBundle.load(tmp_path / "ft.pt")
    assert new.info["adapted"]["finetune"] == FINETUNE and "fine-tuned" in (tmp_path / "ft.md").read_text()
    src = dict(ModelBundle.load(tmp_path / "src.pt").model.named_parameters())
    moved = {n for n, p in new.model.named_parameters() if not torch.equal(p, src[n])}
    assert any(n.startswith("conv_stem") for n in moved) and any(n.startswith("blocks.6") for n in moved)
    assert len(new.reference) == 8 * len(shots)  # the lab's cells alone
    rest = [r for i, r in enumerate(lab.records) if i % 3 != 0]
    ds = ImageDataset(lab.subset([i for i in range(len(lab.records)) if i % 3 != 0]),
                      Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    _, probs, dist = bundle_outputs(new, ds.images)
    assert (dist > new.unfamiliar_threshold).mean() <= 0.2  # the lab's other cells are familiar now
    assert (probs.argmax(1) == ds.labels.numpy()).mean() >= 0.8 and len(rest) == len(ds.labels)


def test_expected_classes_limit_the_answer_and_refer_the_unexpected():
    from leukodx.heads.conformal import ConformalSets
    from leukodx.heads.expected import expected_mask, restrict
    from leukodx.predict.results import Prediction, to_prediction

    classes = ["erythroblast", "lymphocyte", "monocyte"]
    with pytest.raises(LeukodxError, match="unknown to this model: platelet"):
        expected_mask("lymphocyte,platelet", classes)
    with pytest.raises(LeukodxError, match="at least two"):
        expected_mask("lymphocyte", classes)
    mask = expected_mask(" monocyte, lymphocyte ", classes)
    assert mask.tolist() == [False, True, True] and expected_mask(None, classes) is None
    q, share = restrict(np.array([[0.7, 0.2, 0.1], [0.1, 0.85, 0.05], [0.0, 0.5, 0.5]]), mask)
    assert q[0].tolist() == pytest.approx([0, 2 / 3, 1 / 3]) and share.tolist() == pytest.approx([0.3, 0.9, 1.0])
    q, share = restrict(np.array([[1.0, 0.0, 0.0], [np.nan, np.nan, np.nan]]), mask)
    assert q[0].tolist() == [0, 0.5, 0.5] and share[0] == 0 and np.isnan(q[1]).all()
    assert Referral(0.8, 1.0).reasons(q, np.zeros(2), None, share) == ["unexpected_class", "invalid_output"]
    rule, sets = Referral(0.8, 1.0), ConformalSets(0.1)
    sets.qhat_ = 0.75  # classes with probability >= 0.25 join the set
    mostly_excluded = to_prediction("a", np.array([0.7, 0.2, 0.1]), 0.1, None, classes, rule, sets, mask)
    assert (mostly_excluded.label, mostly_excluded.refer_reason) == ("lymphocyte", "unexpected_class")
    assert mostly_excluded.probability == pytest.approx(2 / 3)
    assert mostly_excluded.prediction_set == ["lymphocyte"]  # erythroblast left the set; never empty
    assert mostly_excluded.expected_classes == ["lymphocyte", "monocyte"]
    assert mostly_excluded.expected_share == pytest.approx(0.3)  # what was left out is kept, and survives JSON
    assert Prediction.from_dict(json.loads(json.dumps(mostly_excluded.to_dict()))).expected_share == pytest.approx(0.3)
    clear = to_prediction("b", np.array([0.1, 0.85, 0.05]), 0.1, None, classes, rule, sets, mask)
    assert (clear.label, clear.refer) == ("lymphocyte", False) and clear.probability == pytest.approx(0.85 / 0.9)
    far = to_prediction("c", np.array([0.7, 0.2, 0.1]), 2.0, None, classes, rule, None, mask)
    assert far.refer_reason == "unfamiliar_image"  # the more serious reason wins
    unlimited = to_prediction("d", np.array([0.7, 0.2, 0.1]), 0.1, None, classes, rule, sets)
    assert (unlimited.label, unlimited.refer_reason, unlimited.expected_classes) == ("erythroblast", "low_confidence", None)
    assert unlimited.expected_share is None


def test_predict_classes_option_in_torch_onnx_and_cli(fitted, tmp_path):
    b, index, _ = fitted
    b.save(tmp_path / "m.pt")
    onnx = export_onnx(b, tmp_path / "m.onnx")
    files = [r.path for r in index.records[1::4]]  # validation and training side, every class
    truth = [index.classes[r.label] for r in index.records[1::4]]
    mask = np.array([c != "cleft" for c in b.classes])
    t, _ = Predictor(b).predict_paths(files, expected=mask)
    o, _ = OnnxPredictor(onnx).predict_paths(files, expected=mask)
    for a, c in zip(t, o):
        assert (a.label, a.refer, a.refer_reason) == (c.label, c.refer, c.refer_reason)
    assert all(p.label != "cleft" and p.probabilities["cleft"] == 0 for p in t)
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-6 for p in t)
    kept = [(p, y) for p, y in zip(t, truth) if y != "cleft"]
    assert np.mean([p.label == y for p, y in kept]) >= 0.8
    cleft = [p for p, y in zip(t, truth) if y == "cleft"]
    assert np.mean([p.refer_reason == "unexpected_class" for p in cleft]) >= 0.7
    out = tmp_path / "p.json"
    assert main(["predict", str(Path(files[0]).parent), "--model", str(tmp_path / "m.pt"), "--classes",
                 "round,large", "--out", str(out), "--quiet"]) == 0
    rows = json.loads(out.read_text())["predictions"]
    assert rows and all(set(r["expected_classes"]) == {"round", "large"} and r["label"] in ("round", "large") for r in rows)
    assert main(["predict", files[0], "--model", str(tmp_path / "m.pt"), "--classes", "round,lobed"]) == 2


def test_label_spreading_follows_the_labs_own_clusters():
    from leukodx.heads.adapt import spread_labels

    rng = np.random.default_rng(1)
    a, b = np.eye(6)[0] * 5, np.eye(6)[1] * 5
    labelled = np.stack([a, b]) + rng.normal(0, 0.2, (2, 6))
    unlabelled = np.concatenate([a + rng.normal(0, 0.4, (10, 6)), b + rng.normal(0, 0.4, (10, 6))])
    assert spread_labels(labelled, np.array([3, 5]), unlabelled).tolist() == [3] * 10 + [5] * 10
    assert spread_labels(labelled, np.array([3, 5]), unlabelled[:1], neighbours=50).tolist() == [3]  # k capped


def test_self_training_takes_only_confident_cells_of_classes_the_lab_showed(fitted, tmp_path):
    from leukodx.heads.adapt import PriorLinearHead, self_train

    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0], [0, 4.0], [-4.0, -4.0]])
    labelled = [centres[[0, 0, 1, 1]] + rng.normal(0, 0.3, (4, 2)) for _ in range(2)]  # two views each
    labels = np.array([0, 0, 1, 1])
    clear = np.repeat(centres, 5, axis=0) + rng.normal(0, 0.3, (15, 2))   # 5 cells near each centre
    between = np.array([[2.0, 2.0]])                                       # on the line between classes 0 and 1
    unlabelled = [np.concatenate([clear, between])] * 2
    fit = PriorLinearHead(np.zeros((3, 2)), np.zeros(3), prior=1e-3).fit
    head, n = self_train(fit, labelled, labels, unlabelled, threshold=0.95)
    # the cells near class 0 and 1 join; class 2 (no labelled cell) and the ambiguous cell do not
    assert n == 10
    assert head.predict(clear[:10]).tolist() == [0] * 5 + [1] * 5
    # a confident answer that label spreading over the lab's cells contradicts is not learnt from
    import leukodx.heads.adapt as heads_adapt

    real = heads_adapt.spread_labels
    heads_adapt.spread_labels = lambda *a, **k: np.r_[[1], real(*a, **k)[1:]]  # cell 0 (near class 0) spread to 1
    try:
        _, n_agree = self_train(fit, labelled, labels, unlabelled, threshold=0.95)
        _, n_off = self_train(fit, labelled, labels, unlabelled, threshold=0.95, neighbours=0)
    finally:
        heads_adapt.spread_labels = real
    assert (n_agree, n_off) == (9, 10)
    # through the CLI: the lab's unlabelled folder, the card and the report say what happened
    b, _, _ = fitted
    b.save(tmp_path / "src.pt")
    lab = generate(tmp_path / "lab", n_per_class=4, size=S, seed=6, classes=list(b.classes))
    more = generate(tmp_path / "more", n_per_class=6, size=S, seed=7, classes=list(b.classes))
    (Path(more.root) / "round" / "broken.png").write_bytes(b"not an image")  # skipped, not fatal
    for name in ("blank", "noise"):  # the image checks keep them out (unreadable, not_a_cell)
        (Path(more.root) / "round" / f"{name}.png").write_bytes(made_up(tmp_path)[name].read_bytes())
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "st.pt"),
                 "--unlabelled", more.root, "--quiet"]) == 0
    report = ModelBundle.load(tmp_path / "st.pt").info["adapted"]
    assert report["unlabelled"] == 18 and 0 < report["pseudo_labelled"] <= 18
    assert "Self-training" in (tmp_path / "st.md").read_text()
    preds, _ = Predictor.load(tmp_path / "st.pt").predict_paths([r.path for r in more.records])
    assert np.mean([p.label == more.classes[r.label] for p, r in zip(preds, more.records)]) >= 0.8


def test_adapt_with_a_tapped_stage_starts_from_the_source_answers_and_travels(fitted, tmp_path):
    """`--tap-stage 5`: the head also sees block 5's pooled features, standardised on the lab's cells and
    entering with zero weights (so before the refit the answers are the source model's); the file reloads
    as the same network, exports to ONNX with the same answers, and a bad stage is a clear error."""
    from leukodx.models.inference import logits_for
    from leukodx.models.stage_tap import StageTap
    from leukodx.train.adapt import _tap, auto_tap_stage

    b, _, _ = fitted
    lab = generate(tmp_path / "lab", n_per_class=8, size=S, seed=9, classes=list(b.classes))
    ds = ImageDataset(lab, Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    x, y = ds.images, ds.labels.numpy()
    import copy
    tapped = copy.deepcopy(b)
    _tap(tapped, 5, x, views=8)
    assert isinstance(tapped.model, StageTap) and tapped.model_kwargs["tap_stage"] == 5
    half = (0.5,) * 3
    assert np.allclose(logits_for(tapped.model, x, half, half), logits_for(b.model, x, half, half), atol=1e-4)
    feats = logits_for(tapped.model, x, half, half, pre_logits=True, views=8)[:, :tapped.model.tap_channels]
    assert abs(float(feats.mean())) < 0.2 and float(feats.std()) < 1.5  # standardised on these cells
    with pytest.raises(LeukodxError, match="tap_stage"):
        _tap(copy.deepcopy(b), 6, x, views=1)  # the last block is the head's own input
    b.save(tmp_path / "src.pt")
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "tap.pt"), "--tap-stage", "auto",
                 "--quiet"]) == 0
    new = ModelBundle.load(tmp_path / "tap.pt")
    assert isinstance(new.model, StageTap) and new.info["adapted"]["tap_stage"] == 5
    assert auto_tap_stage(b) == 5 and auto_tap_stage(new) is None  # 'auto' never taps twice
    assert auto_tap_stage(b, "head+finetune") is None  # fine-tuning moves every block itself
    assert main(["adapt", str(tmp_path / "src.pt"), lab.root, "--out", str(tmp_path / "plain.pt"), "--tap-stage", "none",
                 "--quiet"]) == 0
    plain = ModelBundle.load(tmp_path / "plain.pt")
    assert not isinstance(plain.model, StageTap) and plain.info["adapted"]["tap_stage"] is None
    assert float(new.model.classifier.weight[:, :new.model.tap_channels].abs().sum()) > 0  # the refit used them
    assert len(new.reference) == 8 * len(y)  # the lab's cells alone: the features changed
    assert "block 5" in (tmp_path / "tap.md").read_text()
    files = [r.path for r in lab.records] + list(made_up(tmp_path).values())
    t, _ = Predictor(new).predict_paths(files)
    o, _ = OnnxPredictor(export_onnx(new, tmp_path / "tap.onnx")).predict_paths(files)
    for a, c in zip(t, o):
        assert (a.label, a.refer_reason) == (c.label, c.refer_reason)
        assert a.probability == pytest.approx(c.probability, abs=1e-3)
    assert np.mean([p.label == lab.classes[r.label] for p, r in zip(t, lab.records)]) >= 0.8
    assert main(["adapt", str(tmp_path / "tap.pt"), lab.root, "--out", str(tmp_path / "twice.pt"), "--tap-stage", "5",
                 "--quiet"]) == 2  # already tapped: said plainly, nothing written
    assert not (tmp_path / "twice.pt").exists()


def test_shifted_validation_copies_place_the_confidence_threshold_but_not_the_unfamiliar_one():
    rng = np.random.default_rng(0)
    # a validation side with no errors: any threshold keeps it all right, so the lowest is chosen
    conf = rng.uniform(0.5, 1.0, 200)
    probs, y, dist = np.stack([conf, 1 - conf], 1), np.zeros(200, int), rng.uniform(0, 1, 200)
    alone = fit_referral(probs, y, dist, target_accuracy=0.99, unfamiliar_rate=0.05)
    assert alone.confidence == pytest.approx(conf[dist <= alone.unfamiliar].min())
    # shifted copies: wrong answers, all under 0.7, at familiar distances, and some very far ones
    sconf = rng.uniform(0.5, 1.0, 200)
    wrong = sconf < 0.7
    sy = np.where(wrong, 1, 0)
    sdist = np.where(np.arange(200) < 20, 50.0, rng.uniform(0, 1, 200))
    pooled = fit_referral(probs, y, dist, 0.99, 0.05, shifted=[(np.stack([sconf, 1 - sconf], 1), sy, sdist)])
    assert pooled.unfamiliar == alone.unfamiliar  # the copies never move the unfamiliar threshold
    assert 0.65 < pooled.confidence <= 0.72  # it now sits just above the copies' errors
    kept = (np.concatenate([conf, sconf]) >= pooled.confidence) & (np.concatenate([dist, sdist]) <= pooled.unfamiliar)
    assert (np.concatenate([y, sy])[kept] == 0).mean() >= 0.99


def test_refer_shifts_in_a_config_are_checked_and_reach_the_fitted_bundle(fitted, tmp_path):
    from leukodx.config import TrainConfig
    from leukodx.errors import ConfigError
    from leukodx.evaluate.robustness import shifted_copies

    with pytest.raises(ConfigError, match="unknown shift"):
        TrainConfig(data="pbc", refer_shifts=["blur_1", "sepia"])
    with pytest.raises(ConfigError, match="refer_shifts"):
        TrainConfig(data="pbc", refer_shifts="blur_1")
    assert TrainConfig(data="pbc", refer_shifts=["blur_1", "jpeg_30"]).refer_shifts == ["blur_1", "jpeg_30"]
    b, index, _ = fitted
    pre = Preprocess(PreprocessConfig(**b.preprocess))
    copies = list(shifted_copies(index.records[:6], pre, ["blur_1", "grayscale"]))
    assert [n for n, _, _ in copies] == ["blur_1", "grayscale"]
    x, y = copies[1][1], copies[1][2]
    assert x.shape == (6, 3, S, S) and list(y) == [r.label for r in index.records[:6]]
    assert torch.allclose(x[:, 0], x[:, 1], atol=1e-5)  # the grayscale copy has no colour left
    ds = ImageDataset(index, pre)
    info = fit_bundle_referral(copy.deepcopy(b), ds.images, ds.labels.numpy(), ds.images[:6], ds.labels.numpy()[:6], 0.9, 0.05,
                               shifted_val=copies)
    assert info["confidence_fitted_on"] == "validation images + copies under blur_1, grayscale"


def test_gray_copy_matches_pillow_in_both_layouts():
    from leukodx.heads.gray_fallback import gray_copy

    a = np.random.default_rng(0).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
    want = np.stack([np.asarray(Image.fromarray(x).convert("L")) for x in a])
    assert (gray_copy(a, -1) == want[..., None]).all()
    t = gray_copy(torch.from_numpy(a).permute(0, 3, 1, 2), 1)
    assert isinstance(t, torch.Tensor) and (t.numpy() == want[:, None]).all()


def test_gray_fallback_answers_unfamiliar_colours_from_the_gray_copy_in_torch_onnx_and_evaluate(fitted, tmp_path):
    """Reference features of gray cells only: colour cells lie far, their gray copies near. With the
    fallback, an image is answered from its gray copy exactly when it is unfamiliar and the copy is not."""
    from leukodx.evaluate.evaluate_run import bundle_outputs
    from leukodx.heads.gray_fallback import gray_copy

    b, index, _ = fitted
    g = copy.deepcopy(b)
    pre = Preprocess(PreprocessConfig(**g.preprocess))
    files = [r.path for r in index.records[::3]]
    colour = torch.from_numpy(np.stack([pre.array(Image.open(f).convert("RGB")) for f in files])).permute(0, 3, 1, 2)
    gray = gray_copy(colour, 1)
    with torch.no_grad():
        feats = g.model.forward_head(g.model.forward_features(pre.normalize(gray)), pre_logits=True)
    g.reference = torch.nn.functional.normalize(feats, dim=1).half().float()  # as the model file stores it
    _, p_colour, d_colour = bundle_outputs(g, colour)
    _, p_gray, d_gray = bundle_outputs(g, gray)
    g.unfamiliar_threshold = float(np.quantile(d_colour, 0.5))
    expect = (d_colour > g.unfamiliar_threshold) & (d_gray <= g.unfamiliar_threshold)
    assert expect.sum() >= 3 and (~expect).sum() >= 3
    assert not Predictor(g).scores(colour)[2].any()  # without the fallback nothing changes
    g.gray_fallback = True
    g.save(tmp_path / "g.pt")
    back = ModelBundle.load(tmp_path / "g.pt")
    assert back.gray_fallback
    _, p, d = bundle_outputs(back, colour)
    np.testing.assert_allclose(p, np.where(expect[:, None], p_gray, p_colour), atol=1e-5)
    np.testing.assert_allclose(d, np.where(expect, d_gray, d_colour), atol=1e-5)
    t, _ = Predictor(back).predict_paths(files)
    o, _ = OnnxPredictor(export_onnx(back, tmp_path / "g.onnx")).predict_paths(files)
    assert [x.grayscale_copy for x in t] == [x.grayscale_copy for x in o] == expect.tolist()
    for a, c, dd in zip(t, o, d):
        assert a.label == c.label and a.unfamiliarity == pytest.approx(float(dd), abs=1e-4)
        assert c.unfamiliarity == pytest.approx(float(dd), abs=1e-3)
    assert json.loads(json.dumps(t[0].to_dict()))["grayscale_copy"] == expect[0]
    # explanations explain what prediction read: the gray copy where it answered from it, with its label
    from leukodx.explain import Explainer

    ex = Explainer(back)
    for f, pred, used in zip(files, t, expect):
        e = ex.explain(f, ["gradcam"])[0]
        assert e.grayscale_copy == used and e.label == pred.label
        spread = np.ptp(e.image.astype(int), axis=2).max()
        assert (spread == 0) == used and ("grayscale" in e.caption) == used
        x = ex.input_of(e)  # what feature maps and faithfulness read: the same input
        assert torch.allclose(x, gray_copy_input(ex, f)) if used else torch.allclose(x, ex.prepare(f)[1])


def gray_copy_input(ex, f):
    from leukodx.heads.gray_fallback import gray_copy

    u8 = ex.prepare(f)[0]
    return ex.pre.normalize(torch.from_numpy(gray_copy(u8[None], channel_axis=3)[0]).permute(2, 0, 1))


def test_adapt_keeps_the_classes_a_lab_names_but_gave_no_cells_and_lowers_the_rest(fitted, tmp_path):
    from leukodx.heads.adapt import PriorLinearHead

    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.3, (6, 2)) for c in ([3.0, 0], [0, 3.0])])
    y = np.repeat([0, 1], 6)
    w0, b0 = rng.normal(0, 1, (3, 2)), np.array([0.0, 0.0, 1.0])
    lowered = PriorLinearHead(w0, b0, prior=1e-2).fit(x, y)
    kept = PriorLinearHead(w0, b0, prior=1e-2, keep=(2,)).fit(x, y)
    assert np.allclose(kept.coef_[2], w0[2]) and np.isclose(kept.intercept_[2], b0[2])  # left as the source had it
    assert lowered.intercept_[2] < b0[2] - 0.1                                          # pushed down on the cells shown
    assert not np.allclose(kept.coef_[:2], w0[:2])                                      # the shown classes still learn
    # through the CLI: the lab names its classes; the one it gave no cells for keeps its row, the card says so
    b, _, _ = fitted
    b.save(tmp_path / "src.pt")
    shown = [c for c in b.classes][:2]
    lab = generate(tmp_path / "lab", n_per_class=4, size=S, seed=8, classes=shown)
    args = ["adapt", str(tmp_path / "src.pt"), lab.root, "--quiet", "--out"]
    assert main(args + [str(tmp_path / "k.pt"), "--classes", ",".join(b.classes)]) == 0
    report = ModelBundle.load(tmp_path / "k.pt").info["adapted"]
    assert report["kept_classes"] == list(b.classes[2:]) and report["classes_without_cells"] == []
    assert "left as the source model has them" in (tmp_path / "k.md").read_text()
    src_head = ModelBundle.load(tmp_path / "src.pt").model.get_classifier()
    new_head = ModelBundle.load(tmp_path / "k.pt").model.get_classifier()
    # adapt taps block 5 by default: the source's columns come last, the tapped block's first (zero where kept)
    tapped, own = new_head.weight[:, :-src_head.in_features], new_head.weight[:, -src_head.in_features:]
    assert report["tap_stage"] == 5 and tapped.shape[1] > 0 and not tapped[2:].any()
    assert torch.allclose(own[2:], src_head.weight[2:]) and not torch.allclose(own[:2], src_head.weight[:2])
    assert main(args + [str(tmp_path / "bad.pt"), "--classes", "round,nonsense"]) == 2 and not (tmp_path / "bad.pt").exists()
    # the lab names only the classes it gave cells for: the rest are lowered as outside its classes, without a warning
    assert main(args + [str(tmp_path / "two.pt"), "--classes", ",".join(shown)]) == 0
    report = ModelBundle.load(tmp_path / "two.pt").info["adapted"]
    assert report["outside_lab_classes"] == list(b.classes[2:]) and report["classes_without_cells"] == []
    card = (tmp_path / "two.md").read_text()
    assert "Not among the lab's classes" in card and "give adapt a few cells" not in card
