"""Prediction from an exported .onnx file with ONNX Runtime, numpy and Pillow only: no torch, no
timm, for small deployments (about a third of the memory of the PyTorch path).
The file's 'leukodx' metadata (written by `leukodx export`) gives classes, preprocessing,
temperature and referral threshold."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from leukodx.errors import LeukodxError
from leukodx.predict.results import Prediction, predict_batches, to_prediction
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


class OnnxPredictor:
    def __init__(self, onnx_path: str | Path, batch_size: int = 32, threads: int | None = None):
        import onnxruntime as ort

        path = Path(onnx_path)
        if not path.is_file():
            raise LeukodxError(f"{path}: ONNX model not found")
        opts = ort.SessionOptions()
        opts.enable_cpu_mem_arena = False  # the arena keeps peak-batch buffers: ~250 MB more resident
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - any load failure is a bad file for the user
            raise LeukodxError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get("leukodx")
        if not meta:
            raise LeukodxError(f"{path}: no leukodx metadata; export it with `leukodx export`")
        self.meta = json.loads(meta)
        self.classes = self.meta["classes"]
        self.pre = Preprocess(PreprocessConfig(**self.meta["preprocess"]))
        self.batch_size = batch_size

    def probabilities(self, batch_uint8: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) -> calibrated probabilities (softmax of logits / T)."""
        x = self.pre.normalize(np.ascontiguousarray(batch_uint8.transpose(0, 3, 1, 2)))
        z = self.session.run(None, {"x": x})[0] / self.meta["temperature"]
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def predict_paths(self, paths, progress: bool = False) -> tuple[list[Prediction], list[dict]]:
        return predict_batches(paths, self.pre.array, self.probabilities, self._to_pred, self.batch_size, progress)

    def _to_pred(self, path: str, p: np.ndarray) -> Prediction:
        return to_prediction(path, p, self.classes, self.meta["refer_threshold"])
