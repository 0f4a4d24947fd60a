"""DDRNet (Jawahar et al., Sci. Rep. 2024): deep residual dilated blocks (DRDB), a global-local
feature enhancement block (GLFEB) and a channel & spatial attention block (CSAB).

    image -> stem (conv 3x3, max-pool, GroupNorm, ReLU; 32 filters first) = global feature f0
          -> DRDB x n (six parallel residual paths, concatenated, fused by a 1x1 conv, block skip)
          -> GLFEB: conv-GN-ReLU (64), (128), (128), conv 3x3 back to c = g;  z = tanh([g, f0])
          -> CSAB(z): channel weights (avg + max pool -> FC -> ReLU -> FC -> sigmoid) and spatial
             weights (5x5 conv -> sigmoid), applied to z, projected to c and added to g
          -> GroupNorm, ReLU -> global average pool -> dropout 0.2 -> fully connected head

Choices where the paper is ambiguous:
- Output: softmax over classes (trained with cross-entropy); the paper's "sigmoid" only fits binary.
- GroupNorm: up to 32 groups with at least 8 channels each (the 32-channel stem gets 4 groups, not
  instance norm); the last one is followed by a ReLU, so pooled features are not zero-sum per group.
- The three residual convolution paths use kernels 1, 3 and 5 (three identical 3x3 paths would only
  differ by initialisation); the three dilated paths use 3x3 kernels with dilation 1, 2 and 4.
- Spatial attention: a 5x5 conv over the channel-wise mean and max (normalised across channels),
  then sigmoid; the ReLU the paper lists after the sigmoid is a no-op and is left out.
- CSAB works on the 2c-channel tanh output; a 1x1 conv brings it back to c before the element-wise
  sum with the GLFEB conv output.
- Stem depth: `stem_widths` (default 32, 64); each stage halves the resolution, keeping CPU cost sane.

Ablation switches (paper Table 6): `variant` is one of VARIANTS. Without GLFEB there is no tanh
concat; without CSAB the enhanced features go straight to the head.
"""
from __future__ import annotations

import torch
from torch import nn

from leukodx.errors import LeukodxError
from leukodx.models.base import TimmStyle, from_scratch_only
from leukodx.models.registry import register_model

VARIANTS = {  # name -> (DRDB, GLFEB, CSAB)
    "conv": (False, False, False),
    "drdb": (True, False, False),
    "drdb_csab": (True, False, True),
    "glfeb": (False, True, False),
    "glfeb_csab": (False, True, True),
    "drdb_glfeb": (True, True, False),
    "full": (True, True, True),
}


def group_norm(channels: int, groups: int = 32, min_group_channels: int = 8) -> nn.GroupNorm:
    """At most `groups` groups of at least `min_group_channels` channels (Wu & He: 8-16 channels per
    group work as well as 32 groups). One channel per group would be instance norm: at the stem it
    would erase each image's stain level and contrast."""
    most = max(1, min(groups, channels // min_group_channels))
    g = max(d for d in range(1, most + 1) if channels % d == 0)
    return nn.GroupNorm(g, channels)


def conv_gn_relu(cin: int, cout: int, k: int = 3, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
            group_norm(cout), nn.ReLU(inplace=True)]


class ResidualPath(nn.Module):
    """conv, GN, ReLU, conv, GN, plus the input."""

    def __init__(self, c: int, k: int = 3, dilation: int = 1):
        super().__init__()
        pad = dilation * (k // 2)
        self.body = nn.Sequential(*conv_gn_relu(c, c, k, dilation),
                                  nn.Conv2d(c, c, k, padding=pad, dilation=dilation, bias=False), group_norm(c))

    def forward(self, x):
        return x + self.body(x)


class DRDB(nn.Module):
    """Deep residual dilated block: three residual conv paths (k = 1, 3, 5) and three residual dilated
    paths (dilation 1, 2, 4) on the same input, concatenated, fused by a 1x1 conv, plus a block skip."""

    def __init__(self, c: int):
        super().__init__()
        self.paths = nn.ModuleList([ResidualPath(c, k) for k in (1, 3, 5)] +
                                   [ResidualPath(c, 3, d) for d in (1, 2, 4)])
        self.fuse = nn.Sequential(nn.Conv2d(6 * c, c, 1, bias=False), group_norm(c))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x + self.fuse(torch.cat([p(x) for p in self.paths], 1)))


class GLFEB(nn.Module):
    """Local enhancement convs (64, 128, 128 filters) back to c channels; returns the conv output g
    and tanh of g concatenated with the global feature."""

    def __init__(self, c: int, widths=(64, 128, 128)):
        super().__init__()
        layers, cin = [], c
        for w in widths:
            layers += conv_gn_relu(cin, w)
            cin = w
        layers.append(nn.Conv2d(cin, c, 3, padding=1))
        self.local = nn.Sequential(*layers)

    def forward(self, x, global_feature):
        g = self.local(x)
        return g, torch.tanh(torch.cat([g, global_feature], 1))


class CSAB(nn.Module):
    """Channel attention (shared two-layer FC over avg- and max-pooled channels) then spatial
    attention (5x5 conv over channel mean and max), both sigmoid-gated."""

    def __init__(self, c: int, reduction: int = 8):
        super().__init__()
        hidden = max(c // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(c, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c))
        self.spatial = nn.Conv2d(2, 1, 5, padding=2)

    def forward(self, x):
        w = torch.sigmoid(self.fc(x.mean((2, 3))) + self.fc(x.amax((2, 3))))
        x = x * w[:, :, None, None]
        s = torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x * s


class DDRNet(TimmStyle):
    def __init__(self, num_classes: int, in_chans: int = 3, img_size: int = 224, variant: str = "full",
                 num_drdb: int = 2, stem_widths=(32, 64), drop_rate: float = 0.2):
        super().__init__()
        if variant not in VARIANTS:
            raise LeukodxError(f"unknown DDRNet variant '{variant}'; choose one of {', '.join(VARIANTS)}")
        if not isinstance(num_drdb, int) or num_drdb < 1:
            raise LeukodxError(f"num_drdb must be an integer >= 1, got {num_drdb!r}")
        self.variant = variant
        use_drdb, use_glfeb, use_csab = VARIANTS[variant]
        stem, cin = [], in_chans
        for w in stem_widths:
            stem += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.MaxPool2d(2), group_norm(w), nn.ReLU(inplace=True)]
            cin = w
        self.stem = nn.Sequential(*stem)
        c = cin
        self.drdb = nn.Sequential(*[DRDB(c) for _ in range(num_drdb)]) if use_drdb else nn.Identity()
        self.glfeb = GLFEB(c) if use_glfeb else None
        width = 2 * c if use_glfeb else c
        self.csab = CSAB(width) if use_csab else None
        self.project = nn.Conv2d(width, c, 1) if use_csab else None
        self.num_features = c if use_csab else width
        self.norm = nn.Sequential(group_norm(self.num_features), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes)
        self.set_input(img_size)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.stem(x)
        local = self.drdb(f0)
        g, z = (local, local) if self.glfeb is None else self.glfeb(local, f0)
        if self.csab is not None:
            z = self.project(self.csab(z)) + g
        return self.norm(z)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.head(x)


@register_model
def ddrnet(num_classes: int, pretrained: bool = False, img_size: int = 224, **kwargs):
    """DDRNet; `variant` picks an ablation of Table 6 (default 'full')."""
    from_scratch_only("ddrnet", pretrained)
    return DDRNet(num_classes, img_size=img_size, **kwargs)
