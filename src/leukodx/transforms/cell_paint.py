"""Painting the stained cells out of a model-input image, with the median colour of the rest: the
counterfactual of benchmarks/cell_removal.py (does the model still answer without the cells?) and of
the `paint_out_cells` training option (it should not). `control` paints the same blobs elsewhere, so
that as much paint and as many edges appear while the cells stay."""
from __future__ import annotations

import numpy as np
from PIL import Image

from leukodx.transforms.cell_finder import CellCentre, stained_cells


def cell_region(image: np.ndarray) -> np.ndarray:
    """Every purple-stained object of an (H, W, 3) uint8 image, grown by 2 px."""
    from scipy import ndimage

    return ndimage.binary_dilation(stained_cells(Image.fromarray(image)), iterations=2)


def moved_region(region: np.ndarray, seed: int, tries: int = 20) -> np.ndarray:
    """The region rolled to the place (of `tries` random ones) where it overlaps itself least."""
    rng = np.random.default_rng(seed)
    moved = np.zeros_like(region)
    for _ in range(tries):
        cand = np.roll(region, tuple(rng.integers(0, region.shape[0], 2)), axis=(0, 1)) & ~region
        moved = cand if cand.sum() > moved.sum() else moved
    return moved


def paint(image: np.ndarray, region: np.ndarray, outside: np.ndarray | None = None) -> np.ndarray:
    """A copy with `region` filled by the median colour of `outside` (default: the rest of the image)."""
    outside = ~region if outside is None else outside
    fill = np.median(image[outside].reshape(-1, 3), 0).astype(np.uint8) if outside.any() else np.full(3, 230, np.uint8)
    out = image.copy()
    out[region] = fill
    return out


def paint_out_cells(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(the cells painted out, control: the same blobs painted elsewhere, the cells kept)."""
    m = cell_region(image)
    return paint(image, m), paint(image, moved_region(m, seed), outside=~m)


def recentred(image: np.ndarray, side_per_diameter: float, darkness: str = "green") -> np.ndarray:
    """What cell-centring makes of an image whose cell was painted out: the darkest object left (a red
    cell, a clump) centred and zoomed to the same number of its diameters, at the image's size."""
    img = Image.fromarray(image)
    return np.asarray(CellCentre(side_per_diameter, darkness)(img).resize(img.size, Image.Resampling.BILINEAR))
