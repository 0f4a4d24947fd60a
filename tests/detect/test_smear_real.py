"""The shipped smear-field detector on real BCCD test fields (skips without the shared data)."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from leukodx.cli import main
from leukodx.data.smears import load_smear_fields, split_fields
from leukodx.detect.detector import Detector
from leukodx.detect.scale import case_scale
from leukodx.detect.smear import SmearAnalyzer
from leukodx.predict.shipped import shipped_model
from tests.conftest import shared


@pytest.fixture(scope="module")
def setup():
    root = shared("bccd_smears")
    det = Detector.load(shipped_model("smear"))
    fields = load_smear_fields(root)
    p = det.info["split"]
    sides, _ = split_fields(fields, root, p["seed"], p["val_frac"], p["test_frac"])
    test = [fields[i] for i in sides["test"]]
    one_wbc = [f for f in test if f.count("wbc") == 1]
    return det, test, one_wbc


def _img(f, k=1):
    im = Image.open(f.path).convert("RGB")
    return np.asarray(im.resize((im.width // k, im.height // k), Image.Resampling.BILINEAR) if k > 1 else im)


def test_shipped_detector_finds_the_white_cell_in_test_fields(setup):
    det, _, one_wbc = setup
    hits = 0
    for f in one_wbc[:12]:
        d = det.detect(_img(f))
        d = d.confident(det.score_thresholds)
        d = d.keep([k == "wbc" for k in d.kinds])
        hits += len(d) == 1
    assert hits >= 11


def test_scale_is_measured_on_fields_at_another_magnification(setup):
    det, _, one_wbc = setup
    an = SmearAnalyzer(det, predictor=None)
    native, _ = case_scale(an.detect, [_img(f) for f in one_wbc[:3]], det.rbc_diameter, det.score_thresholds["rbc"])
    assert native == pytest.approx(1.0, rel=0.2)
    for k in (2, 3):
        zoom, how = case_scale(an.detect, [_img(f, k) for f in one_wbc[:3]], det.rbc_diameter, det.score_thresholds["rbc"])
        assert zoom == pytest.approx(k, rel=0.25), how


def test_mosaic_of_known_fields_counts_each_white_cell_once(setup):
    det, _, one_wbc = setup
    four = one_wbc[:4]
    ims = [_img(f) for f in four]
    big = np.concatenate([np.concatenate(ims[:2], 1), np.concatenate(ims[2:], 1)], 0)
    an = SmearAnalyzer(det, predictor=None)
    d = an.detect(big)
    assert d.confident(det.score_thresholds).kinds.count("wbc") == 4


def test_smear_command_writes_a_case(setup, tmp_path):
    _, _, one_wbc = setup
    case = tmp_path / "case"
    case.mkdir()
    for f in one_wbc[:3]:
        shutil.copy(f.path, case)
    (case / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    assert main(["smear", str(case), "--out", str(out)]) == 0
    with open(out / "detections.csv") as fh:
        rows = list(csv.DictReader(fh))
    wbc = [r for r in rows if r["kind"] == "wbc"]
    assert len(wbc) == 3 and all(r["label"] and float(r["probability"]) > 0 for r in wbc)
    diff = json.loads((out / "differential.json").read_text())
    assert diff["fields"] == 3 and diff["white_cells_detected"] == 3
    assert diff["low_count_flag"] and [e["path"] for e in diff["unusable_files"]] == ["broken.jpg"]
    assert len(list((out / "fields").glob("*.png"))) == 3 and (out / "report.html").is_file()
    assert main(["smear", str(case), "--out", str(tmp_path / "out2"), "--classes", "lymphocyte,neutrophil"]) == 0
    with open(tmp_path / "out2" / "detections.csv") as fh:
        limited = [r for r in csv.DictReader(fh) if r["kind"] == "wbc"]
    assert len(limited) == 3 and {r["label"] for r in limited} <= {"lymphocyte", "neutrophil"}
    assert json.loads((tmp_path / "out2" / "differential.json").read_text())["expected_classes"] == ["lymphocyte", "neutrophil"]
    assert "Answers limited to: lymphocyte, neutrophil" in (tmp_path / "out2" / "report.html").read_text()
    assert main(["smear", str(case), "--out", str(tmp_path / "out3"), "--classes", "blast,neutrophil"]) == 2
    assert not (tmp_path / "out3").exists()


def test_onnx_detector_gives_the_torch_answers(setup, tmp_path):
    from leukodx.detect.onnx_runtime import OnnxDetector, export_detector_onnx

    det, _, one_wbc = setup
    onnx = OnnxDetector(export_detector_onnx(det, tmp_path / "d.onnx"))
    for f in one_wbc[:2]:
        for k in (1, 2):  # the training size and a smaller field
            a, b = det.detect(_img(f, k)), onnx.detect(_img(f, k))
            a, b = a.keep(a.scores >= 0.3), b.keep(b.scores >= 0.3)
            assert a.kinds == b.kinds
            assert np.allclose(a.boxes, b.boxes, atol=1.0) and np.allclose(a.scores, b.scores, atol=1e-3)
