"""Stratified, group-aware train / val / test splits, saved to JSON and checked for leaks."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from leukodx.data.dataset import DatasetIndex
from leukodx.data.groups import group_ids
from leukodx.errors import LeukodxError

SIDES = ("train", "val", "test")


@dataclass
class Split:
    """Side of every record (by key), the group each record belongs to, and how it was made."""
    sides: dict[str, str]
    groups: dict[str, str]
    protocol: dict = field(default_factory=dict)

    def groups_of(self, index: DatasetIndex, idx: list[int]) -> list[str]:
        """The split group of each of index.records[idx] (for bootstrap CIs over groups)."""
        return [self.groups[index.key(index.records[i])] for i in idx]

    def indices(self, index: DatasetIndex, side: str) -> list[int]:
        missing = [index.key(r) for r in index.records if index.key(r) not in self.sides]
        if missing:
            raise LeukodxError(f"split file does not cover {len(missing)} image(s) of the data set, "
                               f"e.g. {missing[0]}; make a new split")
        return [i for i, r in enumerate(index.records) if self.sides[index.key(r)] == side]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"protocol": self.protocol, "sides": self.sides, "groups": self.groups}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Split:
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["sides"], d["groups"], d.get("protocol", {}))
        except (OSError, ValueError, KeyError) as e:
            raise LeukodxError(f"{path}: not a readable split file ({e})") from None


def make_split(index: DatasetIndex, val_frac: float = 0.15, test_frac: float = 0.2, seed: int = 0,
               use_hashes: bool = True, progress: bool = False) -> Split:
    """Split so that no group crosses sides and class shares stay close to the whole.

    Synthetic records always go to train (they may never be counted as val or test data).
    """
    if not (0 < test_frac < 0.5 and 0 < val_frac < 0.5 and val_frac + test_frac < 0.8):
        raise LeukodxError(f"bad split fractions val={val_frac} test={test_frac} (each in (0, 0.5), sum < 0.8)")
    gids = group_ids(index, use_hashes=use_hashes, progress=progress)
    real = [i for i, r in enumerate(index.records) if not r.synthetic]
    y = np.array([index.records[i].label for i in real])
    g = np.array([gids[i] for i in real])
    if len(set(g)) < 6:
        raise LeukodxError(f"only {len(set(g))} groups in the data: too few for a grouped train/val/test split")
    test_pos = _one_fold(y, g, test_frac, seed)
    rest = np.setdiff1d(np.arange(len(real)), test_pos)
    val_pos = rest[_one_fold(y[rest], g[rest], val_frac / (1 - test_frac), seed + 1)]
    side = np.array(["train"] * len(real), dtype=object)
    side[test_pos], side[val_pos] = "test", "val"
    sides = {index.key(r): "train" for r in index.records}
    for pos, i in enumerate(real):
        sides[index.key(index.records[i])] = str(side[pos])
    groups = {index.key(r): gids[i] for i, r in enumerate(index.records)}
    protocol = {"method": "StratifiedGroupKFold", "val_frac": val_frac, "test_frac": test_frac, "seed": seed,
                "groups": index.notes + (["exact md5 + dHash-256 (Hamming<=6) duplicate groups"] if use_hashes else []),
                "dataset": index.name, "n_groups": len(set(gids))}
    split = Split(sides, groups, protocol)
    problems = check_split(index, split)
    if problems:  # cannot happen by construction; refuse to return a leaking split
        raise LeukodxError("split leaks: " + "; ".join(problems[:3]))
    return split


def _one_fold(y: np.ndarray, g: np.ndarray, frac: float, seed: int) -> np.ndarray:
    n_splits = max(2, round(1 / frac))
    min_class = min(np.bincount(y)[np.bincount(y) > 0])
    if min_class < n_splits:
        raise LeukodxError(f"a class has only {min_class} image(s): too few to hold out {frac:.0%} of it")
    cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, held = next(iter(cv.split(np.zeros(len(y)), y, g)))
    return held


def check_split(index: DatasetIndex, split: Split, fingerprints: list[dict] | None = None) -> list[str]:
    """Problems that make a split leak: a group or identical image on two sides, synthetic data
    outside train. Empty list = clean."""
    problems = []
    sides_of = defaultdict(set)
    for r in index.records:
        k = index.key(r)
        side = split.sides.get(k)
        if side is None:
            continue
        if r.synthetic:  # generated images follow their own rule: train only
            if side != "train":
                problems.append(f"synthetic image {k} is on the {side} side")
            continue
        sides_of[("group", split.groups.get(k, k))].add(side)
    if fingerprints is not None:
        for r, fp in zip(index.records, fingerprints):
            side = split.sides.get(index.key(r))
            if side and not r.synthetic:
                sides_of[("md5", fp["md5"])].add(side)
    for (kind, name), s in sides_of.items():
        if len(s) > 1:
            problems.append(f"{'group' if kind == 'group' else 'identical image'} {name} is on sides {sorted(s)}")
    return problems


def split_summary(index: DatasetIndex, split: Split) -> dict:
    out = {}
    for side in SIDES:
        idx = split.indices(index, side)
        counts = {c: 0 for c in index.classes}
        for i in idx:
            counts[index.classes[index.records[i].label]] += 1
        out[side] = {"n": len(idx), "per_class": counts}
    return out
