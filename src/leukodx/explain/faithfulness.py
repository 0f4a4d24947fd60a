"""Does the map point at what the model uses? Deletion / insertion curves (Petsiuk et al. 2018) and
the model-randomisation sanity check (Adebayo et al. 2018)."""
from __future__ import annotations

import copy

import numpy as np
import torch


def _blur(x: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=31, sigma=10.0)


@torch.no_grad()
def deletion_insertion(prob_fn, x: torch.Tensor, heat: np.ndarray, target: int, steps: int = 20) -> dict:
    """prob_fn: normalised batch -> probabilities. Deletion replaces the most-attributed pixels first
    with a blurred copy (lower AUC = more faithful); insertion reveals them on the blurred copy
    (higher AUC = more faithful). AUC is the mean target probability over the curve."""
    order = torch.from_numpy(np.argsort(-heat.ravel(), kind="stable").copy())
    n = order.numel()
    blurred = _blur(x)
    fracs = np.linspace(0, 1, steps + 1)
    masks = torch.zeros(len(fracs), n)
    for i, f in enumerate(fracs):
        masks[i, order[: round(f * n)]] = 1
    masks = masks.view(len(fracs), 1, *x.shape[-2:])
    deleted = x * (1 - masks) + blurred * masks
    inserted = blurred * (1 - masks) + x * masks
    d = np.asarray(prob_fn(deleted))[:, target]
    ins = np.asarray(prob_fn(inserted))[:, target]
    return {"deletion_auc": float(np.trapezoid(d, fracs)), "insertion_auc": float(np.trapezoid(ins, fracs)),
            "deletion_curve": d.round(4).tolist(), "insertion_curve": ins.round(4).tolist()}


def randomised_copy(model: torch.nn.Module, top_fraction: float = 1.0, seed: int = 0) -> torch.nn.Module:
    """A copy whose last `top_fraction` of parameter tensors (cascading from the head) are re-drawn."""
    m = copy.deepcopy(model)
    params = [p for p in m.parameters()]
    k = max(1, round(len(params) * top_fraction))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params[-k:]:
            p.copy_(torch.randn(p.shape, generator=g) * (p.std() if p.numel() > 1 else 1.0))
    return m


def rank_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (1 = same ordering; a sane method falls towards 0
    when the weights are randomised)."""
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a.ravel(), b.ravel()).statistic)
