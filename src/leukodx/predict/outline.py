"""The classic pipeline's visual output: its cell mask (Otsu, or the whole white cell for a model
trained with `keep_cytoplasm`) and the image with the detected cell outlined (red when the predicted
class is abnormal, green when it is a normal / benign class)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from leukodx.data.images import load_image
from leukodx.data.walk import derived_name
from leukodx.transforms.preprocess import MaskBackground

NORMAL_CLASSES = {"benign", "healthy", "hem", "normal"}


def outline_image(img: Image.Image, mask: np.ndarray, abnormal: bool, caption: str = "") -> Image.Image:
    """Draw the mask's boundary (3 px) over the image, with an optional caption."""
    from scipy import ndimage

    edge = mask & ~ndimage.binary_erosion(mask, iterations=3)
    a = np.array(img.convert("RGB"))
    a[edge] = (230, 30, 30) if abnormal else (30, 200, 60)
    out = Image.fromarray(a)
    if caption:
        d = ImageDraw.Draw(out)
        d.rectangle([0, 0, 8 + 7 * len(caption), 16], fill=(0, 0, 0))
        d.text((4, 2), caption, fill=(255, 255, 255))
    return out


def write_outlines(preds, out_dir: str | Path, normal_classes=NORMAL_CLASSES, keep_cytoplasm: bool = False) -> list[dict]:
    """For each prediction: `<name>_mask.png` and `<name>_outline.png` in out_dir. Returns one row
    per image with the two paths and the cell's share of the image. `keep_cytoplasm`: the model's own
    mask (PreprocessConfig.keep_cytoplasm), the whole white cell instead of Otsu's dark pixels."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, masker = [], MaskBackground(keep_cytoplasm)
    for i, p in enumerate(preds):
        img = load_image(p.path)
        mask = masker.mask(img)
        stem = derived_name(i, p.path)
        abnormal = p.label.lower() not in normal_classes
        Image.fromarray((mask * 255).astype(np.uint8)).save(out_dir / f"{stem}_mask.png")
        outline_image(img, mask, abnormal, f"{p.label} {p.probability:.2f}").save(out_dir / f"{stem}_outline.png")
        rows.append({"path": p.path, "mask": str(out_dir / f"{stem}_mask.png"),
                     "outline": str(out_dir / f"{stem}_outline.png"), "cell_fraction": round(float(mask.mean()), 4),
                     "abnormal": abnormal})
    return rows
