"""Shortcut audit: how much attribution falls on the segmented cell, on every stained cell of the
field, the background, and the bottom-right corner where taleqani_all has a burned-in scale bar.
`cell` is the largest dark blob (one white cell per image, as in PBC); `stained` is every
purple-stained object (the blasts of a many-cell field, as in taleqani_all), red cells left out;
`background` is outside both. `cell_interventions` tests the same question without attribution
maps: it paints the stained cells out (or everything else) so that a model can be re-scored."""
from __future__ import annotations

import numpy as np
from PIL import Image

from leukodx.transforms.cell_finder import stained_cells
from leukodx.transforms.cell_paint import cell_region, moved_region, paint
from leukodx.transforms.preprocess import cell_mask

CORNER = (0.30, 0.15)  # bottom-right region: 30% of the width, 15% of the height


def regions(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    img = Image.fromarray(image)
    cell, stained = cell_mask(img), stained_cells(img)
    corner = np.zeros((h, w), bool)
    corner[int(h * (1 - CORNER[1])):, int(w * (1 - CORNER[0])):] = True
    return {"cell": cell, "stained": stained, "background": ~(cell | stained), "corner": corner}


def attribution_shares(image: np.ndarray, heat: np.ndarray, grid: int | None = None) -> dict[str, float]:
    """Share of the total attribution in each region, and each region's share of the area
    (a map that ignores content gives share == area). With `grid` (a CAM's feature-map size), also
    `ceiling_share`: the stained share of the best map at that resolution, the stained-cell mask
    averaged over the grid and scaled back up."""
    total = float(heat.sum()) or 1.0
    out = {}
    masks = regions(image)
    for name, r in masks.items():
        out[f"{name}_share"] = float(heat[r].sum() / total)
        out[f"{name}_area"] = float(r.mean())
    if grid is not None:
        import torch

        m = torch.from_numpy(masks["stained"].astype(np.float32))[None, None]
        best = torch.nn.functional.interpolate(torch.nn.functional.adaptive_avg_pool2d(m, grid),
                                               size=image.shape[:2], mode="bilinear")[0, 0].numpy()
        out["ceiling_share"] = float(best[masks["stained"]].sum() / (float(best.sum()) or 1.0))
    return out


def summarise(rows: list[dict]) -> dict:
    """rows: {'label': ..., '<region>_share': ...}; mean shares per class and overall."""
    keys = [k for k in rows[0] if k.endswith(("_share", "_area"))] if rows else []
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    by["all"] = rows
    return {c: {"n": len(rs), **{k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys}} for c, rs in by.items()}


def cell_interventions(image: np.ndarray) -> dict[str, np.ndarray]:
    """Copies of a model-input image (H, W, 3 uint8) for an intervention audit (benchmarks/cell_removal.py):
    `cells painted out` (every stained object, grown by 2 px, painted with the median colour of the rest),
    `control: the same blobs elsewhere` (the same mask moved off the cells and painted there: as much
    paint and as many edges, the cells left alone) and `cells only` (all but the stained objects painted)."""
    m = cell_region(image)
    moved = moved_region(m, int(image[::7, ::7].sum()))
    return {"cells painted out": paint(image, m), "control: the same blobs elsewhere": paint(image, moved, outside=~m),
            "cells only": paint(image, ~m, outside=~m)}
