"""What the image checks behind `unreadable` / `not_a_cell` (leukodx.heads.image_checks) do on real cells
and on pictures of other things (issue 14). Each image goes through the shipped model's own
preprocessing (cell-centred 128 px for WBC, 160 px fields for ALL), then the checks:
- real cells: every image of PBC, Taleqani and wbc_external as it is, and `--per-shift` images of each
  under every named shift of leukodx.transforms.shifts (how many a check flags: it should be none);
  every BCCD white cell cut from its field as `leukodx smear` cuts it (leukodx.detect.smear.cell_crop);
- other pictures: the photos, text and drawings shipped with scikit-image (local files), in colour and
  in grayscale, through both shipped models: the referral reason each gets.
For each row: the count flagged by each check and the largest blue share of the darkest object (the
`not_a_cell` colour check refuses more than MAX_BLUE_SHARE). Writes results/image_checks.{json,md}.
  python benchmarks/image_checks.py [--per-shift 200]
"""
import argparse
import json
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from leukodx.data.recipes import lab_of, load_recipe
from leukodx.detect.smear import cell_crop
from leukodx.heads.image_checks import MAX_BLUE_SHARE, blue_share, image_problem
from leukodx.predict.predictor import Predictor
from leukodx.transforms.cell_finder import darkest_object, shrink
from leukodx.transforms.shifts import DEFAULT_SHIFTS, build_shift

ROOT = Path(__file__).resolve().parents[1]
SETS = (("pbc", "wbc_type"), ("wbc_external", "wbc_type"), ("taleqani_all", "all_severity"))


def checked(arr: np.ndarray) -> tuple[str | None, float | None]:
    """(the checks' answer, the darkest object's blue share or None where there is none)."""
    small = shrink(Image.fromarray(arr), 64)
    core = darkest_object(small)
    return image_problem(arr), None if core is None else blue_share(small, core)


def row(name: str, shift: str, arrays) -> dict:
    got = [checked(a) for a in arrays]
    shares = [s for _, s in got if s is not None]
    return {"set": name, "shift": shift, "n": len(got), "flagged": dict(Counter(p for p, _ in got if p)),
            "max_blue_share": max(shares) if shares else None}


def other_pictures(out: Path) -> list[Path]:
    """scikit-image's bundled pictures (colour and grayscale copies) as PNG files under `out`."""
    src = Path(os.path.dirname(skimage.data.__file__))
    paths = []
    for f in sorted(src.iterdir()):
        if f.suffix in (".png", ".jpg", ".gif"):
            im = Image.open(f).convert("RGB")
            for kind, pic in (("colour", im), ("grayscale", im.convert("L").convert("RGB"))):
                paths.append(out / f"{f.stem}_{kind}.png")
                pic.save(paths[-1])
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-shift", type=int, default=200, help="images of each set under each shift")
    args = ap.parse_args()
    predictors = {m: Predictor.load(ROOT / "src" / "leukodx" / "shipped" / f"{m}.pt") for m in ("wbc_type", "all_severity")}
    rows = []
    for recipe, model in SETS:
        index, pre = load_recipe(recipe), predictors[model].pre
        groups = {}
        for r in index.records:
            groups.setdefault(lab_of(index, r) if recipe == "wbc_external" else recipe, []).append(r.path)
        for name, paths in groups.items():
            sample = random.Random(0).sample(paths, min(args.per_shift, len(paths)))
            reference = Image.open(sample[0]).convert("RGB")
            for shift in DEFAULT_SHIFTS:
                f = build_shift(shift, reference)
                use = paths if shift == "none" else sample
                rows.append(row(name, shift, (pre.array(f(Image.open(p).convert("RGB"))) for p in use)))
                print(rows[-1], flush=True)
    bccd = load_recipe("bccd")
    boxes = [r for r in bccd.records if bccd.classes[r.label] == "WBC"]
    rows.append(row("bccd white cells (smear crops)", "none", (predictors["wbc_type"].pre.array(
        cell_crop(np.asarray(Image.open(r.path).convert("RGB")), r.box)) for r in boxes)))
    print(rows[-1], flush=True)
    others = []
    tmp = ROOT / "runs" / "image_checks_pictures"
    tmp.mkdir(parents=True, exist_ok=True)
    pictures = other_pictures(tmp)
    for model, pred in predictors.items():
        preds, errors = pred.predict_paths(pictures)
        assert not errors, errors
        for p in preds:
            others.append({"model": model, "picture": Path(p.path).stem, "label": p.label, "probability": p.probability,
                           "refer_reason": p.refer_reason, "unfamiliarity": p.unfamiliarity})
    (ROOT / "results" / "image_checks.json").write_text(json.dumps(
        {"max_blue_share": MAX_BLUE_SHARE, "per_shift": args.per_shift, "real": rows, "other_pictures": others}, indent=1))
    lines = ["# Image checks on real cells and on other pictures (`python benchmarks/image_checks.py`)", "",
             ("Each image through the shipped model's preprocessing, then `leukodx.heads.image_checks`. Real cells: "
              f"every image as it is; {args.per_shift} per set (a fixed sample) under each shift. The `not_a_cell` colour "
              f"check refuses a darkest object whose blue share of optical density exceeds {MAX_BLUE_SHARE}."), "",
             "| set | shift | n | flagged | largest blue share |", "|---|---|---|---|---|"]
    for r in rows:
        flagged = ", ".join(f"{k} {v}" for k, v in sorted(r["flagged"].items())) or "none"
        share = "-" if r["max_blue_share"] is None else f"{r['max_blue_share']:.3f}"
        lines.append(f"| {r['set']} | {r['shift']} | {r['n']} | {flagged} | {share} |")
    lines += ["", "Other pictures (scikit-image's bundled files), through the whole prediction path:", "",
              "| picture | WBC model: answer, reason | ALL model: answer, reason |", "|---|---|---|"]
    by = {(o["model"], o["picture"]): o for o in others}
    for pic in sorted({o["picture"] for o in others}):
        cells = [by[(m, pic)] for m in ("wbc_type", "all_severity")]
        lines.append(f"| {pic} | " + " | ".join(f"{c['label']} {c['probability']:.2f}, {c['refer_reason'] or '**not referred**'}"
                                                 for c in cells) + " |")
    counts = Counter((o["model"], o["refer_reason"]) for o in others)
    lines += ["", "Reasons over the other pictures: " + "; ".join(f"{m} {r or 'not referred'}: {n}"
                                                               for (m, r), n in sorted(counts.items(), key=str)) + "."]
    (ROOT / "results" / "image_checks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(pictures) // 2 - 6:]))


if __name__ == "__main__":
    main()
