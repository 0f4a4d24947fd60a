"""Batched forward pass over uint8 images, in eval mode and without gradients."""
from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def logits_for(model: torch.nn.Module, images: torch.Tensor, mean, std, batch_size: int = 64) -> np.ndarray:
    model.eval()
    m = torch.tensor(mean).view(1, 3, 1, 1) * 255
    s = torch.tensor(std).view(1, 3, 1, 1) * 255
    out = []
    for i in range(0, len(images), batch_size):
        x = (images[i:i + batch_size].float() - m) / s
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
