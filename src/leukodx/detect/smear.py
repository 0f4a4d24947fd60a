"""`leukodx smear`: smear fields -> every white cell, red cell and platelet -> typed white cells ->
differential count. Image in, rows out; writing the files is leukodx.detect.outputs.

Path of a field: load -> case scale (red cells, or stated pixels per um) -> resize to the detector's
training scale -> tiled detection -> boxes back to the field's pixels -> each white cell cut as a
square centred on its box (twice its size, as in the WBC model's training crops) -> WBC model with
its referral.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from leukodx.data.images import load_image
from leukodx.detect.detector import Detections, Detector
from leukodx.detect.scale import case_scale, resized
from leukodx.detect.tiles import detect_tiled
from leukodx.transforms.stain import border_colour

CROP_FACTOR = 2.0


def cell_crop(image: np.ndarray, box, factor: float = CROP_FACTOR) -> Image.Image:
    """Square of `factor` x the box's longer side around its centre; outside the field is filled with
    the field's background colour (never black)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(8, round(max(x1 - x0, y1 - y0) * factor))
    cx, cy = round((x0 + x1) / 2), round((y0 + y1) / 2)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = border_colour(image, width=4)
    left, top = cx - side // 2, cy - side // 2
    h, w = image.shape[:2]
    sx0, sy0, sx1, sy1 = max(0, left), max(0, top), min(w, left + side), min(h, top + side)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return Image.fromarray(out)


@dataclass
class SmearCase:
    rows: list[dict] = field(default_factory=list)     # one per detected object (detections.csv)
    sizes: dict = field(default_factory=dict)          # image -> (width, height)
    errors: list[dict] = field(default_factory=list)   # unusable files, with the reason
    scale: float = 1.0
    scale_note: str = ""


class SmearAnalyzer:
    def __init__(self, detector: Detector, predictor, pixels_per_um: float | None = None,
                 expected: np.ndarray | None = None):
        """`expected`: a mask of the white-cell classes the answers are limited to (leukodx.heads.expected)."""
        self.detector, self.predictor, self.pixels_per_um = detector, predictor, pixels_per_um
        self.expected = expected

    def detect(self, image: np.ndarray) -> Detections:
        """All boxes of a field already at training scale (tiled when larger than the detector input)."""
        return detect_tiled(self.detector.detect, image, self.detector.tile)

    def field_boxes(self, image: np.ndarray, scale: float) -> Detections:
        """Boxes above the score threshold, in the field's own pixels."""
        d = self.detect(resized(image, scale))
        d = d.confident(self.detector.score_thresholds)
        return Detections(d.boxes / np.float32(scale), d.kinds, d.scores)

    def analyse(self, paths, names: list[str] | None = None) -> SmearCase:
        case = SmearCase()
        images = {}
        for p, name in zip(paths, names or [str(p) for p in paths]):
            try:
                images[name] = np.asarray(load_image(p), np.uint8)
            except Exception as e:  # noqa: BLE001 - any unusable file is reported, the rest go on
                case.errors.append({"path": name, "error": str(e)})
        case.scale, case.scale_note = case_scale(self.detect, list(images.values()), self.detector.rbc_diameter,
                                                 self.detector.score_thresholds["rbc"], self.pixels_per_um)
        for name, img in images.items():
            case.sizes[name] = (img.shape[1], img.shape[0])
            d = self.field_boxes(img, case.scale)
            wbc = [i for i, k in enumerate(d.kinds) if k == "wbc"]
            preds = self.predictor.predict_images([cell_crop(img, d.boxes[i]) for i in wbc], self.expected) if wbc else []
            typed = dict(zip(wbc, preds))
            for i, (box, kind, score) in enumerate(zip(d.boxes, d.kinds, d.scores)):
                p = typed.get(i)
                case.rows.append({"image": name, "box": [round(float(v), 1) for v in box], "kind": kind,
                                  "score": round(float(score), 4), "label": p.label if p else "",
                                  "probability": round(float(p.probability), 4) if p else None,
                                  "refer": bool(p.refer) if p else False,
                                  "refer_reason": p.refer_reason if p else None})
        return case
