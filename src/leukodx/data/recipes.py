"""Named recipes for the public data sets of our field, and their download code.

`load_recipe(name, root)` returns a DatasetIndex with labels and groups set the way the
data set needs (patient ids where they exist; otherwise duplicate lists and number blocks).
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from leukodx.data.dataset import DatasetIndex, ImageRecord, from_folder
from leukodx.errors import LeukodxError

TALEQANI_CLASSES = ["Benign", "Early", "Pre", "Pro"]
PBC_CLASSES = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
PBC4_CLASSES = ["eosinophil", "lymphocyte", "monocyte", "neutrophil"]
BCCD_CLASSES = ["Platelets", "RBC", "WBC"]


def _taleqani(root: Path) -> DatasetIndex:
    idx = from_folder(root, "taleqani_all", TALEQANI_CLASSES)
    idx.block_size = 25  # consecutive numbers likely share a slide (see the data README)
    idx.notes.append("groups: blocks of 25 consecutive image numbers per class + duplicates.txt")
    return idx


def _taleqani_binary(root: Path) -> DatasetIndex:
    idx = _taleqani(root)
    m = {"Benign": "Benign", "Early": "Malignant", "Pre": "Malignant", "Pro": "Malignant"}
    return idx.relabel(m, "taleqani_binary")


def _pbc(root: Path) -> DatasetIndex:
    idx = from_folder(root, "pbc", PBC_CLASSES)
    idx.notes.append("no patient ids: groups from duplicates.txt and image hashes only")
    return idx


def _pbc4(root: Path) -> DatasetIndex:
    return _pbc(root).relabel({c: c for c in PBC4_CLASSES}, "pbc4")


def _bccd(root: Path) -> DatasetIndex:
    """Crops cut from the VOC boxes of BCCD fields; every crop is grouped with its field."""
    from leukodx.data.smears import load_smear_fields

    names = {"platelet": "Platelets", "rbc": "RBC", "wbc": "WBC"}
    recs = [ImageRecord(f.path, BCCD_CLASSES.index(names[k]), group=Path(f.path).stem, box=tuple(int(v) for v in b))
            for f in load_smear_fields(root) for b, k in zip(f.boxes, f.kinds)
            if b[2] - b[0] >= 8 and b[3] - b[1] >= 8]
    if not recs:
        raise LeukodxError(f"{root}: no usable boxes in Annotations/")
    idx = DatasetIndex("bccd", str(root), list(BCCD_CLASSES), recs)
    idx.notes.append("crops from VOC boxes; grouped by source field")
    return idx


_CNMC_RE = re.compile(r"^UID_(H?\d+)_\d+_\d+_(all|hem)\.bmp$", re.IGNORECASE)


def _cnmc(root: Path) -> DatasetIndex:
    """C-NMC 2019: fold_*/{all,hem}/UID_<patient>_<img>_<cell>_{all,hem}.bmp; group = patient."""
    recs = []
    for p in sorted(root.rglob("*")):
        m = _CNMC_RE.match(p.name)
        if p.is_file() and m:
            label = 0 if m.group(2).lower() == "all" else 1
            recs.append(ImageRecord(str(p), label, group=f"patient_{m.group(1)}"))
    if not recs:
        raise LeukodxError(f"{root}: no C-NMC files named UID_<patient>_..._all.bmp / _hem.bmp found")
    idx = DatasetIndex("cnmc", str(root), ["ALL", "hem"], recs)
    idx.notes.append("groups: patient id parsed from file names")
    return idx


_ALLIDB_RE = re.compile(r"^Im\d+_([01])\.(tif|tiff|jpg|png)$", re.IGNORECASE)


def _allidb2(root: Path) -> DatasetIndex:
    """ALL-IDB2: ImNNN_1.tif = blast (ALL), ImNNN_0.tif = healthy."""
    recs = []
    for p in sorted(root.rglob("*")):
        m = _ALLIDB_RE.match(p.name)
        if p.is_file() and m:
            recs.append(ImageRecord(str(p), 1 if m.group(1) == "0" else 0))
    if not recs:
        raise LeukodxError(f"{root}: no ALL-IDB2 files named ImNNN_0.tif / ImNNN_1.tif found")
    return DatasetIndex("allidb2", str(root), ["ALL", "healthy"], recs)


WBC_EXTERNAL_LABS = ("tecom", "cellavision_blog")


def _wbc_external(root: Path) -> DatasetIndex:
    """White cells from other labs (validation of generalisation only, never training): root/<lab>/<class>/.
    Every image is its own group; `lab_of` tells which lab a record comes from."""
    labs = [lab for lab in WBC_EXTERNAL_LABS if (root / lab).is_dir()] or \
        sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != "masks")
    parts = [from_folder(root / lab, lab) for lab in labs]
    if not parts:
        raise LeukodxError(f"{root}: no lab folders (expected {', '.join(WBC_EXTERNAL_LABS)})")
    classes = sorted({c for p in parts for c in p.classes})
    recs = [replace(r, label=classes.index(p.classes[r.label])) for p in parts for r in p.records]
    idx = DatasetIndex("wbc_external", str(root), classes, recs)
    idx.notes.append("external labs: " + ", ".join(labs) + "; for validation only, never for training")
    return idx


def lab_of(index: DatasetIndex, rec: ImageRecord) -> str:
    """First folder of a record's path below the index root (the lab, for wbc_external)."""
    return index.key(rec).split("/", 1)[0]


RECIPES = {
    "taleqani_all": (_taleqani, "taleqani_all"),
    "taleqani_binary": (_taleqani_binary, "taleqani_all"),
    "pbc": (_pbc, "pbc192"),
    "pbc4": (_pbc4, "pbc192"),
    "bccd": (_bccd, "bccd_smears"),
    "cnmc": (_cnmc, "cnmc"),
    "allidb2": (_allidb2, "allidb2"),
    "wbc_external": (_wbc_external, "wbc_external"),
}

# Where each set can be fetched. Sets behind a login say how to get them by hand.
DOWNLOADS = {
    "bccd": {"url": "https://github.com/Shenggan/BCCD_Dataset/archive/refs/heads/master.zip",
             "subdir": "BCCD_Dataset-master/BCCD"},
    "pbc": {"url": "https://data.mendeley.com/public-files/datasets/snkd93bnjr/files/"
                   "2fc38728-2ae7-4a62-a857-032af82334c3/file_downloaded",
            "subdir": "PBC_dataset_normal_DIB"},
    "taleqani_all": {"manual": "Kaggle dataset mehradaria/leukemia: `kaggle datasets download mehradaria/leukemia`, "
                               "unzip, then point --data at the folder holding Benign/Early/Pre/Pro."},
    "cnmc": {"manual": "C-NMC 2019 is on The Cancer Imaging Archive (TCIA) after accepting its licence; "
                       "download it there and point --data at C-NMC_Leukemia/training_data."},
    "allidb2": {"manual": "ALL-IDB requires a signed request to its authors (Univ. of Milan); "
                          "point --data at the ALL_IDB2/img folder you receive."},
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def load_recipe(name: str, root: str | Path | None = None) -> DatasetIndex:
    """Index a named public data set. `root` defaults to $LEUKODX_SHARED_DATA/<folder>."""
    if name not in RECIPES:
        raise LeukodxError(f"unknown dataset recipe '{name}'; known: {', '.join(RECIPES)}")
    builder, folder = RECIPES[name]
    if root is None:
        from leukodx.data.paths import shared_data_dir
        root = shared_data_dir() / folder
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LeukodxError(f"{root}: dataset folder for '{name}' not found")
    return builder(root)


def load_dataset(spec: str | Path) -> DatasetIndex:
    """One entry point: a recipe name, 'recipe:PATH', a CSV manifest or a class-per-folder tree."""
    spec = str(spec)
    if spec in RECIPES:
        return load_recipe(spec)
    if ":" in spec and spec.split(":", 1)[0] in RECIPES:
        name, path = spec.split(":", 1)
        return load_recipe(name, path)
    p = Path(spec).expanduser()
    if p.suffix.lower() == ".csv":
        from leukodx.data.dataset import from_manifest
        return from_manifest(p)
    if not p.exists():
        raise LeukodxError(f"{p}: dataset not found (give a folder, a .csv manifest or one of: {', '.join(RECIPES)})")
    return from_folder(p)


def file_number(path: str) -> int | None:
    """The last run of digits in a file name (WBC-Benign-042.jpg -> 42)."""
    nums = re.findall(r"\d+", Path(path).stem)
    return int(nums[-1]) if nums else None


def with_block_groups(index: DatasetIndex) -> DatasetIndex:
    """Give every ungrouped record the group '<class>/block<k>' of consecutive file numbers."""
    if index.block_size <= 0:
        return index
    recs = []
    for r in index.records:
        n = file_number(r.path)
        if r.group is None and n is not None:
            r = replace(r, group=f"{index.classes[r.label]}/block{(n - 1) // index.block_size}")
        recs.append(r)
    return replace(index, records=recs)


