"""A field's scale from its red cells (about 7.5 um across: a ruler in every smear).

The detector itself is the ruler: the field is tried at a few zoom factors, and the one at which
the detected red cells come out nearest the training size (with at least `min_cells` of them) gives
the factor that brings the field to the detector's training scale. A case comes from one microscope,
so `case_scale` takes the median over (up to 5 of) its fields. A stated pixels-per-micrometre wins.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

RBC_MICROMETRES = 7.5
ZOOMS = (1.0, 2.0, 0.5, 3.0, 4.0)  # tried in this order; stops at the first that fits
GOOD_FIT = np.log(1.25)  # red cells within 25% of training size at this zoom: stop looking
SNAP = np.log(1.15)  # a factor within 15% of 1 is taken as 1: the detector was trained with +-20% scale jitter
MAX_SIDE = 2600  # a zoomed copy is never larger than this (pixels)


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1) < 1e-3:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def field_scale(detect, image: np.ndarray, train_rbc: float, threshold: float, min_cells: int = 3) -> float | None:
    """Factor for one field, or None when no zoom shows `min_cells` red cells. `detect` maps an
    image at some scale to Detections (the tiled detector)."""
    best = None
    for z in ZOOMS:
        if z > 1 and max(image.shape[:2]) * z > MAX_SIDE:
            continue
        d = detect(resized(image, z))
        sides = [max(b[2] - b[0], b[3] - b[1]) for b, k, s in zip(d.boxes, d.kinds, d.scores)
                 if k == "rbc" and s >= threshold]
        if len(sides) < min_cells:
            continue
        implied = z * train_rbc / float(np.median(sides))
        miss = abs(np.log(implied / z))  # how far from training size the red cells looked at this zoom
        if best is None or miss < best[0]:
            best = (miss, implied)
        if miss < GOOD_FIT:
            break
    return None if best is None else best[1]


def case_scale(detect, images: list[np.ndarray], train_rbc: float, threshold: float,
               pixels_per_um: float | None = None) -> tuple[float, str]:
    """(factor to multiply every field's size by, how it was found)."""
    if pixels_per_um is not None:
        return (train_rbc / RBC_MICROMETRES) / pixels_per_um, f"stated: {pixels_per_um:g} pixels per micrometre"
    found = [f for f in (field_scale(detect, im, train_rbc, threshold) for im in images[:5]) if f is not None]
    if not found:
        return 1.0, "no red cells found at any zoom: fields taken at their own scale"
    f = float(np.median(found))
    if abs(np.log(f)) < SNAP:
        return 1.0, f"from red cells in {len(found)} field(s): at the training scale (within 15%)"
    return f, f"from red cells in {len(found)} field(s): red cells {train_rbc / f / RBC_MICROMETRES:.1f} px per um"
