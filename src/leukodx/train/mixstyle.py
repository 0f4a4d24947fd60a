"""MixStyle (Zhou et al., ICLR 2021): a training-only regulariser for unseen domains.

In the first stages of the network each image's per-channel feature mean and standard deviation (its
"style": stain, illumination, camera) are mixed with another image's, so the later layers cannot rely on
them. Attached as forward hooks while training; the saved model (and its ONNX export) is unchanged.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn

from leukodx.errors import ConfigError


def mix_style(x: torch.Tensor, alpha: float = 0.1, eps: float = 1e-6) -> torch.Tensor:
    """x (B, C, H, W) -> the same content with each image's channel statistics mixed with a random
    other image's: lambda ~ Beta(alpha, alpha) per image."""
    b = x.shape[0]
    if b < 2:
        return x
    mu = x.mean(dim=(2, 3), keepdim=True)
    sig = (x.var(dim=(2, 3), keepdim=True) + eps).sqrt()
    mu, sig = mu.detach(), sig.detach()
    lam = torch.distributions.Beta(alpha, alpha).sample((b, 1, 1, 1)).to(x)
    perm = torch.randperm(b, device=x.device)
    mu_mix = lam * mu + (1 - lam) * mu[perm]
    sig_mix = lam * sig + (1 - lam) * sig[perm]
    return (x - mu) / sig * sig_mix + mu_mix


def style_layers(model: nn.Module, n: int = 3) -> list[nn.Module]:
    """The modules ending the first `n` stages, from timm's `feature_info`."""
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ConfigError(f"mixstyle needs a model with timm's feature_info; {type(model).__name__} has none")
    names = [f["module"] for f in info][:n] if isinstance(info, list) else info.module_name()[:n]
    modules = dict(model.named_modules())
    return [modules[name] for name in names]


class MixStyle(pl.Callback):
    """With probability `p` per batch and per stage, mix feature styles after each of the first `stages`."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, stages: int = 3):
        if not 0 < p <= 1:
            raise ConfigError(f"mixstyle must be a probability in (0, 1], got {p!r}")
        self.p, self.alpha, self.stages = p, alpha, stages
        self._handles = []

    def _hook(self, module, _inputs, output):
        if module.training and torch.rand(()) < self.p:
            return mix_style(output, self.alpha)
        return output

    def on_fit_start(self, trainer, pl_module) -> None:
        self._handles = [m.register_forward_hook(self._hook) for m in style_layers(pl_module.model, self.stages)]

    def on_fit_end(self, trainer, pl_module) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def on_exception(self, trainer, pl_module, exception) -> None:
        self.on_fit_end(trainer, pl_module)
