"""Fields larger than the detector's input are cut into overlapping tiles and merged back.

Each tile keeps only the boxes whose centre lies in its own core (the tile minus half the overlap on
every side it shares with a neighbour). The cores tile the field without gaps or overlaps, so a
cell on a tile border is counted once, by the tile that holds its centre; with an overlap at least
as large as a cell, that tile also sees the whole cell. A final per-kind NMS removes what is left.
"""
from __future__ import annotations

import numpy as np

from leukodx.detect.detector import Detections


def tile_origins(length: int, tile: int, overlap: int) -> list[int]:
    """Start positions along one axis: evenly spread, each step at most tile - overlap."""
    if length <= tile:
        return [0]
    n = int(np.ceil((length - overlap) / (tile - overlap)))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def detect_tiled(detect, image: np.ndarray, tile: tuple[int, int], overlap: int = 288,
                 nms_iou: float = 0.5, slack: float = 1.25) -> Detections:
    """`detect` on every tile of a uint8 (H, W, 3) field; boxes in field pixels. A field at most
    `slack` times the tile in each direction is detected whole (the network takes any size)."""
    import torch
    from torchvision.ops import batched_nms

    h, w = image.shape[:2]
    if w <= tile[0] * slack and h <= tile[1] * slack:
        return detect(image)
    tw, th = tile
    xs, ys = tile_origins(w, tw, overlap), tile_origins(h, th, overlap)
    if len(xs) == 1 and len(ys) == 1:
        return detect(image)
    parts = []
    for yi, y in enumerate(ys):
        for xi, x in enumerate(xs):
            d = detect(image[y:y + th, x:x + tw])
            if not len(d):
                continue
            boxes = d.boxes + np.array([x, y, x, y], np.float32)
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            x0 = 0 if xi == 0 else (x + xs[xi - 1] + tw) / 2  # middle of the overlap with the left tile
            x1 = w if xi == len(xs) - 1 else (xs[xi + 1] + x + tw) / 2
            y0 = 0 if yi == 0 else (y + ys[yi - 1] + th) / 2
            y1 = h if yi == len(ys) - 1 else (ys[yi + 1] + y + th) / 2
            own = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
            parts.append(Detections(boxes, d.kinds, d.scores).keep(own))
    if not parts:
        return Detections.empty()
    boxes = np.concatenate([p.boxes for p in parts])
    kinds = [k for p in parts for k in p.kinds]
    scores = np.concatenate([p.scores for p in parts])
    ids = torch.tensor([sorted(set(kinds)).index(k) for k in kinds])
    keep = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), ids, nms_iou).numpy()
    mask = np.zeros(len(kinds), bool)
    mask[keep] = True
    return Detections(boxes, kinds, scores).keep(mask)
