"""Other labs' cells at low resolution (issue 13): the held-back labs include tight crops cut from
low-resolution fields, cells 20-40 px across. Each wbc_external image is downscaled to N pixels
across and back up (shift lowres_N): tecom at 64 / 32 px puts its cells at about 53 / 27 px,
cellavision_blog at 128 / 64 px at about 58 / 29 px. Zero-shot, classes mapped by name, 95% CIs by
bootstrap over images. Writes results/external_lowres.{json,md}.
  python benchmarks/external_lowres.py v1=runs/v1/wbc_type v2=runs/wbc_type v3=src/leukodx/shipped/wbc_type.pt
"""
import hashlib
import json
import sys
from pathlib import Path

from leukodx.data.recipes import load_dataset
from leukodx.evaluate.robustness import external_rows
from leukodx.models.artifact import ModelBundle

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = {"tecom": ["none", "lowres_64", "lowres_32"], "cellavision_blog": ["none", "lowres_128", "lowres_64"]}


def sha256(path: str) -> str:
    p = Path(path)
    return hashlib.sha256((p / "model.pt" if p.is_dir() else p).read_bytes()).hexdigest()


def main():
    models = sys.argv[1:] or ["src/leukodx/shipped/wbc_type.pt"]
    ext = load_dataset("wbc_external")
    lines = ["# Other labs' cells at low resolution (wbc_external, zero-shot)", "",
             "- Command: `python benchmarks/external_lowres.py " + " ".join(models) + "`",
             ("- lowres_N: each image downscaled to N px across and back up. tecom images are 120 px with the cell "
             "filling them (lowres_32: cell about 27 px across); cellavision_blog fields are 300 px with the cell "
             "about half of them (lowres_64: cell about 29 px)."),
             "- 95% CI by bootstrap over images; 2 CPU cores.",
             "- Model files (sha256): " + "; ".join(f"{m.rpartition('=')[0] or m} {sha256(m.rpartition('=')[2])[:16]}..."
                                                    for m in models), "",
             "| model | lab | shift | n | accuracy [95% CI] | referred | accuracy on kept |", "|---|---|---|---|---|---|---|"]
    out = []
    for arg in models:  # LABEL=PATH or PATH; PATH a run folder or a model file
        m, _, p = arg.rpartition("=")
        m, p = m or p, Path(p)
        path = p / "model.pt" if p.is_dir() else p
        bundle = ModelBundle.load(path)
        rows, _ = external_rows(bundle, ext, n_boot=500, shifts=sorted({s for v in SHIFTS.values() for s in v}))
        first = len(lines)
        for r in rows:
            lab = r["set"].split("/")[-1]
            if r["shift"] not in SHIFTS.get(lab, []):
                continue
            r["model"] = m
            out.append(r)
            kept = f"{r['accuracy_on_kept']:.3f}" if "accuracy_on_kept" in r else "-"
            lines.append(f"| {m} | {lab} | {r['shift']} | {r['n']} | {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, "
                         f"{r['ci95'][1]:.3f}] | {r['referred']:.3f} | {kept} |")
        print("\n".join(lines[first:]), flush=True)
    (ROOT / "results" / "external_lowres.json").write_text(json.dumps(out, indent=1))
    (ROOT / "results" / "external_lowres.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
