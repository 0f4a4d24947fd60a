"""Group ids for leakage-proof splits: patients, number blocks and duplicate groups, unioned."""
from __future__ import annotations

from pathlib import Path

from leukodx.data.dataset import DatasetIndex
from leukodx.data.hashes import fingerprints, near_duplicate_pairs
from leukodx.data.recipes import with_block_groups


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def listed_duplicates(root: str | Path) -> list[list[str]]:
    """Groups from a data set's duplicates.txt (tab separated: kind, path, path, ...)."""
    f = Path(root) / "duplicates.txt"
    if not f.is_file():
        return []
    groups = []
    for line in f.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("\t")
        groups.append([p for p in parts[1:] if p])
    return groups


def group_ids(index: DatasetIndex, use_hashes: bool = True, near_distance: int = 6,
              progress: bool = False) -> list[str]:
    """One group id per record. Records sharing any link (same patient/block, listed or
    exact or near duplicate) end up in the same group."""
    index = with_block_groups(index)
    n = len(index.records)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, r in enumerate(index.records):
        if r.group is not None:
            uf.union(i, first_of.setdefault(f"g:{r.group}", i))
    by_key = {index.key(r): i for i, r in enumerate(index.records)}
    for grp in listed_duplicates(index.root):
        members = [by_key[p] for p in grp if p in by_key]
        for m in members[1:]:
            uf.union(members[0], m)
    if use_hashes:
        fps = fingerprints(index, progress=progress)
        for i, fp in enumerate(fps):
            uf.union(i, first_of.setdefault(f"md5:{fp['md5']}", i))
        for a, b, _ in near_duplicate_pairs([fp.get("dhash") for fp in fps], near_distance):
            uf.union(a, b)
    return [f"grp{uf.find(i)}" for i in range(n)]
