"""Apply a two-seed shipping rule (issue 13, configs/all_severity_paint_blur3.yaml) to committed results files.
A candidate recipe replaces the shipped one when, averaged over its seeds on the validation side,
  (a) unshifted accuracy >= --min-val,
  (b) the mean over the shift columns is within --margin of the shipped recipe's seed mean,
  (c) with the cells painted out it is right on at most --max-painted of the validation images,
  (d) with --gain SHIFT: its seed mean on that shift column is above the shipped recipe's.
Each RUN=FILE names a run and the val_shifts.py JSON that holds its row; painted-out rows come from
cell_removal.py --side val JSONs.
  python benchmarks/seed_rule.py \\
      --shipped runs/all_severity_v5=results/all_severity_val_shifts.json \\
                runs/all_severity_seed1=results/all_severity_seed1_val_shifts.json \\
      --candidate runs/all_severity_paint_blur3=results/all_severity_paint_blur3_val_shifts.json \\
                  runs/all_severity_paint_blur3_seed1=results/all_severity_seed1_val_shifts.json \\
      --painted results/all_severity_paint_blur3_val_cell_removal.json \\
                results/all_severity_paint_blur3_seed1_val_cell_removal.json \\
      --out results/all_severity_two_seed_rule
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np


def val_row(spec: str) -> tuple[str, dict]:
    run, _, path = spec.partition("=")
    rows = [r for r in json.loads(Path(path).read_text()) if r["run"] == run]
    if len(rows) != 1:
        sys.exit(f"{path} has {len(rows)} rows for run {run}")
    return run, {x["shift"]: x["accuracy"] for x in rows[0]["rows"]}


def painted(path: str) -> tuple[str, float]:
    d = json.loads(Path(path).read_text())
    (m,) = d["models"].values()
    return m["file"], next(r["accuracy"] for r in m["rows"] if r["variant"] == "cells painted out")


ap = argparse.ArgumentParser()
ap.add_argument("--shipped", nargs="+", required=True, help="RUN=VAL_SHIFTS_JSON, one per seed")
ap.add_argument("--candidate", nargs="+", required=True, help="RUN=VAL_SHIFTS_JSON, one per seed")
ap.add_argument("--painted", nargs="+", required=True, help="cell_removal.py --side val JSONs of the candidate's seeds")
ap.add_argument("--min-val", type=float, default=0.99)
ap.add_argument("--margin", type=float, default=0.01)
ap.add_argument("--max-painted", type=float, default=0.5)
ap.add_argument("--gain", help="a shift column the candidate must gain on (seed means), e.g. stain_macenko")
ap.add_argument("--out", required=True)
a = ap.parse_args()

groups = {"shipped": [val_row(s) for s in a.shipped], "candidate": [val_row(s) for s in a.candidate]}
shifts = [s for s in groups["shipped"][0][1] if s != "none"]
table, means = [], {}
for name, runs in groups.items():
    for run, acc in runs:
        table.append((name, run, acc["none"], float(np.mean([acc[s] for s in shifts])), acc))
    means[name] = (float(np.mean([r[1]["none"] for r in runs])),
                   float(np.mean([np.mean([r[1][s] for s in shifts]) for r in runs])))
paint = [painted(p) for p in a.painted]
paint_mean = float(np.mean([p for _, p in paint]))
checks = {
    f"(a) candidate unshifted val, seed mean >= {a.min_val}": (means["candidate"][0], means["candidate"][0] >= a.min_val),
    f"(b) candidate shift mean >= shipped shift mean ({means['shipped'][1]:.3f}) - {a.margin}":
        (means["candidate"][1], means["candidate"][1] >= means["shipped"][1] - a.margin),
    f"(c) candidate cells painted out, seed mean <= {a.max_painted}": (paint_mean, paint_mean <= a.max_painted),
}
if a.gain:
    if a.gain not in shifts:
        sys.exit(f"--gain {a.gain}: not a shift column ({', '.join(shifts)})")
    seed_mean = {n: float(np.mean([r[1][a.gain] for r in runs])) for n, runs in groups.items()}
    checks[f"(d) candidate {a.gain}, seed mean > shipped's ({seed_mean['shipped']:.3f})"] = (
        seed_mean["candidate"], seed_mean["candidate"] > seed_mean["shipped"])
verdict = all(ok for _, ok in checks.values())
cmd = "python benchmarks/seed_rule.py " + " ".join(sys.argv[1:])
md = [f"# Two-seed shipping rule (`{cmd}`)", "",
      "- Validation side only (the test side is not used); accuracies from the val_shifts.py and cell_removal.py files named.",
      f"- Shift mean: the mean over {', '.join(shifts)}.", "",
      "| recipe | run | unshifted | shift mean | " + " | ".join(shifts) + " |", "|---|---|---|---|" + "---|" * len(shifts)]
md += [f"| {name} | {run} | {none:.3f} | {sm:.3f} | " + " | ".join(f"{acc[s]:.3f}" for s in shifts) + " |"
       for name, run, none, sm, acc in table]
md += [f"| shipped | seed mean | {means['shipped'][0]:.3f} | {means['shipped'][1]:.3f} |" + " |" * len(shifts),
       f"| candidate | seed mean | {means['candidate'][0]:.3f} | {means['candidate'][1]:.3f} |" + " |" * len(shifts), "",
       "| check | value | passes |", "|---|---|---|"]
md += [f"| {k} | {v:.3f} | {'yes' if ok else 'no'} |" for k, (v, ok) in checks.items()]
md += ["", "Cells painted out (validation side): " + ", ".join(f"{f} {p:.3f}" for f, p in paint), "",
       f"**Verdict: {'the candidate replaces the shipped recipe' if verdict else 'the shipped recipe stays'}.**"]
Path(a.out).with_suffix(".md").write_text("\n".join(md) + "\n")
Path(a.out).with_suffix(".json").write_text(json.dumps({
    "command": cmd, "shifts": shifts, "runs": [{"recipe": n, "run": r, "accuracy": acc} for n, r, _, _, acc in table],
    "means": means, "painted_out": dict(paint), "checks": {k: {"value": v, "passes": ok} for k, (v, ok) in checks.items()},
    "verdict": verdict}, indent=1))
print("\n".join(md))
