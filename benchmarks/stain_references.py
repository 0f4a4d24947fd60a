"""Does the stain-normalisation row of the robustness table depend on its one reference image? (issue 13)
The model card's stain_reinhard / stain_macenko rows normalise the test side onto its first image. Here
the same test side (or a seeded sample of it, --n-max) is normalised onto other references: the first
validation image of the first and of the last class (same lab), and the first image of every other data
set here (other labs' stains: a lab that normalises onto its own reference). Accuracy with 95% CI
(bootstrap over groups), share referred and accuracy on the kept. Writes results/stain_references.{json,md}.
    python benchmarks/stain_references.py --models all_severity=src/leukodx/shipped/all_severity.pt \
        wbc_type=src/leukodx/shipped/wbc_type.pt:1000
"""
import argparse
import hashlib
import json
from pathlib import Path

import common
import numpy as np
import torch
from PIL import Image

from leukodx.data.recipes import lab_of, load_dataset
from leukodx.evaluate.robustness import shift_rows

OTHER_SETS = ["taleqani_all", "pbc", "wbc_external", "bccd"]  # the first image of each (each lab of wbc_external)

ap = argparse.ArgumentParser()
ap.add_argument("--models", nargs="+", default=["all_severity=src/leukodx/shipped/all_severity.pt",
                                                "wbc_type=src/leukodx/shipped/wbc_type.pt:1000"],
                help="CONFIG=MODEL_FILE[:N]: the config names the dev data and split the model was trained on; "
                     "N: score a seeded random sample of N test images")
ap.add_argument("--out", default="results/stain_references")
ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
a = ap.parse_args()
out = Path(a.out)
torch.set_num_threads(2)


def references(index, split) -> list[tuple[str, str, Image.Image]]:
    """(name, 'same lab' / 'other lab', image): the table's own, two val images, other sets' first."""
    te, va = split.indices(index, "test"), split.indices(index, "val")
    first = index.records[te[0]]
    refs = [(index.key(first) + " (the table's)", "same lab", first)]
    for c, name in [(0, index.classes[0]), (len(index.classes) - 1, index.classes[-1])]:
        r = next(index.records[i] for i in va if index.records[i].label == c)
        refs.append((f"val {name}: {index.key(r)}", "same lab", r))
    for other in OTHER_SETS:
        if other == index.name:
            continue
        idx = load_dataset(other)
        labs = {}
        for r in idx.records:
            labs.setdefault(lab_of(idx, r) if other == "wbc_external" else other, r)
        refs += [(f"{other}: {idx.key(r)}", "other lab", r) for r in labs.values()]
    return [(n, kind, Image.open(r.path).convert("RGB")) for n, kind, r in refs]


def write_md(res: dict) -> None:
    md = ["# Stain normalisation onto other reference images", "",
          f"- Command: `python benchmarks/stain_references.py --models {' '.join(res['models_arg'])}`",
          ("- Each model's grouped test split (seed 0, as in its model card; n below: all of it, or a seeded random "
           "sample of it where smaller), normalised (Reinhard / Macenko, leukodx.transforms.stain) "
           "onto each reference image; the first row is the reference of the model card's table. 'other lab': the first "
           "image of another data set here, as when a lab normalises onto its own reference. 95% CIs by bootstrap over "
           "groups (500 resamples). Referral by the model file's own rule. 2 CPU cores."), ""]
    for m in res["models"]:
        md += [f"## {m['config']} (`{m['model']}`, sha256 {m['model_sha256_16']}...)", "",
               f"- n: {m['rows'][0]['n']} of the {m['n_test_side']} test images", "",
               ("| reference | lab | n | Reinhard accuracy [95% CI] | referred / kept | Macenko accuracy [95% CI] | "
                "referred / kept |"), "|---|---|---|---|---|---|---|"]
        by_ref = {}
        for r in m["rows"]:
            by_ref.setdefault((r["reference"], r["kind"]), {})[r["shift"]] = r
        for (ref, kind), s in by_ref.items():
            cells = [f"{x['accuracy']:.3f} [{x['ci95'][0]:.3f}, {x['ci95'][1]:.3f}] | {x['referred']:.3f} / "
                     + (f"{x['accuracy_on_kept']:.3f}" if x["accuracy_on_kept"] is not None else "-")
                     for x in (s["stain_reinhard"], s["stain_macenko"])]
            md.append(f"| {ref} | {kind} | {s['stain_reinhard']['n']} | " + " | ".join(cells) + " |")
        for kind in ("same lab", "other lab"):
            for shift in ("stain_reinhard", "stain_macenko"):
                acc = [r["accuracy"] for r in m["rows"] if r["kind"] == kind and r["shift"] == shift]
                md.append(f"- {kind}, {shift}: accuracy {min(acc):.3f}-{max(acc):.3f} over {len(acc)} references")
        md.append("")
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))


if a.render:
    write_md(json.loads(out.with_suffix(".json").read_text()))
    raise SystemExit(0)
res = {"models_arg": a.models, "models": []}
for spec in a.models:
    config, path = spec.split("=", 1)
    path, _, n_max = path.partition(":")
    bundle, _, index, split = common.model_and_split(path, config)
    te = split.indices(index, "test")
    if n_max and int(n_max) < len(te):
        te = sorted(np.random.default_rng(0).choice(te, int(n_max), replace=False).tolist())
    rows = []
    for name, kind, ref in references(index, split):
        for r in shift_rows(bundle, index, te, split.groups_of(index, te), ["stain_reinhard", "stain_macenko"],
                            f"{index.name} test", n_boot=500, reference=(name, ref)):
            rows.append({"reference": name, "kind": kind, "shift": r["shift"], "n": r["n"], "accuracy": r["accuracy"],
                         "ci95": r["ci95"], "referred": r["referred"], "accuracy_on_kept": r.get("accuracy_on_kept")})
            print(config, name, r["shift"], f"{r['accuracy']:.3f}", flush=True)
    res["models"].append({"config": config, "model": path, "n_test_side": len(split.indices(index, "test")),
                          "model_sha256_16": hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16], "rows": rows})

out.with_suffix(".json").write_text(json.dumps(res, indent=1))
write_md(res)
