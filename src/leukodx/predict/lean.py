"""Prediction from an exported .onnx file with ONNX Runtime, numpy and Pillow only: no torch, no
timm, for small deployments (about a third of the memory of the PyTorch path).
The file's 'leukodx' metadata (written by `leukodx export`) gives classes, preprocessing,
temperature and referral thresholds; the unfamiliar-image distance is an output of the graph."""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from leukodx.errors import LeukodxError
from leukodx.heads.conformal import ConformalSets
from leukodx.heads.gray_fallback import fallback_threshold, with_gray_fallback
from leukodx.heads.referral import Referral
from leukodx.predict.results import Prediction, finds_cells, network_threads, predict_batches, to_prediction
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


class OnnxPredictor:
    def __init__(self, onnx_path: str | Path, batch_size: int = 32, threads: int | None = None):
        """`threads`: the network's threads (default `network_threads(preprocessing)`: all cores, or all
        but the one that prepares the next files where preparing finds cells)."""
        path = Path(onnx_path)
        if not path.is_file():
            raise LeukodxError(f"{path}: ONNX model not found")
        self.session = _session(path, threads or network_threads())
        meta = self.session.get_modelmeta().custom_metadata_map.get("leukodx")
        if not meta:
            raise LeukodxError(f"{path}: no leukodx metadata; export it with `leukodx export`")
        self.meta = check_meta(json.loads(meta), path, self.session)
        self.classes = self.meta["classes"]
        self.referral = Referral(self.meta["refer_threshold"], self.meta.get("unfamiliar_threshold", float("inf")))
        self.pre = Preprocess(PreprocessConfig(**self.meta["preprocess"]))
        if not threads and network_threads(self.pre.cfg) != network_threads():  # known once the metadata is read
            self.session = _session(path, network_threads(self.pre.cfg))
        self.batch_size = batch_size
        self.conformal = None
        if self.meta.get("conformal_qhat") is not None:
            self.conformal = ConformalSets(self.meta.get("conformal_alpha", 0.01))
            self.conformal.qhat_ = float(self.meta["conformal_qhat"])

    def scores(self, batch_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 (N, S, S, 3) -> (calibrated probabilities (softmax of logits / T), distances, answered from
        the grayscale copy: leukodx.heads.gray_fallback)."""
        return with_gray_fallback(self._scores, batch_uint8, fallback_threshold(self.meta), channel_axis=-1)

    def _scores(self, batch_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.pre.normalize(np.ascontiguousarray(batch_uint8.transpose(0, 3, 1, 2)))
        out = self.session.run(None, {"x": x})
        z = out[0] / self.meta["temperature"]
        z = np.exp(z - z.max(1, keepdims=True))
        dist = out[1] if len(out) > 1 else np.zeros(len(z), np.float32)
        return z / z.sum(1, keepdims=True), dist

    def probabilities(self, batch_uint8: np.ndarray) -> np.ndarray:
        return self.scores(batch_uint8)[0]

    def predict_paths(self, paths, progress: bool = False, on_row=None,
                      expected: np.ndarray | None = None) -> tuple[list[Prediction], list[dict]]:
        return predict_batches(paths, self.pre.array, self.scores, partial(self._to_pred, expected=expected),
                               self.batch_size, progress, on_row, overlap=finds_cells(self.pre.cfg))

    def _to_pred(self, path: str, p: np.ndarray, d: float, problem: str | None, gray: bool = False,
                 expected=None) -> Prediction:
        return to_prediction(path, p, d, problem, self.classes, self.referral, self.conformal, expected, gray)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = False  # the arena keeps peak-batch buffers: ~250 MB more resident
    opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - any load failure is a bad file for the user
        raise LeukodxError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None


def check_meta(meta: dict, path, session) -> dict:
    """The metadata must agree with the graph and hold usable numbers; else one clear refusal."""
    import math

    def fail(what):
        raise LeukodxError(f"{path}: refused: {what}")

    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        fail("metadata class names must be a list of at least two strings")
    dim = session.get_outputs()[0].shape[-1]
    if isinstance(dim, int) and dim != len(classes):
        fail(f"the network gives {dim} outputs for {len(classes)} class names")
    t, r = meta.get("temperature"), meta.get("refer_threshold")
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        fail(f"temperature must be a positive finite number, got {t!r}")
    if not (isinstance(r, (int, float)) and math.isfinite(r) and 0 <= r <= 1):
        fail(f"referral threshold must be in [0, 1], got {r!r}")
    u = meta.get("unfamiliar_threshold", math.inf)
    if not (isinstance(u, (int, float)) and not math.isnan(u) and u > 0):
        fail(f"unfamiliar-image threshold must be positive, got {u!r}")
    if not isinstance(meta.get("preprocess"), dict):
        fail("no preprocessing settings")
    return meta
