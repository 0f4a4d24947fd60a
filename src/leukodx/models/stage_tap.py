"""An EfficientNet whose classifier also sees an earlier stage: the pooled output of block `stage`,
standardised per channel (buffers `tap_mean` / `tap_std`), beside the usual pooled features.
Mid-level features (texture, the nucleus outline) move less between labs than the last stage's, so a
head refit on both adapts to a new lab from fewer cells (`leukodx adapt --tap-stage`, results/adapt.md).

`forward_features` returns both maps stacked on the channel axis (the earlier one average-pooled to
the last one's grid), so Grad-CAM, the unfamiliar-image distance and ONNX export work unchanged."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leukodx.errors import LeukodxError


def stage_channels(net: nn.Module, stage: int) -> int:
    """Output channels of `net.blocks[stage]` (its last convolution)."""
    return [m for m in net.blocks[stage].modules() if isinstance(m, nn.Conv2d)][-1].out_channels


class StageTap(nn.Module):
    def __init__(self, net: nn.Module, stage: int, num_classes: int):
        super().__init__()
        blocks = getattr(net, "blocks", None)
        if blocks is None or not isinstance(stage, int) or not 0 <= stage < len(blocks) - 1:
            n = len(blocks) if blocks is not None else 0
            raise LeukodxError(f"tap_stage must be an integer block index 0-{n - 2} of an EfficientNet, got {stage!r}")
        self.net, self.stage = net, stage
        self.tap_channels = stage_channels(net, stage)
        self.register_buffer("tap_mean", torch.zeros(self.tap_channels))
        self.register_buffer("tap_std", torch.ones(self.tap_channels))
        self.num_features = self.tap_channels + net.num_features
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.pretrained_cfg = getattr(net, "pretrained_cfg", {})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net.bn1(self.net.conv_stem(x))
        tap = h
        for i, block in enumerate(self.net.blocks):
            h = block(h)
            if i == self.stage:
                tap = h
        h = self.net.bn2(self.net.conv_head(h))
        ratio = tap.shape[-1] // h.shape[-1]
        if ratio > 1:
            tap = F.avg_pool2d(tap, ratio)
        tap = (tap - self.tap_mean[:, None, None]) / self.tap_std[:, None, None]
        return torch.cat([tap, h], 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Linear:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes)
