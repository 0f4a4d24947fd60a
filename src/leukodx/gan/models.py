"""The thesis's three GANs as generator / discriminator pairs (Malik, NCI 2025).

- DCGAN: dense projection of the latent to a small map (7x7 at 224 px as in the thesis, 4x4 at 64 px),
  transposed convs with BatchNorm + ReLU, tanh output; conv discriminator with LeakyReLU, one logit.
- WGAN-GP: the same generator (latent 500); the critic has no sigmoid and no BatchNorm (the gradient
  penalty is per sample), LayerNorm-free plain convs with LeakyReLU.
- cGAN: labels into both nets: a label embedding concatenated to the latent, and a label map added
  as an extra input channel of the discriminator.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from leukodx.errors import ConfigError


def base_side(size: int) -> tuple[int, int]:
    """(start side, number of x2 upsamplings) with start in 4..7 and start * 2**n == size."""
    n = 0
    while size % 2 == 0 and size > 7:
        size //= 2
        n += 1
    if not 4 <= size <= 7 or n < 2:
        raise ConfigError(f"GAN image size must be 4..7 times a power of two (64, 96, 112, 128, 224...), got {size * 2**n}")
    return size, n


class Generator(nn.Module):
    def __init__(self, size: int = 64, latent: int = 100, num_classes: int = 0, width: int = 64):
        super().__init__()
        self.latent, self.num_classes = latent, num_classes
        side, n = base_side(size)
        ch = width * 2 ** (n - 1)
        self.embed = nn.Embedding(num_classes, latent) if num_classes else None
        self.project = nn.Sequential(nn.Linear(latent * (2 if num_classes else 1), ch * side * side),
                                     nn.BatchNorm1d(ch * side * side), nn.ReLU(True))
        self.shape = (ch, side, side)
        layers = []
        for i in range(n):
            out = 3 if i == n - 1 else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=i == n - 1))
            layers += [nn.Tanh()] if i == n - 1 else [nn.BatchNorm2d(out), nn.ReLU(True)]
            ch = out
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(y)], 1)
        return self.net(self.project(z).view(-1, *self.shape))


class Discriminator(nn.Module):
    """One logit per image. `batchnorm=False` for the WGAN-GP critic."""

    def __init__(self, size: int = 64, num_classes: int = 0, width: int = 64, batchnorm: bool = True):
        super().__init__()
        side, n = base_side(size)
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, size * size) if num_classes else None
        layers, cin = [], 3 + (1 if num_classes else 0)
        for i in range(n):
            cout = width * 2 ** i
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=not (batchnorm and i > 0)))
            if batchnorm and i > 0:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, True))
            cin = cout
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(cin * side * side, 1)
        self.size = size

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            x = torch.cat([x, self.embed(y).view(-1, 1, self.size, self.size)], 1)
        return self.out(self.net(x).flatten(1)).squeeze(1)


@dataclass(frozen=True)
class GanSpec:
    latent: int
    conditional: bool
    critic_batchnorm: bool  # False for the WGAN-GP critic: the gradient penalty is per sample
    loss: str  # "bce" | "wasserstein"
    lr_g: float
    lr_d: float
    betas: tuple[float, float]


KINDS = {
    "dcgan": GanSpec(100, False, True, "bce", 2e-4, 1e-4, (0.5, 0.999)),
    "wgan_gp": GanSpec(500, False, False, "wasserstein", 1e-4, 1e-4, (0.5, 0.9)),
    "cgan": GanSpec(100, True, True, "bce", 2e-4, 1e-4, (0.5, 0.999)),
}


def build_gan(kind: str, size: int, num_classes: int, width: int = 64) -> tuple[Generator, Discriminator]:
    """`width` = channels of the widest-resolution layer (64 = the usual DCGAN; 32 = 4x cheaper on CPU)."""
    if kind not in KINDS:
        raise ConfigError(f"unknown GAN kind '{kind}'; choose one of {', '.join(KINDS)}")
    spec = KINDS[kind]
    k = num_classes if spec.conditional else 0
    if width < 4:
        raise ConfigError(f"GAN width must be at least 4, got {width}")
    return Generator(size, spec.latent, k, width), Discriminator(size, k, width, batchnorm=spec.critic_batchnorm)
