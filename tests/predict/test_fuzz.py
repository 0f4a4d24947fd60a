"""Bounded fuzz in CI: the unusual corpus plus 1,500 mutated files through both predictors. Every file
is answered or listed as unusable with a reason (no traceback, no silent drop), and no NaN or
infinite answer goes unreferred. The 10,000-file run is benchmarks/fuzz.py."""
import math

import pytest

from leukodx.predict.lean import OnnxPredictor
from leukodx.predict.predictor import Predictor
from leukodx.predict.results import collect_images
from leukodx.predict.shipped import shipped_model
from tests.corpus import mutated_files, unusual_files


def check(preds, errors, expected: int):
    assert len(preds) + len(errors) == expected  # nothing dropped without a word
    assert all(e["error"] for e in errors)
    for p in preds:
        if not (math.isfinite(p.probability) and all(math.isfinite(v) for v in p.probabilities.values())):
            assert p.refer and p.refer_reason == "invalid_output"


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_unusual_corpus(tmp_path, backend):
    unusual_files(tmp_path / "c")
    paths, skipped = collect_images(tmp_path / "c")
    assert len(paths) + len(skipped) >= 60
    predictor = OnnxPredictor(shipped_model("wbc", ".onnx")) if backend == "onnx" else Predictor.load(shipped_model("wbc"))
    preds, errors = predictor.predict_paths(paths)
    check(preds, errors, len(paths))
    assert {s["path"].rsplit("/", 1)[1] for s in skipped} >= {"dangling.png", "fifo.png"}
    by_name = {e["path"].rsplit("/", 1)[1]: e["error"] for e in errors}
    assert "NaN" in by_name["nan.tif"] and "too large" in by_name["bomb.png"]


def test_mutated_files(tmp_path):
    paths = mutated_files(tmp_path / "m", 1500)
    preds, errors = OnnxPredictor(shipped_model("wbc", ".onnx")).predict_paths(paths)
    check(preds, errors, len(paths))
