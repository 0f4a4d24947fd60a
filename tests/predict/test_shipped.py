"""The shipped ALL model (when present in the install) predicts real images and rejects bad ones."""
import json

import pytest

from leukodx.cli import main
from leukodx.predict.shipped import shipped_model
from tests.conftest import shared


def test_shipped_all_model_on_real_images(tmp_path, bad_files):
    if not shipped_model("all").is_file():
        pytest.skip("shipped ALL model not in this checkout")
    root = shared("taleqani_all")
    folder, bad = bad_files
    classes = ("Benign", "Early", "Pre", "Pro")
    for cls in classes:  # 4 images per class from different slides (these may sit on any split side)
        for k, src in enumerate(sorted((root / cls).iterdir())[::90][:4]):
            (folder / f"real_{cls}_{k}.jpg").write_bytes(src.read_bytes())
    out = tmp_path / "p.json"
    assert main(["predict", str(folder), "--out", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    real = [p for p in res["predictions"] if p["path"].rsplit("/", 1)[1].startswith("real_")]
    assert len(real) == 16
    # a smoke test of real images end to end (chance = 4 of 16); accuracy itself is measured by
    # benchmarks/shipped_model.sh on the grouped test split (results/all_severity_metrics.json)
    assert sum(p["label"] == p["path"].rsplit("/", 1)[1].split("_")[1] for p in real) >= 12
    assert {e["path"].rsplit("/", 1)[1] for e in res["errors"]} == bad


def test_shipped_wbc_model_on_real_images(tmp_path):
    if not shipped_model("wbc").is_file():
        pytest.skip("shipped WBC model not in this checkout")
    root = shared("pbc192")
    folder = tmp_path / "cells"
    folder.mkdir()
    classes = ("basophil", "eosinophil", "lymphocyte", "neutrophil", "platelet")
    for cls in classes:  # the first image of each folder (these may sit on any split side)
        src = min((root / cls).iterdir())
        (folder / f"{cls}.jpg").write_bytes(src.read_bytes())
    out = tmp_path / "p.json"
    assert main(["predict", str(folder), "--model", "wbc", "--out", str(out), "--quiet"]) == 0
    preds = {p["path"].rsplit("/", 1)[1][:-4]: p for p in json.loads(out.read_text())["predictions"]}
    assert sum(preds[c]["label"] == c for c in classes) >= 4
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in preds.values())


def test_shipped_wbc_model_warns_on_another_labs_folder(tmp_path, capsys):
    if not shipped_model("wbc").is_file():
        pytest.skip("shipped WBC model not in this checkout")
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir(), other.mkdir()
    pbc = shared("pbc192")
    for cls in ("eosinophil", "lymphocyte", "monocyte", "neutrophil", "basophil"):
        for k, src in enumerate(sorted((pbc / cls).iterdir())[::97][:6]):
            (own / f"{cls}_{k}.jpg").write_bytes(src.read_bytes())
    for cls in ("eosinophil", "lymphocyte", "monocyte", "neutrophil"):
        for k, src in enumerate(sorted((shared("wbc_external") / "tecom" / cls).iterdir())[:8]):
            (other / f"tecom_{cls}_{k}.bmp").write_bytes(src.read_bytes())
    res = {}
    for name in ("own", "other"):
        assert main(["predict", str(tmp_path / name), "--model", "wbc", "--out", str(tmp_path / f"{name}.json"),
                     "--quiet"]) == 0
        res[name] = json.loads((tmp_path / f"{name}.json").read_text())["warnings"]
    assert res["own"] == []  # 30 cells from the training lab: no warning
    assert len(res["other"]) == 1 and "of 32 images" in res["other"][0]  # another lab's camera and stain
    out = capsys.readouterr()
    assert "look unlike the model's training images" in out.err
    other = json.loads((tmp_path / "other.json").read_text())["predictions"]
    n_unfamiliar = sum(p["refer_reason"] == "unfamiliar_image" for p in other)
    referred = sum(p["refer"] for p in other)
    assert n_unfamiliar > 0 and f"32 predictions, {referred} referred (" in out.out  # the summary counts reasons
    assert f"{n_unfamiliar} unfamiliar image" in out.out
