"""`leukodx predict`: model file + images -> class, calibrated probability, refer flag.

Bad files never stop a folder run: they are listed with their problem and the rest goes on.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leukodx.data.images import is_image_file, load_image
from leukodx.errors import BadImageError, LeukodxError
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


@dataclass
class Prediction:
    path: str
    label: str
    probability: float
    probabilities: dict[str, float]
    refer: bool

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probability": round(self.probability, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}, "refer": self.refer}


def collect_images(target: str | Path) -> list[Path]:
    """A file, or every file under a folder (non-images are kept so they are reported, hidden files skipped)."""
    p = Path(target).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    raise LeukodxError(f"{p}: no such file or folder")


class Predictor:
    def __init__(self, bundle: ModelBundle, batch_size: int = 32, backend: str = "torch", onnx_path=None):
        """backend 'onnx' exports the model to ONNX (or uses `onnx_path`) and runs ONNX Runtime."""
        self.bundle = bundle
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
            self.model = OnnxRunner(onnx_path)
        elif backend == "torch":
            self.model = bundle.model.eval().to(memory_format=torch.channels_last)
        else:
            raise LeukodxError(f"unknown backend '{backend}' (torch or onnx)")

    @classmethod
    def load(cls, path: str | Path, **kw) -> Predictor:
        return cls(ModelBundle.load(path), **kw)

    @torch.inference_mode()
    def probabilities(self, batch_uint8: torch.Tensor) -> np.ndarray:
        x = self.pre.normalize(batch_uint8).contiguous(memory_format=torch.channels_last)
        if self.bundle.tree_head is not None:
            return self.bundle.probabilities(x)
        logits = self.model(x).float() / self.bundle.temperature
        return logits.softmax(1).numpy()

    def predict_images(self, images) -> list[Prediction]:
        """PIL images (already loaded) -> predictions with path ''."""
        probs = self.probabilities(torch.stack([self.pre(im) for im in images]))
        return [self._to_pred("", p) for p in probs]

    def predict_paths(self, paths, progress: bool = False) -> tuple[list[Prediction], list[dict]]:
        """Returns (predictions, errors); errors are {'path', 'error'} for each unusable file."""
        preds, errors = [], []
        batch, batch_paths = [], []
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(paths), desc="predicting", unit="img")

        def flush():
            if batch:
                for bp, p in zip(batch_paths, self.probabilities(torch.stack(batch))):
                    preds.append(self._to_pred(str(bp), p))
                batch.clear()
                batch_paths.clear()

        for path in paths:
            try:
                if not is_image_file(path):
                    raise BadImageError(path, f"not an image file type ({Path(path).suffix or 'no extension'})")
                batch.append(self.pre(load_image(path)))
                batch_paths.append(path)
            except BadImageError as e:
                errors.append({"path": str(path), "error": e.problem})
            if len(batch) >= self.batch_size:
                flush()
            if bar:
                bar.update(1)
        flush()
        if bar:
            bar.close()
        return preds, errors

    def _to_pred(self, path: str, p: np.ndarray) -> Prediction:
        k = int(p.argmax())
        return Prediction(path, self.bundle.classes[k], float(p[k]),
                          {c: float(v) for c, v in zip(self.bundle.classes, p)},
                          bool(p[k] < self.bundle.refer_threshold))


def write_predictions(preds: list[Prediction], errors: list[dict], out: str | Path, fmt: str | None = None) -> Path:
    out = Path(out)
    fmt = fmt or ("csv" if out.suffix.lower() == ".csv" else "json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    if fmt == "csv":
        classes = list(preds[0].probabilities) if preds else []
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "probability", "refer", "error"] + [f"p_{c}" for c in classes])
            for p in preds:
                w.writerow([p.path, p.label, f"{p.probability:.6f}", int(p.refer), ""] +
                           [f"{p.probabilities[c]:.6f}" for c in classes])
            for e in errors:
                w.writerow([e["path"], "", "", "", e["error"]] + [""] * len(classes))
    else:
        tmp.write_text(json.dumps({"predictions": [p.to_dict() for p in preds], "errors": errors}, indent=1))
    tmp.replace(out)
    return out
