"""Domain-adversarial training (Ganin et al. 2016, DANN) against unlabelled white cells of another lab.

Those cells ride along in the training batches (label UNLABELLED: no class loss). A small classifier on
the pooled features learns to tell them from the labelled lab's cells, and a gradient-reversal layer
turns its gradient round for the backbone, which is so pushed towards features in which the two labs
look alike. The reversal ramps from 0 to 1 over training, as in the paper. The other lab's cells never
reach the class loss, validation, calibration or test.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset

from leukodx.errors import ConfigError
from leukodx.models.registry import linear_classifier

UNLABELLED = -2   # the label of another lab's cell: no class loss, only the domain loss
SHARE = 0.25      # share of training samples that are the other lab's cells
CROP_FACTOR = 4.0  # each cell cut at this many times its box, so cell-centred input finds it with context


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient times -scale backward."""
    return _Reverse.apply(x, scale)


def reversal_scale(progress: float) -> float:
    """DANN's ramp: 0 at the start of training, towards 1 at its end (progress in [0, 1])."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


def pooled_width(model: nn.Module) -> int:
    """The width of the pooled features the model's linear classifier reads."""
    head = linear_classifier(model)
    if head is None:
        raise ConfigError(f"domain_weight needs a model whose classifier is one linear layer on pooled features; "
                          f"{type(model).__name__} has none")
    return head.in_features


class DomainClassifier(nn.Sequential):
    """Pooled features -> one logit: is this the other lab's cell?"""

    def __init__(self, in_features: int, hidden: int = 256):
        super().__init__(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for m in self:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)


def domain_cell_images(spec: str, preprocess, seed: int = 0) -> torch.Tensor:
    """Every white cell of a smear-field set (Pascal VOC boxes, e.g. bccd_smears), preprocessed as the
    training images are: uint8 (M, 3, S, S)."""
    from leukodx.data.smears import white_cell_crops

    crops = white_cell_crops(spec, n=10 ** 9, factor=CROP_FACTOR, seed=seed)
    return torch.stack([preprocess(Image.fromarray(c)) for c in crops])


class WithDomainCells(Dataset):
    """The training set where, with probability SHARE, a sample is one of `cells` (augmented like the
    training images, label UNLABELLED) instead. Same length, so a class-balanced sampler still works."""

    def __init__(self, ds: Dataset, cells: torch.Tensor, augment, seed: int, share: float = SHARE):
        if len(cells) == 0:
            raise ValueError("domain_cells: no white cells to train against")
        self.ds, self.cells, self.augment, self.share = ds, cells, augment, share
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        if self.rng.random() >= self.share:
            return self.ds[i]
        x = self.cells[int(self.rng.integers(len(self.cells)))]
        return (self.augment(x) if self.augment is not None else x), torch.tensor(UNLABELLED)
