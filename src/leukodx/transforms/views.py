"""The 8 quarter turns and mirror images of a batch (the dihedral group): a cell has no up or left,
so each view is the same cell. Flips and one transpose only, so the views export to ONNX."""
from __future__ import annotations

import torch

VIEW_COUNTS = (1, 2, 4, 8)


def dihedral_views(images: torch.Tensor, n: int = 8) -> list[torch.Tensor]:
    """The first `n` (1-8) views of a batch (N, C, H, W); view 0 is the batch itself, views 0-3 keep
    its rows and columns (identity, mirror, flip, half turn), views 4-7 transpose them."""
    t = images.transpose(2, 3)
    views = [images, images.flip(3), images.flip(2), images.flip((2, 3)), t, t.flip(3), t.flip(2), t.flip((2, 3))]
    return views[:n]
