"""The model file: weights plus everything needed to use them, loadable with weights_only=True.

Holds: architecture name and kwargs, class names, preprocessing, temperature, referral threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from leukodx.errors import LeukodxError
from leukodx.models.registry import create_model

FORMAT = "leukodx-model/1"


@dataclass
class ModelBundle:
    model: torch.nn.Module
    arch: str
    classes: list[str]
    preprocess: dict                      # PreprocessConfig as a dict
    model_kwargs: dict = field(default_factory=dict)
    temperature: float = 1.0
    refer_threshold: float = 0.0
    info: dict = field(default_factory=dict)  # provenance: data, split protocol, metrics summary
    tree_head: str | None = None          # XGBoost JSON: classifies pooled features instead of the softmax

    def head(self):
        """The tree head as an estimator (cached), or None for softmax models."""
        if self.tree_head is None:
            return None
        if getattr(self, "_head", None) is None:
            from leukodx.heads.xgboost_head import XGBoostHead
            self._head = XGBoostHead.from_json(self.tree_head)
        return self._head

    def probabilities(self, x: torch.Tensor):
        """Normalised input batch -> calibrated class probabilities (numpy); trees decide if present."""
        with torch.no_grad():
            m = self.model.eval()
            if self.tree_head is not None:
                return self.head().predict_proba(m.forward_head(m.forward_features(x), pre_logits=True).numpy())
            return (m(x).float() / self.temperature).softmax(1).numpy()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        payload = {"format": FORMAT, "arch": self.arch, "classes": list(self.classes),
                   "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocess.items()},
                   "model_kwargs": self.model_kwargs, "temperature": float(self.temperature),
                   "refer_threshold": float(self.refer_threshold), "info": self.info, "state_dict": state,
                   "tree_head": self.tree_head}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written model file
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        if not path.is_file():
            raise LeukodxError(f"{path}: model file not found")
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
            raise LeukodxError(f"{path}: not a readable leukodx model file ({type(e).__name__})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise LeukodxError(f"{path}: not a leukodx model file (format {d.get('format') if isinstance(d, dict) else '?'})")
        model = create_model(d["arch"], num_classes=len(d["classes"]), pretrained=False, **d["model_kwargs"])
        model.load_state_dict(d["state_dict"])
        model.eval()
        return cls(model, d["arch"], d["classes"], d["preprocess"], d["model_kwargs"], d["temperature"],
                   d["refer_threshold"], d.get("info", {}), d.get("tree_head"))
