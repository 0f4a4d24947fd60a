"""Malik (NCI 2025) thesis CNN: three 3x3 conv + max-pool stages, BatchNorm over the flattened
features, a 128-unit dense layer, dropout 0.5 and the class layer.

Exposes timm's interface: `forward_features` returns the last conv feature map (the Grad-CAM
target), `forward_head` flattens, normalises and classifies.
Paper training: Adam 1e-4; rotation 20, shift 10%, shear, zoom 10%, horizontal flip.
"""
from __future__ import annotations

import torch
from torch import nn

from leukodx.models.base import TimmStyle, from_scratch_only
from leukodx.models.registry import register_model


class ThesisCNN(TimmStyle):
    def __init__(self, num_classes: int, in_chans: int = 3, img_size: int = 224, widths=(32, 64, 128),
                 hidden: int = 128, drop_rate: float = 0.5, batchnorm: bool = True):
        super().__init__()
        layers, c = [], in_chans
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.num_features = c
        side = img_size // 2 ** len(widths)
        flat = c * side * side
        self.norm = nn.BatchNorm1d(flat) if batchnorm else nn.Identity()
        self.fc = nn.Linear(flat, hidden)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(hidden, num_classes)
        self.set_input(img_size)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.relu(self.fc(self.norm(torch.flatten(x, 1)))))
        return x if pre_logits else self.head(x)


@register_model
def thesis_cnn(num_classes: int, pretrained: bool = False, img_size: int = 224, **kwargs):
    from_scratch_only("thesis_cnn", pretrained)
    return ThesisCNN(num_classes, img_size=img_size, **kwargs)
