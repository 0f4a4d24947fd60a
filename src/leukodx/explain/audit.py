"""Shortcut audit: how much attribution falls on the segmented cell, the background, and the
bottom-right corner where taleqani_all has a burned-in scale bar."""
from __future__ import annotations

import numpy as np
from PIL import Image

from leukodx.transforms.preprocess import cell_mask

CORNER = (0.30, 0.15)  # bottom-right region: 30% of the width, 15% of the height


def regions(image: np.ndarray) -> dict[str, np.ndarray]:
    h, w = image.shape[:2]
    cell = cell_mask(Image.fromarray(image))
    corner = np.zeros((h, w), bool)
    corner[int(h * (1 - CORNER[1])):, int(w * (1 - CORNER[0])):] = True
    return {"cell": cell, "background": ~cell, "corner": corner}


def attribution_shares(image: np.ndarray, heat: np.ndarray) -> dict[str, float]:
    """Share of the total attribution in each region, and each region's share of the area
    (a map that ignores content gives share == area)."""
    total = float(heat.sum()) or 1.0
    out = {}
    for name, r in regions(image).items():
        out[f"{name}_share"] = float(heat[r].sum() / total)
        out[f"{name}_area"] = float(r.mean())
    return out


def summarise(rows: list[dict]) -> dict:
    """rows: {'label': ..., '<region>_share': ...}; mean shares per class and overall."""
    keys = [k for k in rows[0] if k.endswith(("_share", "_area"))] if rows else []
    by = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r)
    by["all"] = rows
    return {c: {"n": len(rs), **{k: round(float(np.mean([r[k] for r in rs])), 4) for k in keys}} for c, rs in by.items()}
