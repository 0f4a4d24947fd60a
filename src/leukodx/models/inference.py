"""Batched forward pass over uint8 images, in eval mode and without gradients."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.transforms.preprocess import normalize
from leukodx.transforms.views import dihedral_views


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a network's weights are (the CPU for one without any): inputs go there, outputs come back."""
    return next(model.parameters(), torch.empty(0)).device


@torch.inference_mode()
def logits_for(model: torch.nn.Module, images: torch.Tensor, mean, std, batch_size: int = 64,
               pre_logits: bool = False, views: int = 1) -> np.ndarray:
    """Logits, or with `pre_logits` the pooled features the classifier sees (for tree heads); with
    `views` > 1, the mean over that many quarter turns / mirror images of each image (what
    heads.familiarity.FamiliarNet computes for a model file with `views`)."""
    model.eval()
    device = model_device(model)
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size].to(device), mean, std).contiguous(memory_format=torch.channels_last)
        per_view = [model.forward_head(model.forward_features(v), pre_logits=True) if pre_logits else model(v)
                    for v in dihedral_views(x, views)]
        y = torch.stack(per_view).mean(0)
        out.append(y.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
