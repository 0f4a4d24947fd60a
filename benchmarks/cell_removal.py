"""Does a shipped model need the cells? (issue 13) An intervention, not an attribution map: each test
image, as the model sees it (after its preprocessing), is changed and re-scored.

  cells painted out   every purple-stained object (white cells, blasts; `stained_cells`, grown by 2 px)
                      painted with the median colour of the rest of the image;
  control: elsewhere  the same blobs moved to a random place off the cells and painted there
                      (as much paint, as many edges, but the cells left alone);
  cells only          everything but those objects painted with that colour;
  painted out of the file  the same paint on the image file before the model's preprocessing: a field with no
                      white cell as a user would give it (a cell-centred model then centres what is left);
  corner patch        (models with `mask_corner`) the covered scale-bar corner filled with white or a
                      random light colour instead of the background colour.

A model that reads the cells falls to chance when they are painted out and holds on the control.
Images from each model's grouped test split (configs/NAME.yaml). Writes results/cell_removal.{json,md} and the
shipped model cards' section. A candidate model file, on the validation side (model selection), elsewhere:
  python benchmarks/cell_removal.py [--max-images 1000]
  python benchmarks/cell_removal.py --models all_severity=runs/all_severity_paint/model.pt --side val \
      --out results/all_severity_paint_val_cell_removal
"""
import argparse
import hashlib
import json
import os

import common
import numpy as np
import torch
from common import model_and_split

from leukodx.data.images import load_image
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.model_card import CELL_REMOVAL_HEADING, cell_removal_section, replace_section
from leukodx.evaluate.robustness import accuracy_ci
from leukodx.explain.audit import cell_interventions
from leukodx.heads.image_checks import image_problem
from leukodx.predict.shipped import shipped_model
from leukodx.transforms.preprocess import MaskCorner
from leukodx.transforms.shifts import build_shift

MODELS = {"all_severity": "all", "wbc_type": "wbc"}
CELLS_OUT = build_shift("cells_out")  # the same paint on the image file, as the cell probe is fitted


def file_sha256(path) -> str:
    """The model file's fingerprint: benchmarks/shipped_model.sh keeps this section in a card only for that file."""
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def variants(image, pre, rng) -> dict[str, np.ndarray]:
    arr = pre.array(image)
    out = {"as seen": arr, **cell_interventions(arr), "cells painted out of the file": pre.array(CELLS_OUT(image))}
    corner = pre.cfg.mask_corner
    if corner:
        mc = MaskCorner()
        h, w = arr.shape[:2]
        r = (slice(h - round(h * mc.height), h), slice(w - round(w * mc.width), w))
        for name, colour in (("corner patch white", np.full(3, 255, np.uint8)),
                             ("corner patch random light colour", rng.integers(150, 256, 3).astype(np.uint8))):
            a = arr.copy()
            a[r] = colour
            out[name] = a
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-images", type=int, default=1000, help="images per model (an even sample)")
    ap.add_argument("--models", nargs="+", metavar="CONFIG=FILE",
                    help="model files to score, each with its config's name (all_severity, wbc_type); default: the shipped ones")
    ap.add_argument("--side", choices=("test", "val"), default="test", help="side of the grouped split")
    ap.add_argument("--out", default="results/cell_removal", help="results file stem")
    a = ap.parse_args()
    torch.set_num_threads(2)
    models = dict(m.split("=", 1) for m in a.models) if a.models else {n: shipped_model(s) for n, s in MODELS.items()}
    bad = sorted(set(models) - set(MODELS))
    if bad:
        ap.error(f"unknown config name(s) {', '.join(bad)}: use {' or '.join(MODELS)}")
    shipped = not a.models and a.side == "test" and a.out == "results/cell_removal"  # only then are the cards updated
    res = {"command": "python benchmarks/cell_removal.py" + (f" --max-images {a.max_images}" if a.max_images != 1000 else "")
           + (" --models " + " ".join(a.models) if a.models else "") + (f" --side {a.side}" if a.side != "test" else "")
           + (f" --out {a.out}" if a.out != "results/cell_removal" else ""), "side": a.side, "models": {}}
    for name, file in models.items():
        bundle, pre, index, split = model_and_split(file, name)
        te = split.indices(index, a.side)
        te = [te[k] for k in np.unique(np.linspace(0, len(te) - 1, min(a.max_images, len(te))).astype(int))]  # even over classes
        y = np.array([index.records[i].label for i in te])
        groups = split.groups_of(index, te)  # CIs resample whole groups (patients / slides)
        rng = np.random.default_rng(0)
        sets: dict[str, list] = {}
        for i in te:
            for k, v in variants(load_image(index.records[i].path), pre, rng).items():
                sets.setdefault(k, []).append(v)
        rows = []
        for k, arrs in sets.items():
            _, p, d = bundle_outputs(bundle, torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous())
            ok = p.argmax(1) == y
            acc, (lo, hi) = float(ok.mean()), accuracy_ci(ok, groups)
            reasons = bundle.referral.reasons(p, d, [image_problem(x) for x in arrs])  # as `leukodx predict` refers
            rows.append({"variant": k, "accuracy": acc, "ci": [lo, hi], "median_top_probability": float(np.median(p.max(1))),
                         "referred": float(np.mean([r is not None for r in reasons])),
                         "reasons": {r: reasons.count(r) for r in sorted(set(reasons) - {None})},
                         "answers": dict(zip(bundle.classes, np.bincount(p.argmax(1), minlength=len(bundle.classes)).tolist()))})
            print(name, k, f"{acc:.3f}", flush=True)
        res["models"][name] = {"file": os.path.relpath(file, common.ROOT), "sha256": file_sha256(file), "n": len(te), "chance": float(np.bincount(y).max() / len(y)), "rows": rows}
    out = common.ROOT / a.out
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = ["# Does the model need the cells? (painting them out of its input)", "",
          (f"- Command: `{res['command']}`. 2 CPU cores, no GPU. Model files: "
          + ", ".join(f"{n} `{r['file']}`" for n, r in res["models"].items()) + f"; images from each model's grouped "
          f"{a.side} side (an even sample of at most the given number; CIs resample whole groups), changed after the model's own preprocessing."),
          ("- cells painted out: every purple-stained object (white cells, blasts; `stained_cells`, grown by 2 px) painted "
          "with the median colour of the rest; control: the same blobs moved off the cells and painted there; cells only: "
          "all but those objects painted; painted out of the file: the same paint on the image file, before the model's "
          "preprocessing (a cell-centred model then centres what is left). Chance = the largest class's share."), ""]
    for name, r in res["models"].items():
        md += [f"## {name} (n {r['n']}, chance {r['chance']:.3f})", "",
               "| input | accuracy [95% CI] | median top probability | referred (reasons) | answers per class |", "|---|---|---|---|---|"]
        md += [f"| {x['variant']} | {x['accuracy']:.3f} [{x['ci'][0]:.3f}, {x['ci'][1]:.3f}] | {x['median_top_probability']:.3f} | "
               f"{x['referred']:.3f} ({', '.join(f'{k} {v}' for k, v in x['reasons'].items()) or '-'}) | "
               + ", ".join(f"{c} {n}" for c, n in x["answers"].items()) + " |" for x in r["rows"]]
        md.append("")
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    for name, r in res["models"].items() if shipped else ():
        for card in (common.ROOT / "results" / f"{name}_model_card.md", common.ROOT / "src" / "leukodx" / "shipped" / f"{name}.md"):
            if card.is_file():
                replace_section(card, CELL_REMOVAL_HEADING, cell_removal_section(r, "results/cell_removal.json"))


if __name__ == "__main__":
    main()
