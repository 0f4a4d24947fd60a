"""The no-white-cell probe: fitted on cells against the same images with their cells painted out, it
refers new cell-less fields as `not_a_cell`, keeps real cells, travels in the model file and the
ONNX graph, and is refitted by adapt on the lab's cells."""
import numpy as np
import pytest
import torch
from PIL import Image

from leukodx.data.images import load_image
from leukodx.data.synthetic import generate
from leukodx.data.torch_dataset import ImageDataset
from leukodx.errors import LeukodxError
from leukodx.heads.cell_probe import NO_CELL, CellProbe, split_distance
from leukodx.heads.referral import Referral
from leukodx.models import create_model
from leukodx.models.artifact import ModelBundle
from leukodx.predict import Predictor
from leukodx.predict.lean import OnnxPredictor
from leukodx.predict.onnx_export import export_onnx
from leukodx.train.adapt import adapt_bundle
from leukodx.train.referral import fit_bundle_cell_probe, fit_bundle_referral, probe_copies
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig
from leukodx.transforms.shifts import build_shift

S = 64
CLASSES = ["round", "large", "cleft"]


def test_probe_flags_its_share_of_cells_and_finds_the_other_kind():
    rng = np.random.default_rng(0)
    cells, empty = rng.normal(0, 1, (400, 16)) + 3 * np.eye(16)[0], rng.normal(0, 1, (400, 16)) + 3 * np.eye(16)[1]
    p = CellProbe(max_flagged=0.02).fit(np.r_[cells, empty], np.r_[np.zeros(400), np.ones(400)])
    assert p.flagged_with_cell_ <= 0.025 and p.flagged_without_cell_ > 0.8
    new_cells, new_empty = rng.normal(0, 1, (200, 16)) + 3 * np.eye(16)[0], rng.normal(0, 1, (200, 16)) + 3 * np.eye(16)[1]
    assert p.predict(new_cells).mean() < 0.1 and p.predict(new_empty).mean() > 0.8
    assert p.to_vector().shape == (17,)
    with pytest.raises(ValueError):
        CellProbe().fit(cells, np.zeros(400))
    with pytest.raises(ValueError):
        CellProbe(max_flagged=0.7).fit(np.r_[cells, empty], np.r_[np.zeros(400), np.ones(400)])
    with pytest.raises(ValueError, match="two groups"):  # one slide: no out-of-fold threshold
        CellProbe().fit(np.r_[cells, empty], np.r_[np.zeros(400), np.ones(400)], groups=np.zeros(800))
    three = CellProbe().fit(np.r_[cells, empty], np.r_[np.zeros(400), np.ones(400)], groups=np.arange(800) % 3)
    assert three.flagged_without_cell_ > 0.8  # fewer groups than folds: one fold per group
    d, no = split_distance([0.1, NO_CELL + 0.3])
    assert np.allclose(d, [0.1, 0.3]) and list(no) == [False, True]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """Offline ImageNet Lite0 + a head adapted on generated cells, referral and cell probe fitted."""
    root = tmp_path_factory.mktemp("cells")
    index = generate(root, n_per_class=16, size=S, classes=CLASSES)
    m = create_model("efficientnet_lite0", 3, pretrained=True).eval()
    b = ModelBundle(m, "efficientnet_lite0", index.classes, {"image_size": S, "mean": [0.5] * 3, "std": [0.5] * 3})
    pre = Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3))
    ds = ImageDataset(index, pre)
    x, y = ds.images, ds.labels.numpy()
    tr, va = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    b, _ = adapt_bundle(b, x[tr], y[tr])
    fit_bundle_referral(b, x[tr], y[tr], x[va], y[va], target_accuracy=0.9, unfamiliar_rate=0.05)
    val = [r for r, v in zip(index.records, va) if v]
    images, no_cell, groups = probe_copies(val, pre)
    report = fit_bundle_cell_probe(b, images, no_cell, groups, max_flagged=0.05)
    b.info = {**b.info, "referral": {"cell_probe": report}}  # as training records it (adapt refits at its share)
    return b, report


def _files(tmp_path, seed):
    """New generated cells and the same files with their cells painted out."""
    index = generate(tmp_path / f"new{seed}", n_per_class=8, size=S, seed=seed, classes=CLASSES)
    cells = [r.path for r in index.records]
    empty = []
    for i, p in enumerate(cells):
        from PIL import Image
        out = tmp_path / f"empty{seed}_{i}.png"
        build_shift("cells_out")(Image.open(p).convert("RGB")).save(out)
        empty.append(str(out))
    return cells, empty


def _flags(predictor, files):
    """The probe's verdict per file (distance output >= NO_CELL), through a predictor's own scores."""
    pre = predictor.pre
    _, d, _ = predictor.scores(np.stack([pre.array(load_image(f)) for f in files]))
    return split_distance(d)[1]


def test_cell_less_fields_are_referred_and_cells_are_kept(probed, tmp_path):
    b, report = probed
    assert report["n_with_cell"] == report["n_without_cell"] == 4 * 24
    assert report["flagged_with_cell_out_of_fold"] <= 0.06 and report["flagged_without_cell_out_of_fold"] >= 0.9
    cells, empty = _files(tmp_path, 11)
    predictor = Predictor(b)
    assert _flags(predictor, empty).mean() >= 0.9 and _flags(predictor, cells).mean() <= 0.25
    preds, _ = predictor.predict_paths(cells + empty)
    on_cells, on_empty = preds[:len(cells)], preds[len(cells):]
    assert all(p.refer for p in on_empty)
    assert np.mean([p.refer_reason == "not_a_cell" for p in on_cells]) <= 0.25
    assert all(p.unfamiliarity < NO_CELL for p in preds)  # users see the k-NN distance itself


def test_the_probe_answers_only_for_familiar_images():
    rule = Referral(0.5, 0.3)
    p = np.array([[0.9, 0.05, 0.05]] * 3)
    assert rule.reasons(p, np.array([NO_CELL + 0.1, NO_CELL + 0.5, 0.1])) == ["not_a_cell", "unfamiliar_image", None]
    assert (rule.score(p[:2], np.array([NO_CELL + 0.1, 0.1])) >= 1).tolist() == [True, False]


def test_the_probe_travels_in_the_model_file_and_the_onnx_graph(probed, tmp_path):
    b, _ = probed
    b.save(tmp_path / "m.pt")
    back = ModelBundle.load(tmp_path / "m.pt")
    assert torch.equal(back.cell_probe, b.cell_probe)
    cells, empty = _files(tmp_path, 12)
    files = cells[::3] + empty[::3]
    onnx = OnnxPredictor(export_onnx(back, tmp_path / "m.onnx"))
    torch_flags = _flags(Predictor(back), files)
    assert torch_flags.sum() >= len(empty[::3]) * 0.9 and (torch_flags == _flags(onnx, files)).all()
    t, _ = Predictor(back).predict_paths(files)
    o, _ = onnx.predict_paths(files)
    assert [p.refer_reason for p in t] == [p.refer_reason for p in o]
    assert np.allclose([p.unfamiliarity for p in t], [p.unfamiliarity for p in o], atol=1e-3)
    d = torch.load(tmp_path / "m.pt", weights_only=True)
    for bad in (d["cell_probe"][:-3], torch.full_like(d["cell_probe"], float("nan"))):
        torch.save({**d, "cell_probe": bad}, tmp_path / "bad.pt")
        with pytest.raises(LeukodxError, match="cell probe"):
            ModelBundle.load(tmp_path / "bad.pt")


def test_adapt_refits_the_probe_on_the_lab_s_cells_or_leaves_it_behind_and_says_so(probed, tmp_path):
    from dataclasses import replace

    from leukodx.train.adapt import adapt_card, adapt_model

    b, _ = probed
    lab = generate(tmp_path / "lab", n_per_class=6, size=S, seed=5, classes=CLASSES)
    ds = ImageDataset(lab, Preprocess(PreprocessConfig(S, mean=(0.5,) * 3, std=(0.5,) * 3)))
    new, report = adapt_bundle(b, ds.images, ds.labels.numpy())  # the network-only step cannot paint files
    assert b.cell_probe is not None and new.cell_probe is None and report["cell_probe_dropped"]
    b.save(tmp_path / "src.pt")
    refit = adapt_model(tmp_path / "src.pt", lab, tmp_path / "refit.pt")
    assert refit["cell_probe"]["n_with_cell"] == refit["cell_probe"]["n_without_cell"] == 4 * 18
    assert refit["cell_probe"]["max_flagged"] == 0.05 and refit["cell_probe"]["grouped_by"] == "slide"
    adapted = ModelBundle.load(tmp_path / "refit.pt")
    assert adapted.cell_probe is not None and not torch.equal(adapted.cell_probe, b.cell_probe)
    cells, empty = _files(tmp_path, 13)
    predictor = Predictor(adapted)  # 18 cells, where the source had 24: a little less sure
    assert _flags(predictor, empty).mean() >= 0.75 and _flags(predictor, cells).mean() <= 0.25
    assert "refitted on the lab's 18 labelled cells" in (tmp_path / "refit.md").read_text()
    more = generate(tmp_path / "more", n_per_class=4, size=S, seed=6, classes=CLASSES)  # unlabelled cells join the probe
    Image.fromarray(np.full((S, S, 3), 255, np.uint8)).save(tmp_path / "blank.png")  # fails the image checks: left out
    both = adapt_model(tmp_path / "src.pt", lab, tmp_path / "both.pt", unlabelled=[r.path for r in more.records]
                       + [tmp_path / "blank.png"])
    assert both["cell_probe"]["n_with_cell"] == both["cell_probe"]["n_without_cell"] == 4 * (18 + 12)
    assert "refitted on the lab's 18 labelled cells and 12 unlabelled ones" in (tmp_path / "both.md").read_text()
    one_case = replace(lab, records=[replace(r, group="case1") for r in lab.records])  # a web app case: one slide
    assert adapt_model(tmp_path / "src.pt", one_case, tmp_path / "case.pt")["cell_probe"]["grouped_by"] == "image; the cells share one slide"
    with_more = adapt_model(tmp_path / "src.pt", one_case, tmp_path / "case2.pt", unlabelled=[r.path for r in more.records])
    assert with_more["cell_probe"]["grouped_by"] == "image; the cells share one slide"  # as the web app's adapt
    assert ModelBundle.load(tmp_path / "case.pt").cell_probe is not None
    without = adapt_model(tmp_path / "src.pt", lab, tmp_path / "none.pt", cell_probe=False)
    assert "cell_probe" not in without and ModelBundle.load(tmp_path / "none.pt").cell_probe is None
    assert "is not carried over" in (tmp_path / "none.md").read_text()
    referred = [np.mean([p.refer for p in Predictor.load(tmp_path / f).predict_paths(empty)[0]])
                for f in ("refit.pt", "none.pt")]
    assert referred[0] > referred[1], referred  # the refitted probe refers cell-less fields the rest let through
    report.update(source_model="src.pt", source_sha256="0" * 64, data="lab", data_files_sha256="0" * 64,
                  added_classes=[], cell_probe={"skipped": "the lab's 2 labelled cells come from one slide"})
    assert "no new one was fitted (the lab's 2" in adapt_card(new, report)


def test_one_validation_slide_leaves_the_model_without_a_probe(probed):
    import copy

    b = copy.deepcopy(probed[0])
    b.cell_probe = None
    report = fit_bundle_cell_probe(b, torch.zeros(4, 3, S, S, dtype=torch.uint8), np.array([0, 0, 1, 1]),
                                   np.array(["slide1"] * 4))
    assert "one slide" in report["skipped"] and b.cell_probe is None
