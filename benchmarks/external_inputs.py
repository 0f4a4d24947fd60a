"""Can a change at prediction time rescue other labs' cells? (issues 13, 14) Each wbc_external image is
scored zero-shot as it is, in grayscale, stain-normalised onto PBC training images (Reinhard and
Macenko, leukodx.transforms.stain, one row per reference image), and with the answer limited to a five-part
differential (`leukodx predict --classes`: erythroblast, ig and platelet dropped). Classes mapped by
name, 95% CIs by bootstrap over images, the model's own referral on each; a confusion matrix per lab for the image as it is. No training,
nothing fitted on the external sets. Writes results/external_inputs.{json,md}.
  python benchmarks/external_inputs.py [MODEL]   # default: the shipped WBC model
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leukodx.config import TrainConfig
from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.data.splits import make_split
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import accuracy_ci
from leukodx.evaluate.selective import selective_summary
from leukodx.heads.expected import FIVE_PART, expected_mask, restrict
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig
from leukodx.transforms.shifts import build_shift

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CLASSES = ("neutrophil", "lymphocyte", "monocyte")  # one PBC image each: its first file
OWN = "pbc test, five classes"  # the model's own lab: what the limit costs or gives there


def references(pbc) -> dict[str, Path]:
    return {c: Path(next(r.path for r in pbc.records if pbc.classes[r.label] == c)) for c in REFERENCE_CLASSES}


def own_test_five(classes: list[str]) -> list:
    """The shipped WBC model's own test side (grouped split of configs/wbc_type.yaml), five-part classes only."""
    cfg = TrainConfig.load(ROOT / "configs" / "wbc_type.yaml")
    index = load_dataset(cfg.data)
    assert index.classes == classes, "the PBC index and the model must order classes alike"
    split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes)
    return [index.records[i] for i in split.indices(index, "test") if classes[index.records[i].label] in FIVE_PART.split(",")]


def main():
    model = Path(sys.argv[1] if len(sys.argv) > 1 else "src/leukodx/shipped/wbc_type.pt")
    model_file = model / "model.pt" if model.is_dir() else model
    bundle = ModelBundle.load(model_file)
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    ext, cmap = map_classes(load_dataset("wbc_external"), bundle.classes)
    refs = references(load_dataset("pbc"))
    variants = {"as is": build_shift("none"), "grayscale": build_shift("grayscale")}
    for method in ("reinhard", "macenko"):
        for c, path in refs.items():
            variants[f"{method} onto PBC {c} {path.name}"] = build_shift(f"stain_{method}", Image.open(path).convert("RGB"))
    torch.set_num_threads(2)
    rows, confusion = [], {}
    labs = {lab: [r for r in ext.records if lab_of(ext, r) == lab] for lab in sorted({lab_of(ext, r) for r in ext.records})}
    labs[OWN] = own_test_five(bundle.classes)
    for lab, recs in labs.items():
        y = np.array([r.label for r in recs])
        lab_classes = np.unique(y)
        raw = [Image.open(r.path).convert("RGB") for r in recs]
        for name, shift in (variants.items() if lab != OWN else [("as is", build_shift("none"))]):
            images = torch.stack([pre(shift(im)) for im in raw])
            _, probs, dist = bundle_outputs(bundle, images)
            answers = [(name, probs, None)]
            if name == "as is":
                limited, share = restrict(probs, expected_mask(FIVE_PART, bundle.classes))
                answers.append((f"as is, `--classes {FIVE_PART}`", limited, share))
                confusion[lab] = {"true": [bundle.classes[c] for c in lab_classes], "predicted": bundle.classes,
                                  "counts": [np.bincount(probs.argmax(1)[y == c], minlength=len(bundle.classes)).tolist()
                                             for c in lab_classes]}
            for variant, p, share in answers:
                ok = p.argmax(1) == y
                sel = selective_summary(p, y, dist, bundle.referral, images.permute(0, 2, 3, 1).numpy(),
                                        expected_share=share)
                rows.append({"lab": lab, "variant": variant, "n": len(y), "accuracy": float(ok.mean()),
                             "ci95": accuracy_ci(ok, n_boot=500),
                             "lymphocyte_recall": float(ok[y == bundle.classes.index("lymphocyte")].mean()),
                             "monocyte_recall": float(ok[y == bundle.classes.index("monocyte")].mean()),
                             "referred": sel["referred"], "accuracy_on_kept": sel["accuracy_on_kept"],
                             "auroc_errors": sel["auroc_errors"], "reasons": sel["reasons"]})
                print(rows[-1], flush=True)
    out = ROOT / "results" / "external_inputs"
    res = {"model": str(model), "model_sha256_16": hashlib.sha256(model_file.read_bytes()).hexdigest()[:16],
           "classes": cmap.describe(), "references": {c: str(p) for c, p in refs.items()}, "rows": rows,
           "confusion_as_is": confusion}
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    lines = ["# Other labs' cells, changed at prediction time (wbc_external, zero-shot)", "",
             (f"- Command: `python benchmarks/external_inputs.py {model}` (model sha256 {res['model_sha256_16']}...). "
             "2 CPU cores."),
             ("- Stain normalisation maps each image onto one PBC training image (leukodx.transforms.stain; the first file of "
             "that class). `--classes` = the answer limited to the white cells of a five-part differential, "
             "as `leukodx predict --classes` does (erythroblast, ig and platelet dropped; a cell whose probability "
             "lies mostly on them is referred as unexpected_class). A lab that counts a differential of normal "
             "blood can say this in advance; these two labs hold exactly these classes."),
             (f"- `{OWN}`: the model's own test side (grouped split of configs/wbc_type.yaml), its cells of those five "
              "classes only."),
             ("- accuracy [95% CI by bootstrap over images]; referred / accuracy on kept / error AUROC: the "
             "model's own referral (reasons as in `leukodx predict`)."), "",
             ("| lab | variant | n | accuracy | lymphocyte recall | monocyte recall | referred | accuracy on kept | "
             "error AUROC |"), "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['lab']} | {r['variant']} | {r['n']} | {r['accuracy']:.3f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] | "
              f"{r['lymphocyte_recall']:.3f} | {r['monocyte_recall']:.3f} | {r['referred']:.3f} | "
              f"{r['accuracy_on_kept']:.3f} | {r['auroc_errors']:.3f} |" for r in rows]
    for lab in confusion:
        c = res["confusion_as_is"][lab]
        lines += ["", f"Confusion, {lab}, as is (rows: true class; columns: answer)", "",
                  "| true \\ answer | " + " | ".join(c["predicted"]) + " |", "|---|" + "---|" * len(c["predicted"])]
        lines += [f"| {t} | " + " | ".join(str(v) for v in counts) + " |" for t, counts in zip(c["true"], c["counts"])]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
