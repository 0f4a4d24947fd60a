"""`leukodx data audit`: what is in a data set and whether a split of it leaks."""
from __future__ import annotations

from collections import Counter, defaultdict

from leukodx.data.dataset import DatasetIndex
from leukodx.data.hashes import fingerprints, near_duplicate_pairs
from leukodx.data.images import image_info
from leukodx.data.splits import Split, check_split


def audit(index: DatasetIndex, split: Split | None = None, near_distance: int = 6, progress: bool = False) -> dict:
    fps = fingerprints(index, progress=progress)
    keys = [index.key(r) for r in index.records]
    by_md5 = defaultdict(list)
    for k, fp in zip(keys, fps):
        by_md5[fp["md5"]].append(k)
    exact = sorted(sorted(v) for v in by_md5.values() if len(v) > 1)
    label_of = {index.key(r): index.classes[r.label] for r in index.records}
    cross = [g for g in exact if len({label_of[k] for k in g}) > 1]
    near = [(keys[a], keys[b], d) for a, b, d in near_duplicate_pairs([fp.get("dhash") for fp in fps], near_distance)
            if fps[a]["md5"] != fps[b]["md5"]]
    sizes, modes, bad = Counter(), Counter(), []
    for r, fp in zip(index.records, fps):
        info = image_info(r.path)
        if "error" in info or "error" in fp:
            bad.append({"path": index.key(r), "problem": fp.get("error") or info.get("error")})
            continue
        sizes[f"{info['width']}x{info['height']}"] += 1
        modes[info["mode"]] += 1
    report = {
        "dataset": index.name, "root": index.root, "n_images": len(index.records), "class_counts": index.counts(),
        "image_sizes": dict(sizes.most_common(10)), "image_modes": dict(modes), "bad_files": bad,
        "exact_duplicate_groups": exact, "cross_class_duplicates": cross,
        "near_duplicate_pairs": [{"a": a, "b": b, "hamming": d} for a, b, d in near],
        "near_distance": near_distance,
    }
    if split is not None:
        problems = check_split(index, split, fps)
        report["split"] = {"protocol": split.protocol, "leaks": problems, "ok": not problems}
    return report


def format_audit(rep: dict) -> str:
    lines = [f"dataset {rep['dataset']} at {rep['root']}: {rep['n_images']} images"]
    lines.append("classes: " + ", ".join(f"{c} {n}" for c, n in rep["class_counts"].items()))
    lines.append("sizes: " + ", ".join(f"{s} x{n}" for s, n in rep["image_sizes"].items()))
    lines.append("modes: " + ", ".join(f"{m} x{n}" for m, n in rep["image_modes"].items()))
    lines.append(f"unreadable files: {len(rep['bad_files'])}")
    for b in rep["bad_files"][:20]:
        lines.append(f"  {b['path']}: {b['problem']}")
    lines.append(f"exact duplicate groups: {len(rep['exact_duplicate_groups'])}")
    for g in rep["exact_duplicate_groups"]:
        lines.append("  " + "  ==  ".join(g))
    if rep["cross_class_duplicates"]:
        lines.append(f"WARNING identical images with different labels: {len(rep['cross_class_duplicates'])}")
        for g in rep["cross_class_duplicates"]:
            lines.append("  " + "  ==  ".join(g))
    lines.append(f"near-duplicate pairs (dHash-256 Hamming <= {rep['near_distance']}, not identical): "
                 f"{len(rep['near_duplicate_pairs'])}")
    for p in rep["near_duplicate_pairs"][:50]:
        lines.append(f"  {p['a']}  ~  {p['b']}  (distance {p['hamming']})")
    if "split" in rep:
        s = rep["split"]
        lines.append("split: " + ("OK, no group or identical image on two sides" if s["ok"] else
                                  f"LEAKS ({len(s['leaks'])} problems)"))
        for p in s["leaks"][:20]:
            lines.append(f"  {p}")
    return "\n".join(lines)
