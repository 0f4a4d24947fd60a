"""Smear fields with boxes (Pascal VOC, as in BCCD) and their grouped split.

A field is one microscope image with every white cell, red cell and platelet boxed. Fields are
split by field, with blocks of consecutive file numbers (neighbouring fields of one slide) and
near-duplicate images kept on one side, through the same `make_split` as the cell data sets.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.errors import LeukodxError

KINDS = ("wbc", "rbc", "platelet")
VOC_NAMES = {"WBC": "wbc", "RBC": "rbc", "Platelets": "platelet", "Platelet": "platelet"}
MIN_BOX = 4  # pixels; smaller boxes are annotation slips


@dataclass
class SmearField:
    path: str
    boxes: np.ndarray     # float32 (N, 4) xmin, ymin, xmax, ymax in image pixels
    kinds: list[str]      # one of KINDS per box
    size: tuple[int, int]  # (width, height) from the annotation

    def count(self, kind: str) -> int:
        return sum(k == kind for k in self.kinds)


def read_voc(xml: Path, image_dir: Path) -> SmearField:
    """One VOC file. Boxes running past the image edge are clipped; tiny or unknown ones dropped."""
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as e:
        raise LeukodxError(f"{xml}: unreadable VOC annotation ({e})") from None
    img = image_dir / (tree.findtext("filename") or xml.with_suffix(".jpg").name)
    if not img.exists():
        img = image_dir / xml.with_suffix(".jpg").name
    w, h = int(tree.findtext("size/width") or 640), int(tree.findtext("size/height") or 480)
    boxes, kinds = [], []
    for obj in tree.iter("object"):
        kind = VOC_NAMES.get((obj.findtext("name") or "").strip())
        if kind is None:
            continue
        try:
            b = [float(obj.findtext(f"bndbox/{k}") or "nan") for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            continue
        b = [max(0.0, b[0]), max(0.0, b[1]), min(float(w), b[2]), min(float(h), b[3])]
        if not (b[2] - b[0] >= MIN_BOX and b[3] - b[1] >= MIN_BOX):  # also drops NaN
            continue
        boxes.append(b)
        kinds.append(kind)
    return SmearField(str(img), np.asarray(boxes, np.float32).reshape(-1, 4), kinds, (w, h))


def smear_root(spec: str | Path) -> Path:
    """A VOC folder path, or the name of one under the shared data folder."""
    p = Path(spec).expanduser()
    if not p.exists():
        from leukodx.data.paths import shared_data_dir
        p = shared_data_dir() / str(spec)
    if not p.is_dir():
        raise LeukodxError(f"{spec}: smear-field data set not found (a folder with Annotations/ and JPEGImages/)")
    return p.resolve()


def load_smear_fields(root: str | Path) -> list[SmearField]:
    """Every annotated field of a VOC folder (Annotations/ + JPEGImages/) whose image exists."""
    root = Path(root)
    ann, imgs = root / "Annotations", root / "JPEGImages"
    if not ann.is_dir() or not imgs.is_dir():
        raise LeukodxError(f"{root}: smear-field layout needs Annotations/ and JPEGImages/ (Pascal VOC)")
    fields = [f for f in (read_voc(x, imgs) for x in sorted(ann.glob("*.xml"))) if Path(f.path).exists()]
    if not fields:
        raise LeukodxError(f"{root}: no annotated fields with an image")
    return fields


def field_index(fields: list[SmearField], root: str | Path, block_size: int = 10) -> DatasetIndex:
    """Fields as a DatasetIndex (one record per field, labelled by whether it has a white cell),
    grouped by blocks of consecutive file numbers, for `make_split`."""
    recs = [ImageRecord(f.path, int(f.count("wbc") > 0)) for f in fields]
    idx = DatasetIndex("smear_fields", str(root), ["no_wbc", "wbc"], recs, block_size=block_size)
    idx.notes.append(f"one record per field; groups: blocks of {block_size} consecutive field numbers")
    return idx


def split_fields(fields: list[SmearField], root: str | Path, seed: int = 0, val_frac: float = 0.15,
                 test_frac: float = 0.2) -> tuple[dict[str, list[int]], dict]:
    """Field indices per side (train / val / test) and the split protocol."""
    from leukodx.data.splits import SIDES, make_split

    idx = field_index(fields, root)
    try:  # stratified by "has a white cell" where both kinds of field are common enough
        split = make_split(idx, val_frac=val_frac, test_frac=test_frac, seed=seed)
    except LeukodxError:
        idx.records, idx.classes = [ImageRecord(r.path, 0) for r in idx.records], ["field"]
        split = make_split(idx, val_frac=val_frac, test_frac=test_frac, seed=seed)
    return {s: split.indices(idx, s) for s in SIDES}, split.protocol


def white_cell_crops(spec: str | Path, n: int = 64, factor: float = 2.5, seed: int = 0) -> list[np.ndarray]:
    """`n` white cells (at random, fixed by `seed`) of a smear-field set, each as an RGB square of `factor` x its
    box's longer side around its centre, clipped to the field: unlabelled cells of another lab (stain references)."""
    from leukodx.data.images import load_image

    cells = [(f.path, b) for f in load_smear_fields(smear_root(spec)) for b, k in zip(f.boxes, f.kinds) if k == "wbc"]
    if not cells:
        raise LeukodxError(f"{spec}: no white-cell boxes")
    pick = np.random.default_rng(seed).permutation(len(cells))[:n]
    out = []
    for i in sorted(pick):
        path, (x0, y0, x1, y1) = cells[i]
        half, cx, cy = max(x1 - x0, y1 - y0) * factor / 2, (x0 + x1) / 2, (y0 + y1) / 2
        img = load_image(path)
        box = (max(0, round(cx - half)), max(0, round(cy - half)), min(img.width, round(cx + half)),
               min(img.height, round(cy + half)))
        out.append(np.asarray(img.crop(box).convert("RGB")))
    return out
