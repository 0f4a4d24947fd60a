"""XIncept-ALL (Front. Med. 2025): two ImageNet backbones joined by feature-fusion blocks.

    image -> backbone A (default InceptionV3) -> map A --proj_a (1x1 conv, BN, ReLU)--> a (d ch)
          -> backbone B (default Xception)    -> map B --proj_b (1x1 conv, BN, ReLU)--> b (d ch,
                                                          resized to A's grid)
    fusion: gate g = sigmoid(1x1 conv [a, b]) per position and channel; m = g * a + (1 - g) * b
            [a, b, m] -> squeeze-excitation channel weights -> 1x1 conv to d = fused map F
    head:   global average pool of F -> dropout -> linear (softmax; used for training and gradients)

The paper gives no exact fusion design; this one keeps each backbone's map (for per-backbone
Grad-CAM: layers `proj_a` / `proj_b`), learns where to trust which backbone (the gate), and
re-weights channels of the joined features. `forward_features` returns F, so Grad-CAM on the
default target explains the combined model. Stage 2 fits an XGBoost head on the pooled F
(`forward_head(..., pre_logits=True)`), see heads/xgboost_head.py and train/tree_head.py.

Backbones are any registry names: ('inception_v3', 'xception') need internet for pretrained=True;
('efficientnet_lite0', 'efficientnet_lite2') have offline ImageNet weights. Both backbones must
expect the same input normalisation (all four above use mean = std = 0.5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leukodx.errors import LeukodxError
from leukodx.models.base import TimmStyle
from leukodx.models.registry import create_model, register_model


def _proj(cin: int, d: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True))


class XInceptALL(TimmStyle):
    def __init__(self, num_classes: int, backbones=("inception_v3", "xception"), pretrained: bool = False,
                 fusion_dim: int = 256, drop_rate: float = 0.3):
        super().__init__()
        if len(backbones) != 2:
            raise LeukodxError(f"xincept_all needs two backbones, got {backbones!r}")
        nets = [create_model(b, num_classes=2, pretrained=pretrained) for b in backbones]
        cfgs = [n.pretrained_cfg for n in nets]
        if tuple(cfgs[0].get("mean", ())) != tuple(cfgs[1].get("mean", ())):
            raise LeukodxError(f"backbones {backbones} expect different input normalisation; pick a matching pair")
        for n in nets:
            n.reset_classifier(0)  # features only
        self.backbone_a, self.backbone_b = nets
        self.backbone_names = tuple(backbones)
        d = fusion_dim
        self.proj_a, self.proj_b = _proj(nets[0].num_features, d), _proj(nets[1].num_features, d)
        self.gate = nn.Conv2d(2 * d, d, 1)
        self.se = nn.Sequential(nn.Linear(3 * d, 3 * d // 8), nn.ReLU(inplace=True), nn.Linear(3 * d // 8, 3 * d))
        self.out = nn.Sequential(nn.Conv2d(3 * d, d, 1, bias=False), nn.BatchNorm2d(d), nn.ReLU(inplace=True))
        self.num_features = d
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(d, num_classes)
        self.pretrained_cfg = {**cfgs[0], "backbones": list(backbones)}

    def pretrained_modules(self) -> list[nn.Module]:
        """What a frozen first epoch keeps fixed: the two backbones (fusion blocks and head train)."""
        return [self.backbone_a, self.backbone_b]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        a = self.proj_a(self.backbone_a.forward_features(x))
        b = self.proj_b(self.backbone_b.forward_features(x))
        if b.shape[-2:] != a.shape[-2:]:
            b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
        g = torch.sigmoid(self.gate(torch.cat([a, b], 1)))
        joined = torch.cat([a, b, g * a + (1 - g) * b], 1)
        w = torch.sigmoid(self.se(joined.mean((2, 3))))
        return self.out(joined * w[:, :, None, None])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)


@register_model
def xincept_all(num_classes: int, pretrained: bool = False, **kwargs):
    """XIncept-ALL fusion network; `backbones=(A, B)` (default InceptionV3 + Xception)."""
    return XInceptALL(num_classes, pretrained=pretrained, **kwargs)
