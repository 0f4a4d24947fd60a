"""Where explanations hook into a model. Every registry model has `forward_features` /
`forward_head`, so the default target is simply "the output of forward_features": a feature map
(CNNs, DDRNet, hybrid, fusion) or a token sequence (ViTs), reshaped to a grid."""
from __future__ import annotations

import math

import torch
from torch import nn

from leukodx.errors import LeukodxError


class ExplainError(LeukodxError):
    """An explanation that cannot be made for this model or input (clear message, no crash)."""


class _Features(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


class SplitModel(nn.Module):
    """Same logits as `model`, with `self.features` a module whose output is the feature map."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.features = _Features(model)

    def forward(self, x):
        return self.model.forward_head(self.features(x))


def finer_stage(model: nn.Module, image_size: int) -> str | None:
    """LayerCAM's default layer: the last stage (a module at most two names deep, e.g. `blocks.4`, `layer3`)
    whose feature map is twice as fine as forward_features' (LayerCAM, Jiang et al. 2021, stays faithful
    at shallower layers, where Grad-CAM does not). None for models without such a stage (ViTs)."""
    if not hasattr(model, "forward_features"):
        return None
    sides, hooks = [], []
    for name, m in model.named_modules():
        if name and name.count(".") <= 1:
            hooks.append(m.register_forward_hook(
                lambda mod, i, o, n=name: sides.append((n, o.shape[-1])) if torch.is_tensor(o) and o.ndim == 4 else None))
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            final = model.forward_features(torch.zeros(1, 3, image_size, image_size))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    fine = [n for n, side in sides if final.ndim == 4 and side == 2 * final.shape[-1]]
    return fine[-1] if fine else None


def token_grid_reshape(tokens: torch.Tensor, n_prefix: int = 1) -> torch.Tensor:
    """(B, prefix + g*g, D) tokens -> (B, D, g, g) map, dropping CLS / prefix tokens."""
    n = tokens.shape[1] - n_prefix
    g = math.isqrt(n)
    if g * g != n:
        raise ExplainError(f"cannot lay {n} tokens on a square grid (prefix tokens: {n_prefix})")
    return tokens[:, n_prefix:].transpose(1, 2).reshape(tokens.shape[0], -1, g, g)


def resolve_target(model: nn.Module, layer: str | None = None, image_size: int = 224):
    """-> (module to run, target layer, reshape transform or None) for CAM methods."""
    if layer is not None:
        try:
            target = model.get_submodule(layer)
        except AttributeError:
            raise ExplainError(f"model has no layer named '{layer}'") from None
        run = model
    elif hasattr(model, "forward_features") and hasattr(model, "forward_head"):
        run = SplitModel(model)
        target = run.features
    else:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ExplainError("this model has no conv layer and no forward_features: CAM methods need a spatial "
                               "feature map; use 'ig', 'shap' or 'lime' instead")
        run, target = model, convs[-1]
    with torch.no_grad():
        out = _probe(run, target, image_size)
    if out.ndim == 4:
        return run, target, None
    if out.ndim == 3:
        prefix = getattr(model, "num_prefix_tokens", 1)
        token_grid_reshape(out, prefix)  # fails early with a clear message if not square
        return run, target, lambda t: token_grid_reshape(t, prefix)
    raise ExplainError(f"the target layer gives a {tuple(out.shape)} output with no spatial layout; CAM methods need "
                       "a feature map (B, C, H, W) or tokens (B, N, D); name another layer or use 'ig'/'shap'/'lime'")


def _probe(run: nn.Module, target: nn.Module, size: int) -> torch.Tensor:
    seen = []
    h = target.register_forward_hook(lambda m, i, o: seen.append(o[0] if isinstance(o, tuple) else o))
    try:
        was = run.training
        run.eval()
        run(torch.zeros(1, 3, size, size))
        run.train(was)
    finally:
        h.remove()
    return seen[-1]
