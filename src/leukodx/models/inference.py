"""Batched forward pass over uint8 images, in eval mode and without gradients."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.transforms.preprocess import normalize


@torch.inference_mode()
def logits_for(model: torch.nn.Module, images: torch.Tensor, mean, std, batch_size: int = 64,
               pre_logits: bool = False) -> np.ndarray:
    """Logits, or with `pre_logits` the pooled features the classifier sees (for tree heads)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = normalize(images[i:i + batch_size], mean, std).contiguous(memory_format=torch.channels_last)
        y = model.forward_head(model.forward_features(x), pre_logits=True) if pre_logits else model(x)
        out.append(y.float())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
