"""The classical baseline the learned detector has to beat: stain thresholds + connected components.

Purple (blue minus red above Otsu) objects are nuclei: large ones are white cells (box grown to
take in the cytoplasm), small ones platelets. Other stained pixels are red cells, split where they
touch by a watershed on the distance transform. Sizes are relative to the red-cell diameter.
"""
from __future__ import annotations

import numpy as np

from leukodx.detect.detector import Detections


class ClassicalDetector:
    def __init__(self, rbc_diameter: float = 105.0, wbc_grow: float = 1.35):
        self.rbc_diameter, self.wbc_grow = float(rbc_diameter), float(wbc_grow)

    def detect(self, image: np.ndarray) -> Detections:
        from scipy import ndimage
        from skimage.feature import peak_local_max
        from skimage.filters import threshold_otsu
        from skimage.measure import regionprops
        from skimage.segmentation import watershed

        a = image.astype(np.float32)
        d = self.rbc_diameter
        h, w = a.shape[:2]
        boxes, kinds = [], []
        purple = ndimage.gaussian_filter(a[..., 2] - a[..., 0], 1.5)
        if purple.max() - purple.min() > 20:
            pmask = ndimage.binary_opening(purple > max(20.0, threshold_otsu(purple)), iterations=2)
            lab, _ = ndimage.label(ndimage.binary_closing(pmask, iterations=max(1, round(d / 30))))
            for r in regionprops(lab):
                side = max(r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1])
                if side < 0.15 * d:
                    continue
                y0, x0, y1, x1 = r.bbox
                if side >= 0.55 * d:  # a nucleus: grow to the cell
                    cy, cx, half = (y0 + y1) / 2, (x0 + x1) / 2, side * self.wbc_grow / 2
                    boxes.append([max(0, cx - half), max(0, cy - half), min(w, cx + half), min(h, cy + half)])
                    kinds.append("wbc")
                else:
                    boxes.append([x0, y0, x1, y1])
                    kinds.append("platelet")
        else:
            pmask = np.zeros((h, w), bool)
        g = ndimage.gaussian_filter(a[..., 1], 1.5)
        dark = np.percentile(g, 95) - g
        if dark.max() > 20:
            cells = ndimage.binary_fill_holes(ndimage.binary_opening(dark > threshold_otsu(dark), iterations=2))
            cells &= ~ndimage.binary_dilation(pmask, iterations=max(1, round(d / 8)))
            dist = ndimage.distance_transform_edt(cells)
            peaks = peak_local_max(dist, min_distance=max(2, round(0.3 * d)), threshold_abs=0.2 * d, labels=cells)
            markers = np.zeros((h, w), np.int32)
            markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
            for r in regionprops(watershed(-dist, markers, mask=cells)):
                y0, x0, y1, x1 = r.bbox
                if max(y1 - y0, x1 - x0) >= 0.5 * d:
                    boxes.append([x0, y0, x1, y1])
                    kinds.append("rbc")
        return Detections(np.asarray(boxes, np.float32).reshape(-1, 4), kinds, np.ones(len(kinds), np.float32))
