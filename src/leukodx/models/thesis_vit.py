"""Malik (NCI 2025) thesis ViT: 16x16 patches embedded by a strided conv to D = 256, a learnable
CLS token and position embeddings, 4 post-norm encoder layers (4 heads, MLP 512 -> 256 with GELU),
head LayerNorm -> Dense ReLU -> Dropout -> class layer (softmax in the loss).

`forward_features` returns tokens (B, 1 + N, D) with the CLS token first, as timm's ViTs do;
explanations reshape the N patch tokens to the patch grid.
Paper training: Adam 1e-4, batch 32, early stopping (patience 5), LR x0.2 on plateau, best
checkpoint on validation AUC.
"""
from __future__ import annotations

import torch
from torch import nn

from leukodx.errors import LeukodxError
from leukodx.models.base import TimmStyle
from leukodx.models.registry import register_model


def post_norm_encoder(dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.1) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=mlp_dim, dropout=dropout, activation="gelu",
                                       batch_first=True, norm_first=False)
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)


class TokenEncoder(nn.Module):
    """Patch embedding (strided conv) + CLS token + position embeddings + post-norm encoder."""

    def __init__(self, in_chans: int, grid: int, patch: int, dim: int, depth: int, heads: int, mlp_dim: int):
        super().__init__()
        self.grid, self.patch = grid, patch
        self.embed = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, dim) * 0.02)
        self.encoder = post_norm_encoder(dim, depth, heads, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :self.grid * self.patch, :self.grid * self.patch]
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], 1) + self.pos_embed
        return self.encoder(t)


class ThesisViT(TimmStyle):
    def __init__(self, num_classes: int, in_chans: int = 3, img_size: int = 224, patch_size: int = 16,
                 embed_dim: int = 256, depth: int = 4, num_heads: int = 4, mlp_dim: int = 512,
                 hidden: int = 256, drop_rate: float = 0.3):
        super().__init__()
        if img_size % patch_size:
            raise LeukodxError(f"thesis_vit: img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.grid = img_size // patch_size
        self.tokens = TokenEncoder(in_chans, self.grid, patch_size, embed_dim, depth, num_heads, mlp_dim)
        self.num_features = embed_dim
        self.fc_norm = nn.LayerNorm(embed_dim)
        self.fc = nn.Linear(embed_dim, hidden)
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(hidden, num_classes)
        self.set_input(img_size)
        self.init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(torch.relu(self.fc(self.fc_norm(x[:, 0]))))
        return x if pre_logits else self.head(x)


@register_model
def thesis_vit(num_classes: int, pretrained: bool = False, img_size: int = 224, **kwargs):
    if pretrained:
        raise LeukodxError("thesis_vit has no pretrained weights; it trains from scratch (pretrained=False). "
                           "For an ImageNet ViT use create_model('vit', pretrained=True) (needs internet).")
    return ThesisViT(num_classes, img_size=img_size, **kwargs)
