"""Dataset indexes: which image files, which labels, which groups.

A `DatasetIndex` is plain data (paths, labels, optional group ids and crop boxes); pixels are
read later by `ImageDataset`. Build one from a class-per-folder tree, a CSV manifest, or a
named recipe (see `recipes.py`).
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from leukodx.data.images import is_image_file
from leukodx.data.walk import walk_files
from leukodx.errors import LeukodxError


@dataclass(frozen=True)
class ImageRecord:
    path: str                 # absolute path to the image file
    label: int                # index into DatasetIndex.classes
    group: str | None = None  # patient / slide / duplicate group; None = its own group
    box: tuple[int, int, int, int] | None = None  # crop (xmin, ymin, xmax, ymax) inside the file
    synthetic: bool = False   # generated image: never allowed on the val or test side


@dataclass
class DatasetIndex:
    name: str
    root: str
    classes: list[str]
    records: list[ImageRecord]
    block_size: int = 0       # >0: consecutive file numbers form groups of this size
    notes: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # entries left out while listing, with the reason

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> dict[str, int]:
        out = {c: 0 for c in self.classes}
        for r in self.records:
            out[self.classes[r.label]] += 1
        return out

    def key(self, rec: ImageRecord) -> str:
        """Stable id of a record: its path relative to the root (+ box for crops)."""
        try:
            rel = str(Path(rec.path).relative_to(self.root))
        except ValueError:
            rel = rec.path
        return rel if rec.box is None else f"{rel}#{','.join(map(str, rec.box))}"

    def subset(self, indices) -> DatasetIndex:
        return replace(self, records=[self.records[i] for i in indices])

    def relabel(self, mapping: dict[str, str], name: str) -> DatasetIndex:
        """Merge or drop classes: mapping old class -> new class (missing = dropped)."""
        new_classes = sorted(set(mapping.values()), key=list(mapping.values()).index)
        recs = [replace(r, label=new_classes.index(mapping[self.classes[r.label]]))
                for r in self.records if self.classes[r.label] in mapping]
        return replace(self, name=name, classes=new_classes, records=recs)


def from_folder(root: str | Path, name: str | None = None, classes: list[str] | None = None) -> DatasetIndex:
    """Class-per-folder tree: root/<class>/<image>. Sub-folders below a class are included."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LeukodxError(f"{root}: dataset folder not found")
    found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = list(classes) if classes else found
    missing = [c for c in classes if c not in found]
    if missing:
        raise LeukodxError(f"{root}: class folder(s) missing: {', '.join(missing)}")
    recs, skipped = [], []
    seen = {os.path.realpath(root)} | {os.path.realpath(root / c) for c in found}  # links back into the tree
    for label, cls in enumerate(classes):
        seen.discard(os.path.realpath(root / cls))
        files, skip = walk_files(root / cls, seen)
        skipped += skip + [{"path": str(p), "error": f"skipped: not an image file type ({p.suffix or 'no extension'})"}
                           for p in files if not is_image_file(p)]
        recs += [ImageRecord(str(p), label) for p in files if is_image_file(p)]
    if not recs:
        raise LeukodxError(f"{root}: no images found (expected <class>/<image> folders)")
    return DatasetIndex(name or root.name, str(root), classes, recs, skipped=skipped)


def from_manifest(csv_path: str | Path, name: str | None = None) -> DatasetIndex:
    """CSV with columns path,label and optional group (patient id) and synthetic (0/1).

    Relative paths are resolved against the CSV's folder.
    """
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise LeukodxError(f"{csv_path}: manifest not found")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise LeukodxError(f"{csv_path}: manifest needs a header with at least 'path' and 'label' columns")
    classes = sorted({r["label"] for r in rows})
    recs = []
    for i, r in enumerate(rows, start=2):
        if not r["path"] or not r["label"]:
            raise LeukodxError(f"{csv_path}:{i}: empty path or label")
        p = Path(r["path"])
        p = p if p.is_absolute() else csv_path.parent / p
        synthetic = str(r.get("synthetic", "0")).strip().lower() in ("1", "true", "yes")
        recs.append(ImageRecord(str(p.resolve()), classes.index(r["label"]), r.get("group") or None,
                                synthetic=synthetic))
    return DatasetIndex(name or csv_path.stem, str(csv_path.parent), classes, recs)


def write_manifest(index: DatasetIndex, csv_path: str | Path) -> Path:
    """Written to a temporary file, then renamed: a reader sees the old manifest or the new one."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group", "synthetic"])
        for r in index.records:
            w.writerow([r.path, index.classes[r.label], r.group or "", int(r.synthetic)])
    tmp.replace(csv_path)
    return csv_path
