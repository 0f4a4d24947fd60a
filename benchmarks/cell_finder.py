"""Measure the cell finder (leukodx.transforms.cell_finder) before relying on it (issue 13):
- wbc_external: expert nucleus / cytoplasm masks -> nucleus Dice, centre error (distance from the
  found centre to the expert cell's centroid, in cell diameters), nucleus size ratio;
- bccd_smears: share of fields with a WBC box whose found centre lies inside a WBC box.
Writes results/cell_finder.{json,md}.   python benchmarks/cell_finder.py
"""
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

from leukodx.data.paths import shared_data_dir
from leukodx.transforms.cell_finder import find_nucleus

ROOT = Path(__file__).resolve().parents[1]


def masks(root: Path, lab: str) -> list[dict]:
    rows = []
    for img_path in sorted((root / lab).rglob("*.bmp")):
        m = np.asarray(Image.open(root / "masks" / lab / f"{img_path.stem}.png").convert("L"))
        nuc_true, cell_true = m > 200, m > 64
        found = find_nucleus(Image.open(img_path))
        inter = (found.mask & nuc_true).sum()
        dice = 2 * inter / max(1, found.mask.sum() + nuc_true.sum())
        ys, xs = np.nonzero(cell_true)
        cell_d = 2 * np.sqrt(cell_true.sum() / np.pi)
        err = np.hypot(found.centre[0] - xs.mean(), found.centre[1] - ys.mean()) / cell_d
        true_d = 2 * np.sqrt(nuc_true.sum() / np.pi)
        rows.append({"image": f"{lab}/{img_path.parent.name}/{img_path.name}", "dice": float(dice),
                     "centre_error_cell_diameters": float(err), "size_ratio": float(found.diameter / true_d),
                     "found": found.found})
    return rows


def bccd(root: Path) -> dict:
    hit = n = 0
    for xml in sorted((root / "Annotations").glob("*.xml")):
        t = ET.parse(xml).getroot()
        boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in t.iter("object") if (o.findtext("name") or "").strip() == "WBC"]
        img = root / "JPEGImages" / xml.with_suffix(".jpg").name
        if not boxes or not img.exists():
            continue
        x, y = find_nucleus(Image.open(img)).centre
        n += 1
        hit += any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)
    return {"fields": n, "centre_inside_a_wbc_box": hit / max(1, n)}


def summary(rows: list[dict]) -> dict:
    d = np.array([r["dice"] for r in rows])
    e = np.array([r["centre_error_cell_diameters"] for r in rows])
    s = np.array([r["size_ratio"] for r in rows])
    return {"n": len(rows), "dice_median": float(np.median(d)), "dice_mean": float(d.mean()),
            "centre_error_median": float(np.median(e)), "centre_error_p90": float(np.percentile(e, 90)),
            "share_centre_within_quarter_diameter": float((e < 0.25).mean()),
            "size_ratio_median": float(np.median(s)), "size_ratio_p10_p90": np.percentile(s, [10, 90]).tolist()}


def main():
    data = shared_data_dir()
    t = time.perf_counter()
    rows = {lab: masks(data / "wbc_external", lab) for lab in ("tecom", "cellavision_blog")}
    res = {lab: summary(r) for lab, r in rows.items()}
    res["per_class"] = {f"{lab}/{cls}": summary([r for r in rs if r["image"].split("/")[1] == cls])
                        for lab, rs in rows.items() for cls in sorted({r["image"].split("/")[1] for r in rs})}
    res["bccd_smears"] = bccd(data / "bccd_smears")
    res["seconds"] = round(time.perf_counter() - t, 1)
    lines = ["# Cell finder vs expert annotations", "",
             ("Nucleus = darkest of three Otsu classes of the smoothed green-channel absorption, largest-mass piece "
             "plus nearby lobes (`leukodx.transforms.cell_finder.find_nucleus`). Command: "
             "`python benchmarks/cell_finder.py`."), "",
             ("| set | n | nucleus Dice (median / mean) | centre error, cell diameters (median / p90) | "
             "centre within 1/4 diameter | nucleus size ratio (median, p10-p90) |"), "|---|---|---|---|---|---|"]
    for lab in ("tecom", "cellavision_blog"):
        r = res[lab]
        lines.append(f"| wbc_external/{lab} | {r['n']} | {r['dice_median']:.3f} / {r['dice_mean']:.3f} | "
                     f"{r['centre_error_median']:.3f} / {r['centre_error_p90']:.3f} | "
                     f"{r['share_centre_within_quarter_diameter']:.3f} | {r['size_ratio_median']:.2f} "
                     f"({r['size_ratio_p10_p90'][0]:.2f}-{r['size_ratio_p10_p90'][1]:.2f}) |")
    lines += ["", "Per class (is a class's scale, after centring, off because its nucleus is found too small or too big?):", "",
              "| set / class | n | nucleus Dice (median) | nucleus size ratio (median, p10-p90) |", "|---|---|---|---|"]
    for key, r in res["per_class"].items():
        lines.append(f"| {key} | {r['n']} | {r['dice_median']:.3f} | {r['size_ratio_median']:.2f} "
                     f"({r['size_ratio_p10_p90'][0]:.2f}-{r['size_ratio_p10_p90'][1]:.2f}) |")
    b = res["bccd_smears"]
    lines += ["", (f"BCCD smear fields with a WBC box: {b['fields']}; found centre inside a WBC box in "
                  f"{b['centre_inside_a_wbc_box']:.3f} of them.")]
    (ROOT / "results" / "cell_finder.json").write_text(json.dumps(res, indent=1))
    (ROOT / "results" / "cell_finder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
