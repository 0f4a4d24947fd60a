"""Fourier amplitude mix (FACT, Xu et al., CVPR 2021): a training-only augmentation for unseen domains.

An image's Fourier phase carries where its edges and shapes are; its amplitude spectrum carries colour,
contrast, texture energy and sharpness: much of what differs from one lab's camera and stain to another's.
Each chosen training image keeps its phase and its label while its amplitude is mixed with a random
other image's of the batch, so the network has to answer from the phase. Applied to the uint8 batch
before it reaches the model; the saved model (and its ONNX export) is unchanged.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch

from leukodx.errors import ConfigError


def amplitude_mix(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) in 0-255 -> each image i with its phase and the amplitude spectrum
    (1 - lam[i]) |F x[i]| + lam[i] |F x[perm[i]]| (per channel), clipped to 0-255, x's dtype."""
    f = torch.fft.fft2(x.float())
    amp = torch.lerp(f.abs(), f.abs()[perm], lam.view(-1, 1, 1, 1).float())
    out = torch.fft.ifft2(torch.polar(amp, f.angle())).real.clamp(0, 255)
    return out.round().to(x.dtype) if not x.is_floating_point() else out.to(x.dtype)


class AmplitudeMix(pl.Callback):
    """With probability `p` per training image, mix its amplitude with another image's: lam ~ U(0, eta)."""

    def __init__(self, p: float = 0.5, eta: float = 1.0):
        if not 0 < p <= 1 or not 0 < eta <= 1:
            raise ConfigError(f"amplitude_mix must be a probability in (0, 1], got {p!r} (eta {eta!r})")
        self.p, self.eta = p, eta

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        x = batch[0]
        flat = x.view(-1, *x.shape[-3:])  # (B, V, C, H, W) views of a consistency loss: every view on its own
        b = flat.shape[0]
        if b < 2:
            return
        lam = torch.rand(b) * self.eta * (torch.rand(b) < self.p)
        flat.copy_(amplitude_mix(flat, lam.to(flat.device), torch.randperm(b, device=flat.device)))
