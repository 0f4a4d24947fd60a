"""What our from-scratch families share: timm's forward split and a no-weights guard."""
from __future__ import annotations

import torch
from torch import nn

from leukodx.errors import LeukodxError


class TimmStyle(nn.Module):
    """Subclasses define `forward_features`, `forward_head` and a `head` Linear."""

    head: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def init_weights(self) -> None:
        """timm's from-scratch initialisation: convolutions He-normal (fan-out, ReLU), linear layers
        truncated normal std 0.02, biases zero, norm layers weight 1 bias 0; position embeddings keep
        their own small init. Called at the end of each family's __init__."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                nn.init.ones_(m.weight)
            else:
                continue
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_input(self, img_size: int) -> None:
        """Inputs scaled to [-1, 1] (mean = std = 0.5), at the side the layers were built for."""
        self.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": (3, img_size, img_size)}


def from_scratch_only(name: str, pretrained: bool) -> None:
    if pretrained:
        raise LeukodxError(f"{name} has no pretrained weights; it trains from scratch (pretrained=False)")
