"""Does a model read the cell or its surroundings on other labs' images? (issue 13) Each wbc_external
image is scored as it is, with everything outside the expert cell mask painted the background colour
(no red cells, no smear), and with the cytoplasm painted too (nucleus only). If the surroundings
drove the errors, accuracy would rise when they are removed. Zero-shot, classes mapped by name,
95% CIs by bootstrap over images. Writes results/external_context.{json,md}.
  python benchmarks/external_context.py [MODEL]   # default: the shipped WBC model
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import accuracy_ci
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig
from leukodx.transforms.stain import background_colour

ROOT = Path(__file__).resolve().parents[1]
MODES = ("as is", "surroundings removed", "nucleus only")


def painted(path: Path, mask_path: Path, mode: str) -> Image.Image:
    """The image with the parts `mode` removes set to its background colour (masks: nucleus > 200,
    cytoplasm 65-200, rest 0, as in benchmarks/cell_finder.py)."""
    a = np.array(Image.open(path).convert("RGB"))
    m = np.asarray(Image.open(mask_path).convert("L"))
    bg = background_colour(a)
    if mode != "as is":
        a[m <= 64] = bg
    if mode == "nucleus only":
        a[(m > 64) & (m <= 200)] = bg
    return Image.fromarray(a)


def main():
    model = Path(sys.argv[1] if len(sys.argv) > 1 else "src/leukodx/shipped/wbc_type.pt")
    bundle = ModelBundle.load(model / "model.pt" if model.is_dir() else model)
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    ext, cmap = map_classes(load_dataset("wbc_external"), bundle.classes)
    torch.set_num_threads(2)
    rows = []
    for lab in sorted({lab_of(ext, r) for r in ext.records}):
        recs = [r for r in ext.records if lab_of(ext, r) == lab]
        y = np.array([r.label for r in recs])
        for mode in MODES:
            x = torch.stack([pre(painted(Path(r.path), Path(r.path).parents[2] / "masks" / lab / f"{Path(r.path).stem}.png",
                                         mode)) for r in recs])
            pred = bundle_outputs(bundle, x)[1].argmax(1)
            for c in [None, *np.unique(y)]:
                sel = np.ones(len(y), bool) if c is None else y == c
                ok = pred[sel] == y[sel]
                top = np.bincount(pred[sel], minlength=len(bundle.classes))
                rows.append({"lab": lab, "class": "all" if c is None else bundle.classes[c], "mode": mode,
                             "n": int(sel.sum()), "accuracy": float(ok.mean()), "ci95": accuracy_ci(ok, n_boot=500),
                             "most_predicted": bundle.classes[int(top.argmax())]})
    out = ROOT / "results" / "external_context"
    out.with_suffix(".json").write_text(json.dumps({"model": str(model), "classes": cmap.describe(), "rows": rows}, indent=1))
    lines = ["# Cell or surroundings? Other labs' cells with parts removed (wbc_external, zero-shot)", "",
             f"- Command: `python benchmarks/external_context.py {model}`. 2 CPU cores.",
             ("- Removed parts are painted the image's background colour using the expert masks in "
              "`wbc_external/masks`: surroundings = everything outside the cell; nucleus only = the cytoplasm too."),
             "- accuracy [95% CI by bootstrap over images]; most predicted = the class the model answers most often.", "",
             "| lab | class | n | " + " | ".join(f"{m}: accuracy (most predicted)" for m in MODES) + " |",
             "|---|---|---|" + "---|" * len(MODES)]
    keys = sorted({(r["lab"], r["class"]) for r in rows}, key=lambda k: (k[0], k[1] != "all", k[1]))
    for lab, cls in keys:
        by = {r["mode"]: r for r in rows if r["lab"] == lab and r["class"] == cls}
        cells = [f"{by[m]['accuracy']:.3f} [{by[m]['ci95'][0]:.2f}, {by[m]['ci95'][1]:.2f}] ({by[m]['most_predicted']})"
                 for m in MODES]
        lines.append(f"| {lab} | {cls} | {by[MODES[0]]['n']} | " + " | ".join(cells) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
