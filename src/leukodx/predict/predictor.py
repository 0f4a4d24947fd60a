"""`leukodx predict`: model file + images -> class, calibrated probability, refer flag.

Bad files never stop a folder run: they are listed with their problem and the rest goes on.
"""
from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import numpy as np
import torch

from leukodx.errors import LeukodxError
from leukodx.heads.gray_fallback import fallback_threshold, with_gray_fallback
from leukodx.heads.image_checks import image_problem
from leukodx.models.artifact import ModelBundle
from leukodx.predict.results import (
    Prediction,
    collect_images,
    finds_cells,
    network_threads,
    predict_batches,
    to_prediction,
    write_predictions,
)
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

__all__ = ["Prediction", "Predictor", "collect_images", "write_predictions"]
_THREADS_LOCK = threading.Lock()


class Predictor:
    def __init__(self, bundle: ModelBundle, batch_size: int = 32, backend: str = "torch", onnx_path=None):
        """backend 'onnx' exports the model to ONNX (or uses `onnx_path`) and runs ONNX Runtime."""
        self.bundle = bundle
        self.classes, self.referral = bundle.classes, bundle.referral
        self.pre = Preprocess(PreprocessConfig(**bundle.preprocess))
        self.batch_size = batch_size
        if backend == "onnx" and bundle.tree_head is not None:
            raise LeukodxError("this model has an XGBoost head; the ONNX backend covers the network only: "
                               "use --backend torch")
        if backend == "onnx":
            import tempfile

            from leukodx.predict.onnx_export import OnnxRunner, export_onnx
            if onnx_path is None:
                onnx_path = export_onnx(bundle, Path(tempfile.mkdtemp()) / "model.onnx")
            self.model = OnnxRunner(onnx_path, network_threads(self.pre.cfg))
        elif backend == "torch":
            self.model = bundle.model.eval().to(memory_format=torch.channels_last)
        else:
            raise LeukodxError(f"unknown backend '{backend}' (torch or onnx)")

    @classmethod
    def load(cls, path: str | Path, **kw) -> Predictor:
        return cls(ModelBundle.load(path), **kw)

    @torch.inference_mode()
    def scores(self, batch_uint8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 images (N, S, S, 3) numpy or (N, 3, S, S) torch -> (calibrated probabilities,
        unfamiliar-image distances, answered from the grayscale copy: leukodx.heads.gray_fallback)."""
        if isinstance(batch_uint8, np.ndarray):
            batch_uint8 = torch.from_numpy(batch_uint8).permute(0, 3, 1, 2)
        return with_gray_fallback(self._scores, batch_uint8, fallback_threshold(self.bundle), channel_axis=1)

    def _scores(self, batch_uint8: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        x = self.pre.normalize(batch_uint8).contiguous(memory_format=torch.channels_last)
        if self.model is self.bundle.model:  # torch backend: the bundle knows its head and temperature
            return self.bundle.scores(x)
        logits, dist = self.model(x)
        return (logits.float() / self.bundle.temperature).softmax(1).numpy(), dist.float().numpy()

    def probabilities(self, batch_uint8) -> np.ndarray:
        return self.scores(batch_uint8)[0]

    def predict_images(self, images, expected: np.ndarray | None = None) -> list[Prediction]:
        """PIL images (already loaded) -> predictions with path ''. `expected`: a class mask that limits
        the answers (leukodx.heads.expected)."""
        arrs = np.stack([self.pre.array(im) for im in images])
        probs, dists, gray = self.scores(arrs)
        return [self._to_pred("", p, d, image_problem(a), g, expected) for p, d, a, g in zip(probs, dists, arrs, gray)]

    def predict_paths(self, paths, progress: bool = False, on_row=None,
                      expected: np.ndarray | None = None) -> tuple[list[Prediction], list[dict]]:
        """Returns (predictions, errors); errors are {'path', 'error'} for each unusable file. Where preparing
        finds cells (`finds_cells`) and there is more than a batch of files, the network runs on
        `network_threads(...)`, leaving a core to the thread that prepares the next files (torch's thread
        count is process-wide: such runs take turns)."""
        paths = list(paths)
        overlap = finds_cells(self.pre.cfg) and len(paths) > self.batch_size  # one batch (a web upload): nothing to overlap

        def run():
            return predict_batches(paths, self.pre.array, self.scores, partial(self._to_pred, expected=expected),
                                   self.batch_size, progress, on_row, overlap=overlap)

        if not overlap:
            return run()
        with _THREADS_LOCK:
            before = torch.get_num_threads()
            torch.set_num_threads(min(before, network_threads(self.pre.cfg)))
            try:
                return run()
            finally:
                torch.set_num_threads(before)

    def _to_pred(self, path: str, p: np.ndarray, d: float, problem: str | None, gray: bool = False,
                 expected=None) -> Prediction:
        return to_prediction(path, p, d, problem, self.classes, self.referral, self.bundle.conformal(), expected, gray)
