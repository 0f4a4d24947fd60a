"""The model file: weights plus everything needed to use them, loadable with weights_only=True.

Holds: architecture name and kwargs, class names, preprocessing, temperature, referral thresholds
and the reference features behind the unfamiliar-image check (leukodx.heads.familiarity).
Loading validates all of it and refuses a file that would give wrong answers silently.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from leukodx.errors import LeukodxError
from leukodx.heads.conformal import ConformalSets
from leukodx.heads.familiarity import FamiliarNet
from leukodx.heads.referral import Referral
from leukodx.models.inference import model_device
from leukodx.models.registry import create_model
from leukodx.transforms.views import dihedral_views

FORMAT = "leukodx-model/1"


def read_payload(path: Path, fmt: str, what: str) -> dict:
    """A leukodx file's dict, read with weights_only=True; any other content is a clear error."""
    if not path.is_file():
        raise LeukodxError(f"{path}: {what} file not found")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise LeukodxError(f"{path}: not a readable leukodx {what} file ({type(e).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise LeukodxError(f"{path}: not a leukodx {what} file (format {d.get('format') if isinstance(d, dict) else '?'})")
    return d


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
    unfamiliar_threshold: float = math.inf  # refer when the k-NN feature distance is above this
    reference: torch.Tensor | None = None  # unit-norm training features for that distance (None: no check)
    knn_k: int = 5
    conformal_qhat: float | None = None   # split-conformal threshold (heads.conformal), fitted on validation
    conformal_alpha: float = 0.01  # sets hold the true class for 99% of cells like the training lab's
    views: int = 1                 # test-time views averaged (1, 2, 4 or 8 quarter turns / mirror images)
    gray_fallback: bool = False    # an unfamiliar image is answered as its grayscale copy (heads.gray_fallback)
    cell_probe: torch.Tensor | None = None  # weights then bias of the no-white-cell probe (heads.cell_probe)

    @property
    def referral(self) -> Referral:
        return Referral(self.refer_threshold, self.unfamiliar_threshold)

    def conformal(self) -> ConformalSets | None:
        if self.conformal_qhat is None:
            return None
        c = ConformalSets(self.conformal_alpha)
        c.qhat_ = self.conformal_qhat
        return c

    def net(self) -> FamiliarNet:
        """The network as one module answering (logits, unfamiliar-image distance)."""
        net, made_from = getattr(self, "_net", None), getattr(self, "_net_from", None)
        device = model_device(self.model)  # rebuilt when the model, reference, a setting or the device changes
        if net is None or made_from is None or made_from[0] is not self.model or made_from[1] is not self.reference \
                or made_from[2] is not self.cell_probe or made_from[3:] != (self.knn_k, self.views, device):
            self._net = FamiliarNet(self.model, self.reference, self.knn_k, self.views,
                                    self.cell_probe).eval().to(device)
            self._net_from = (self.model, self.reference, self.cell_probe, self.knn_k, self.views, device)
        return self._net

    def head(self):
        """The tree head as an estimator (cached), or None for softmax models."""
        if self.tree_head is None:
            return None
        if getattr(self, "_head", None) is None:
            from leukodx.heads.xgboost_head import XGBoostHead
            self._head = XGBoostHead.from_json(self.tree_head)
        return self._head

    def scores(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Normalised input batch -> (calibrated class probabilities, unfamiliar-image distance);
        trees decide the class if present."""
        with torch.no_grad():
            m = self.model.eval()
            x = x.to(model_device(m))
            if self.tree_head is not None:
                feats = torch.stack([m.forward_head(m.forward_features(v), pre_logits=True)
                                     for v in dihedral_views(x, self.views)]).mean(0)
                _, dist = self.net()(x)
                return self.head().predict_proba(feats.float().cpu().numpy()), dist.float().cpu().numpy()
            logits, dist = self.net()(x)
            return (logits.float() / self.temperature).softmax(1).cpu().numpy(), dist.float().cpu().numpy()

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        return self.scores(x)[0]

    def weights_sha256(self) -> str:
        """Fingerprint of the network weights alone (not thresholds or info): results that depend only
        on the weights (explanations) stay valid while it is unchanged."""
        h = hashlib.sha256()
        for k, v in sorted(self.model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        payload = {"format": FORMAT, "arch": self.arch, "classes": list(self.classes),
                   "preprocess": {k: list(v) if isinstance(v, tuple) else v for k, v in self.preprocess.items()},
                   "model_kwargs": self.model_kwargs, "temperature": float(self.temperature),
                   "refer_threshold": float(self.refer_threshold), "info": self.info, "state_dict": state,
                   "tree_head": self.tree_head, "unfamiliar_threshold": float(self.unfamiliar_threshold),
                   "knn_k": int(self.knn_k), "conformal_qhat": self.conformal_qhat,
                   "conformal_alpha": float(self.conformal_alpha), "views": int(self.views),
                   "gray_fallback": bool(self.gray_fallback),
                   "reference": None if self.reference is None else self.reference.detach().cpu().half().contiguous(),
                   "cell_probe": None if self.cell_probe is None else self.cell_probe.detach().cpu().float().contiguous()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(path)  # never leave a half-written model file
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelBundle:
        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        d = read_payload(path, FORMAT, "model")
        from leukodx.models.validate import check_payload, probe

        check_payload(d, path)
        try:
            model = create_model(d["arch"], num_classes=len(d["classes"]), pretrained=False, **d["model_kwargs"])
            model.load_state_dict(d["state_dict"])
        except Exception as e:  # noqa: BLE001 - weights that do not fit the architecture
            raise LeukodxError(f"{path}: weights do not fit a {d['arch']} with {len(d['classes'])} classes "
                               f"({type(e).__name__})") from None
        model.eval()
        ref = d.get("reference")
        bundle = cls(model, d["arch"], d["classes"], d["preprocess"], d["model_kwargs"], float(d["temperature"]),
                     float(d["refer_threshold"]), d.get("info", {}), d.get("tree_head"),
                     float(d.get("unfamiliar_threshold", math.inf)), None if ref is None else ref.float(),
                     int(d.get("knn_k", 5)), d.get("conformal_qhat"), float(d.get("conformal_alpha", 0.01)),
                     int(d.get("views", 1)), bool(d.get("gray_fallback", False)), d.get("cell_probe"))
        probe(bundle, path)
        return bundle
