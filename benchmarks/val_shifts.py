"""Model selection without touching the test side: accuracy of finished runs on their validation side
under named shifts (group bootstrap CIs). Used to choose the ALL model's stain-transfer probability and
its training length (v5: 20 epochs), and the WBC model's test-time view count (`--views`: the same
weights averaging 1 / 2 / 4 / 8 mirror images of each cell) and whether a model file answers unfamiliar images
from their grayscale copies (`--gray-fallback off on`, leukodx.heads.gray_fallback), and with or without the
file's no-white-cell probe (`--cell-probe off on`, leukodx.heads.cell_probe; shift `cells_out` paints the cells out).
    python benchmarks/val_shifts.py runs/all_severity_v3 runs/all_severity_v4 --out results/all_severity_val_shifts
    python benchmarks/val_shifts.py runs/wbc_type_v6 --views 1 2 4 8 --shifts none grayscale --out results/wbc_type_v6_views
    python benchmarks/val_shifts.py runs/all_severity_paint_blur3 --gray-fallback off on --out results/all_severity_v6_gray_fallback
    python benchmarks/val_shifts.py runs/wbc_probe --cell-probe off on --shifts none grayscale cells_out --out results/x
"""
import argparse
import json
from pathlib import Path

import yaml

from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.evaluate.robustness import shift_rows
from leukodx.models.artifact import ModelBundle

SHIFTS = ["none", "grayscale", "stain_reinhard", "stain_macenko", "hed_0.5", "blur_2", "lowres_32", "jpeg_10",
          "scale_0.5"]

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--out", required=True)
ap.add_argument("--views", type=int, nargs="+", choices=(1, 2, 4, 8), help="view counts to score (default: the file's)")
ap.add_argument("--gray-fallback", nargs="+", choices=("off", "on"), help="score with the fallback off / on (default: the file's)")
ap.add_argument("--cell-probe", nargs="+", choices=("off", "on"), help="score without / with the file's cell probe")
ap.add_argument("--shifts", nargs="+", default=SHIFTS)
a = ap.parse_args()
res = []
for run in a.runs:
    cfg = yaml.safe_load((Path(run) / "config.yaml").read_text())
    index, split = load_dataset(cfg["data"]), Split.load(Path(run) / "split.json")
    va = split.indices(index, "val")
    bundle = ModelBundle.load(Path(run) / "model.pt")
    probe = bundle.cell_probe
    for views, gray, on in [(v, g, c) for v in a.views or [bundle.views]
                            for g in ([x == "on" for x in a.gray_fallback] if a.gray_fallback else [bundle.gray_fallback])
                            for c in ([x == "on" for x in a.cell_probe] if a.cell_probe else [probe is not None])]:
        if on and probe is None:
            ap.error(f"{run}: its model file has no cell probe")
        bundle.views, bundle.gray_fallback, bundle.cell_probe = views, gray, probe if on else None
        rows = shift_rows(bundle, index, va, split.groups_of(index, va), a.shifts, "val", n_boot=500)
        res.append({"run": run, "stain_transfer": cfg.get("stain_transfer", 0.0), "epochs": cfg.get("epochs"),
                    "image_size": cfg.get("image_size"), "views": views, "gray_fallback": gray, "cell_probe": on,
                    "n": rows[0]["n"],
                    "rows": [{k: r[k] for k in ("shift", "accuracy", "ci95", "referred", "accuracy_on_kept")} for r in rows]})
        print(run, views, gray, on, " ".join(f"{r['shift']} {r['accuracy']:.3f}" for r in rows), flush=True)
out = Path(a.out)
out.with_suffix(".json").write_text(json.dumps(res, indent=1))
cmd = " ".join(["python benchmarks/val_shifts.py", *a.runs] + (["--views", *map(str, a.views)] if a.views else [])
               + (["--gray-fallback", *a.gray_fallback] if a.gray_fallback else [])
               + (["--cell-probe", *a.cell_probe] if a.cell_probe else [])
               + (["--shifts", *a.shifts] if a.shifts != SHIFTS else []) + ["--out", a.out])
md = [f"# Validation-side accuracy under shifts (`{cmd}`)", "",
      (f"- Validation side of each run's grouped split (n {res[0]['n']}); 95% CIs by bootstrap over groups; the test "
       "side is not used. 2 CPU cores."), "",
      "| run | stain transfer p | epochs | px | views | gray fallback | cell probe | " + " | ".join(a.shifts) + " | shift mean |",
      "|---|---|---|---|---|---|---|" + "---|" * (len(a.shifts) + 1)]
md += [f"| {r['run']} | {r['stain_transfer']} | {r['epochs']} | {r['image_size']} | {r['views']} | "
       f"{'on' if r['gray_fallback'] else 'off'} | {'on' if r['cell_probe'] else 'off'} | " + " | ".join(
    f"{x['accuracy']:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}]" for x in r["rows"])
    + f" | {sum(x['accuracy'] for x in r['rows'] if x['shift'] != 'none') / max(1, len(a.shifts) - ('none' in a.shifts)):.3f} |"
    for r in res]
md += ["", "Referral by the model file's own rule (share referred / accuracy on the kept):", "",
       "| run | views | gray fallback | cell probe | " + " | ".join(a.shifts) + " |", "|---|---|---|---|" + "---|" * len(a.shifts)]
md += [f"| {r['run']} | {r['views']} | {'on' if r['gray_fallback'] else 'off'} | {'on' if r['cell_probe'] else 'off'} | " + " | ".join(f"{x['referred']:.3f} / {x['accuracy_on_kept']:.3f}" for x in r["rows"])
       + " |" for r in res]
out.with_suffix(".md").write_text("\n".join(md) + "\n")
