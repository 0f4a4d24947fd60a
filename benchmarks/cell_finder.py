"""Measure the cell finder (leukodx.transforms.cell_finder) before relying on it (issue 13), for each
meaning of "darkest" it offers (cell_finder.DARKNESS: green, or red and green, absorption):
- wbc_external: expert nucleus / cytoplasm masks -> nucleus Dice, centre error (distance from the
  found centre to the expert cell's centroid, in cell diameters), nucleus size ratio;
- wbc_external: the classic pipeline's background masks (the whole white cell) against the expert cell
  (nucleus + cytoplasm), on the 64-px copy that pipeline masks: Otsu on gray levels
  (`preprocess.cell_mask`, the published threshold segmentation) and `cell_finder.whole_cell_mask`;
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
from leukodx.transforms.cell_finder import DARKNESS, find_nucleus, whole_cell_mask
from leukodx.transforms.preprocess import cell_mask

ROOT = Path(__file__).resolve().parents[1]


def dice_of(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def masks(root: Path, lab: str, darkness: str) -> list[dict]:
    rows = []
    for img_path in sorted((root / lab).rglob("*.bmp")):
        m = np.asarray(Image.open(root / "masks" / lab / f"{img_path.stem}.png").convert("L"))
        nuc_true, cell_true = m > 200, m > 64
        found = find_nucleus(Image.open(img_path), darkness=darkness)
        ys, xs = np.nonzero(cell_true)
        cell_d = 2 * np.sqrt(cell_true.sum() / np.pi)
        err = np.hypot(found.centre[0] - xs.mean(), found.centre[1] - ys.mean()) / cell_d
        true_d = 2 * np.sqrt(nuc_true.sum() / np.pi)
        small = Image.open(img_path).convert("RGB").resize((64, 64), Image.Resampling.BILINEAR)
        cell64 = np.asarray(Image.fromarray(cell_true).resize((64, 64), Image.Resampling.NEAREST))
        rows.append({"image": f"{lab}/{img_path.parent.name}/{img_path.name}", "dice": dice_of(found.mask, nuc_true),
                     "centre_error_cell_diameters": float(err), "size_ratio": float(found.diameter / true_d),
                     "found": found.found, "cell_dice_otsu_64px": dice_of(cell_mask(small), cell64),
                     "cell_dice_whole_cell_64px": dice_of(whole_cell_mask(small), cell64)})
    return rows


def bccd(root: Path, darkness: str) -> dict:
    hit = n = 0
    for xml in sorted((root / "Annotations").glob("*.xml")):
        t = ET.parse(xml).getroot()
        boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                 for o in t.iter("object") if (o.findtext("name") or "").strip() == "WBC"]
        img = root / "JPEGImages" / xml.with_suffix(".jpg").name
        if not boxes or not img.exists():
            continue
        x, y = find_nucleus(Image.open(img), darkness=darkness).centre
        n += 1
        hit += any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)
    return {"fields": n, "centre_inside_a_wbc_box": hit / max(1, n)}


def summary(rows: list[dict]) -> dict:
    d = np.array([r["dice"] for r in rows])
    e = np.array([r["centre_error_cell_diameters"] for r in rows])
    s = np.array([r["size_ratio"] for r in rows])
    cell = {k: float(np.median([r[f"cell_dice_{k}_64px"] for r in rows])) for k in ("otsu", "whole_cell")}
    return {"n": len(rows), "dice_median": float(np.median(d)), "dice_mean": float(d.mean()),
            "cell_dice_median_64px": cell, "centre_error_median": float(np.median(e)), "centre_error_p90": float(np.percentile(e, 90)),
            "share_centre_within_quarter_diameter": float((e < 0.25).mean()),
            "size_ratio_median": float(np.median(s)), "size_ratio_p10_p90": np.percentile(s, [10, 90]).tolist(),
            "size_ratio_p95": float(np.percentile(s, 95))}


def main():
    data = shared_data_dir()
    t = time.perf_counter()
    res = {}
    for darkness in DARKNESS:
        rows = {lab: masks(data / "wbc_external", lab, darkness) for lab in ("tecom", "cellavision_blog")}
        r = {lab: summary(rs) for lab, rs in rows.items()}
        r["per_class"] = {f"{lab}/{cls}": summary([x for x in rs if x["image"].split("/")[1] == cls])
                          for lab, rs in rows.items() for cls in sorted({x["image"].split("/")[1] for x in rs})}
        r["bccd_smears"] = bccd(data / "bccd_smears", darkness)
        res[darkness] = r
    res["seconds"] = round(time.perf_counter() - t, 1)
    lines = ["# Cell finder vs expert annotations", "",
             ("Nucleus = darkest of three Otsu classes of the smoothed absorption, largest-mass piece plus nearby lobes "
              "(`leukodx.transforms.cell_finder.find_nucleus`); absorption of green light (`green`, what the shipped WBC "
              "model was trained with) or the mean of red and green (`red_green`: a purple nucleus absorbs red, a red cell "
              "hardly does; `cell_darkness` in a training config). Command: `python benchmarks/cell_finder.py`."), "",
             ("| set | darkness | n | nucleus Dice (median / mean) | centre error, cell diameters (median / p90) | "
              "centre within 1/4 diameter | nucleus size ratio (median, p10-p90, p95) |"), "|---|---|---|---|---|---|---|"]
    for lab in ("tecom", "cellavision_blog"):
        for darkness in DARKNESS:
            r = res[darkness][lab]
            lines.append(f"| wbc_external/{lab} | {darkness} | {r['n']} | {r['dice_median']:.3f} / {r['dice_mean']:.3f} | "
                         f"{r['centre_error_median']:.3f} / {r['centre_error_p90']:.3f} | "
                         f"{r['share_centre_within_quarter_diameter']:.3f} | {r['size_ratio_median']:.2f} "
                         f"({r['size_ratio_p10_p90'][0]:.2f}-{r['size_ratio_p10_p90'][1]:.2f}, {r['size_ratio_p95']:.2f}) |")
    lines += ["", "BCCD smear fields (a third lab; wide fields with a few white cells among many red ones) with a WBC box: "
              + "; ".join(f"found centre inside a WBC box with `{d}` {res[d]['bccd_smears']['centre_inside_a_wbc_box']:.3f}"
                          f" of {res[d]['bccd_smears']['fields']}" for d in DARKNESS) + ".",
              "", "Per class (is a class's scale, after centring, off because its nucleus is found too small or too big?):", "",
              "| set / class | n | " + " | ".join(f"`{d}`: nucleus Dice (median), size ratio (median, p10-p90)" for d in DARKNESS)
              + " |", "|---|---|" + "---|" * len(DARKNESS)]
    for key in res[DARKNESS[0]]["per_class"]:
        cells = [res[d]["per_class"][key] for d in DARKNESS]
        lines.append(f"| {key} | {cells[0]['n']} | " + " | ".join(
            f"{r['dice_median']:.3f}, {r['size_ratio_median']:.2f} ({r['size_ratio_p10_p90'][0]:.2f}-{r['size_ratio_p10_p90'][1]:.2f})"
            for r in cells) + " |")
    green = res["green"]
    lines += ["", ("The classic pipeline's background mask (`mask_background`) against the expert cell, nucleus and "
                   "cytoplasm, on the 64-px copy it masks: median Dice of Otsu on gray levels (the published threshold "
                   "segmentation, `preprocess.cell_mask`) and of the whole-cell mask (`keep_cytoplasm`, "
                   "`cell_finder.whole_cell_mask`, which finds its nucleus with `green`)."), "",
              "| set / class | n | Otsu on gray levels | whole-cell mask |", "|---|---|---|---|"]
    for key, r in [(f"wbc_external/{lab}", green[lab]) for lab in ("tecom", "cellavision_blog")] + list(green["per_class"].items()):
        c = r["cell_dice_median_64px"]
        lines.append(f"| {key} | {r['n']} | {c['otsu']:.3f} | {c['whole_cell']:.3f} |")
    (ROOT / "results" / "cell_finder.json").write_text(json.dumps(res, indent=1))
    (ROOT / "results" / "cell_finder.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
