"""Malik (NCI 2025) thesis hybrid CNN-ViT.

    image -> four conv blocks (32, 64, 128, 256; 3x3, BatchNorm, ReLU; max-pool after the first three)
          = feature map F (1/8 of the input side)
    CNN branch: global average pool of F -> Dense 256 (ReLU)
    ViT branch: F cut into a 3x3 grid of patches -> 6 post-norm encoder blocks (D = 256) -> CLS token
    fused by addition -> MLP head 512 -> 256 (GELU, dropout) -> class layer

Patching: the thesis says "9 patches from a 28x28 map with 16x16 patches", which does not add up.
We use patch side p = floor(S / 3) for an S x S map, so the grid is always 3x3 (9 tokens); at
224 px S = 28, p = 9, and the last row and column of the map are not tokenised.

`forward_features` returns F, so Grad-CAM targets the last conv block like any CNN; `forward_head`
runs both branches from F.
"""
from __future__ import annotations

import torch
from torch import nn

from leukodx.errors import LeukodxError
from leukodx.models.base import TimmStyle, from_scratch_only
from leukodx.models.registry import register_model
from leukodx.models.thesis_vit import TokenEncoder


class HybridCNNViT(TimmStyle):
    def __init__(self, num_classes: int, in_chans: int = 3, img_size: int = 224, widths=(32, 64, 128, 256),
                 embed_dim: int = 256, depth: int = 6, num_heads: int = 4, mlp_dim: int = 512,
                 drop_rate: float = 0.3):
        super().__init__()
        layers, c = [], in_chans
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        side = img_size // 2 ** (len(widths) - 1)
        if side < 3:
            raise LeukodxError(f"hybrid_cnn_vit: img_size {img_size} gives a {side}x{side} map, too small for 3x3 patches")
        self.num_features = c
        self.cnn_branch = nn.Sequential(nn.Linear(c, embed_dim), nn.ReLU(inplace=True))
        self.vit_branch = TokenEncoder(c, 3, side // 3, embed_dim, depth, num_heads, mlp_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, 512), nn.GELU(), nn.Dropout(drop_rate),
                                 nn.Linear(512, 256), nn.GELU(), nn.Dropout(drop_rate))
        self.head = nn.Linear(256, num_classes)
        self.set_input(img_size)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        fused = self.cnn_branch(x.mean((2, 3))) + self.vit_branch(x)[:, 0]
        x = self.mlp(fused)
        return x if pre_logits else self.head(x)


@register_model
def hybrid_cnn_vit(num_classes: int, pretrained: bool = False, img_size: int = 224, **kwargs):
    from_scratch_only("hybrid_cnn_vit", pretrained)
    return HybridCNNViT(num_classes, img_size=img_size, **kwargs)
