"""One interface for every explanation: `Explainer(bundle).explain(image, methods)`.

Image file -> Preprocess (same as predict) -> normalised tensor -> the model's predicted class
(from the bundle, so a tree head's choice is the one explained) -> one map per method.
Where the model file answers unfamiliar images from their grayscale copy (heads.gray_fallback) and
prediction did so, the grayscale copy is what gets explained: the input that gave the answer.
For a tree-headed model (XIncept-ALL + XGBoost) gradient and CAM maps come from the fusion
network's softmax head for the class the trees predict; perturbation methods (SHAP, LIME) query
the full model, trees included.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from leukodx.data.images import load_image
from leukodx.explain import methods as M
from leukodx.explain.targets import ExplainError, finer_stage
from leukodx.heads.gray_fallback import fallback_threshold, gray_copy, with_gray_fallback
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import model_device
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

METHODS = (*M.CAM_METHODS, "ig", "shap", "lime", "rollout")
NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "scorecam": "Score-CAM", "eigencam": "EigenCAM",
         "layercam": "LayerCAM", "ig": "integrated gradients", "shap": "SHAP", "lime": "LIME", "rollout": "attention rollout"}
# What users see by default (web overlay, `predict --explain`, `explain`, reports): LayerCAM at the stage twice as
# fine as the last (targets.finer_stage). On both shipped models it beats Grad-CAM's deletion AUC (ALL 0.599 vs 0.691,
# WBC 0.183 vs 0.228), is within 0.03 on insertion and puts 1.7x / 1.4x more of the map on the stained cells
# (results/explain_*.md, `benchmarks/explain_benchmark.py NAME --audit-layercam blocks.4`).
DEFAULT_METHOD = "layercam"


@dataclass
class Explanation:
    method: str
    label: str
    probability: float
    target: int
    map: np.ndarray                  # (H, W) in [0, 1] at model input resolution
    seconds: float
    image: np.ndarray = field(repr=False, default=None)  # (H, W, 3) uint8, the preprocessed input
    grayscale_copy: bool = False     # the input explained is the image's grayscale copy, as prediction read it

    @property
    def gray_note(self) -> str:
        return " (read in grayscale)" if self.grayscale_copy else ""

    @property
    def name(self) -> str:
        """The method's display name (LayerCAM, Grad-CAM, ...)."""
        return NAMES.get(self.method, self.method)

    @property
    def caption(self) -> str:
        return f"{self.name}: {self.label} {self.probability:.2f}{self.gray_note}"


class _Probabilities(torch.nn.Module):
    """The full model as perturbation methods see it: input -> calibrated class probabilities."""

    def __init__(self, bundle: ModelBundle):
        super().__init__()
        self.bundle = bundle

    def forward(self, x):
        return torch.as_tensor(self.bundle.probabilities(x))


class Explainer:
    def __init__(self, bundle: ModelBundle, layer: str | None = None):
        if model_device(bundle.model).type != "cpu":  # explanations are computed on the CPU, on a copy
            bundle = replace(bundle, model=copy.deepcopy(bundle.model).cpu())
        self.bundle = bundle
        self.model = bundle.model.eval()
        self.pre = Preprocess(PreprocessConfig(**bundle.preprocess))
        self.layer = layer

    def prepare(self, image) -> tuple[np.ndarray, torch.Tensor]:
        img = load_image(image) if not hasattr(image, "convert") else image.convert("RGB")
        u8 = self.pre(img)
        return u8.permute(1, 2, 0).numpy(), self.pre.normalize(u8)

    def input_of(self, e: Explanation) -> torch.Tensor:
        """The normalised input an explanation explains: the image, or its grayscale copy (gray_fallback)."""
        return self._normalized(e.image)

    def _normalized(self, u8: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 -> the network's normalised input."""
        return self.pre.normalize(torch.from_numpy(u8).permute(2, 0, 1))

    def explain(self, image, methods=(DEFAULT_METHOD,), target: int | None = None) -> list[Explanation]:
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ExplainError(f"unknown explanation method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
        u8, x = self.prepare(image)
        u8, x, gray = self._as_predicted(u8, x)
        with torch.no_grad():
            p = np.asarray(self.bundle.probabilities(x))[0]
        k = int(p.argmax()) if target is None else int(target)
        if not 0 <= k < len(self.bundle.classes):
            raise ExplainError(f"target class {k} out of range (0..{len(self.bundle.classes) - 1})")
        out = []
        for m in methods:
            t = time.perf_counter()
            out.append(Explanation(m, self.bundle.classes[k], float(p[k]), k, self.map(m, x, k, u8),
                                   time.perf_counter() - t, u8, gray))
        return out

    def _finer(self, x: torch.Tensor) -> str | None:
        if not hasattr(self, "_finer_layer"):
            self._finer_layer = finer_stage(self.model, x.shape[-1])
        return self._finer_layer

    def _as_predicted(self, u8: np.ndarray, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor, bool]:
        """The input prediction answers from: the image, or its grayscale copy (gray_fallback)."""
        threshold = fallback_threshold(self.bundle)
        if threshold == float("inf"):
            return u8, x, False
        batch = torch.from_numpy(u8).permute(2, 0, 1)[None]
        with torch.no_grad():
            *_, used = with_gray_fallback(lambda b: self.bundle.scores(self.pre.normalize(b)), batch, threshold, 1)
        if not used[0]:
            return u8, x, False
        g = gray_copy(u8[None], channel_axis=3)[0]
        return g, self._normalized(g), True

    def map(self, method: str, x: torch.Tensor, k: int, u8: np.ndarray) -> np.ndarray:
        if method in M.CAM_METHODS:
            return M.cam(self.model, x, k, method, self.layer or (self._finer(x) if method == "layercam" else None))
        if method == "ig":
            return M.integrated_gradients(self.model, x, k)
        if method == "rollout":
            return M.attention_rollout(self.model, x, k)
        full = _Probabilities(self.bundle)
        return M.kernel_shap(full, x, k, u8) if method == "shap" else M.lime(full, x, k, u8)
