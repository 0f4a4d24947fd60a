"""Does nucleus shape alone transfer to other labs, where the WBC model does not? (issue 13)
Each cell's nucleus is found as `cell_centre` finds it (`find_nucleus`), rescaled to a 48-px diameter
and described by 21 stain-free shape numbers (solidity, eccentricity, extent, circularity, lobes left
after eroding by 5-20% of the diameter, the radial profile's first 8 Fourier amplitudes, convexity
defects, radius spread, thickness). A logistic regression on them is fitted on the PBC training side
only (grouped split of configs/wbc_type.yaml) and scored on PBC val / test and, zero-shot, on
wbc_external. Then fused with the model's calibrated probabilities, log p = log p_model + w log p_shape,
w picked on PBC val alone (the largest w whose val accuracy is not below the model's), and its
agreement with the model's answer tried as a referral score. Nothing is fitted on the external sets.
Writes results/shape_probe.{json,md}.
  python benchmarks/shape_probe.py [MODEL]   # default: the shipped WBC model
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from common import sides_and_labs
from joblib import Parallel, delayed
from PIL import Image
from scipy import ndimage
from skimage import measure, morphology
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import make_split
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import accuracy_ci
from leukodx.heads.temperature import softmax
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.cell_finder import find_nucleus
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 21
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def shape_numbers(mask: np.ndarray) -> list[float]:
    """Stain-free description of one nucleus mask (largest piece, about 48 px across)."""
    p = measure.regionprops(mask.astype(int))[0]
    d = 2 * np.sqrt(p.area / np.pi)
    inner = ndimage.distance_transform_edt(mask)
    lobes = [ndimage.label(inner > f * d)[1] for f in (0.05, 0.1, 0.15, 0.2)]
    c = max(measure.find_contours(np.pad(mask, 1).astype(float), 0.5), key=len)
    cy, cx = p.centroid
    r = np.hypot(c[:, 0] - 1 - cy, c[:, 1] - 1 - cx)
    ang = np.arctan2(c[:, 0] - 1 - cy, c[:, 1] - 1 - cx)
    o = np.argsort(ang)
    prof = np.interp(np.linspace(-np.pi, np.pi, 64, endpoint=False), ang[o], r[o], period=2 * np.pi)
    fourier = np.abs(np.fft.rfft(prof / prof.mean()))[1:9] / 64
    hull = morphology.convex_hull_image(mask)
    gap = hull & ~mask
    defect = ndimage.distance_transform_edt(~mask)[gap]
    return [p.solidity, p.eccentricity, p.extent, 4 * np.pi * p.area / max(p.perimeter, 1) ** 2, *lobes, *fourier,
            defect.max() / d if defect.size else 0.0, gap.sum() / p.area, r.std() / r.mean(), r.min() / r.max(),
            inner.max() / d]


def features(path: str) -> list[float] | None:
    img = Image.open(path).convert("RGB")
    n = find_nucleus(img, work_size=160)
    if not n.found:
        return None
    k = 48 / n.diameter
    size = (max(8, round(img.width * k)), max(8, round(img.height * k)))
    m = np.array(Image.fromarray(n.mask).resize(size, Image.Resampling.NEAREST))
    lab, count = ndimage.label(m)
    if count == 0 or m.sum() < 10:
        return None
    return shape_numbers(lab == 1 + int(np.argmax(ndimage.sum(m, lab, range(1, count + 1)))))


def feature_matrix(records) -> np.ndarray:
    """(N, N_FEATURES); NaN rows where no nucleus is found."""
    rows = Parallel(n_jobs=2, batch_size=64)(delayed(features)(r.path) for r in records)
    return np.array([f if f is not None else [np.nan] * N_FEATURES for f in rows], float)


def fuse(p_model: np.ndarray, p_shape: np.ndarray, w: float) -> np.ndarray:
    """Log-linear pooling: softmax(log p_model + w log p_shape)."""
    return softmax(np.log(p_model + 1e-9) + w * np.log(p_shape + 1e-9))


def main():
    model = Path(sys.argv[1] if len(sys.argv) > 1 else "src/leukodx/shipped/wbc_type.pt")
    model_file = model / "model.pt" if model.is_dir() else model
    bundle = ModelBundle.load(model_file)
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    cfg = TrainConfig.load(ROOT / "configs" / "wbc_type.yaml")
    index = load_dataset(cfg.data)
    assert index.classes == bundle.classes, "the PBC index and the model must order classes alike"
    split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes)
    sides, sets, cmap = sides_and_labs(index, split, bundle.classes)
    torch.set_num_threads(2)
    feats = {name: feature_matrix(recs) for name, recs in sets.items()}
    ys = {name: np.array([r.label for r in recs]) for name, recs in sets.items()}
    ok = ~np.isnan(feats["train"]).any(1)
    shape = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, class_weight="balanced"))
    shape.fit(feats["train"][ok], ys["train"][ok])
    probs, shape_probs = {}, {}
    for name in sets:
        if name == "train":
            continue
        probs[name] = bundle_outputs(bundle, torch.stack([pre(Image.open(r.path).convert("RGB")) for r in sets[name]]))[1]
        found = ~np.isnan(feats[name]).any(1)
        s = np.full((len(found), len(bundle.classes)), 1 / len(bundle.classes))
        s[found] = shape.predict_proba(feats[name][found])
        shape_probs[name] = s
    val_acc = {w: float((fuse(probs["val"], shape_probs["val"], w).argmax(1) == ys["val"]).mean()) for w in WEIGHTS}
    chosen = max(w for w in WEIGHTS if val_acc[w] >= val_acc[0.0])
    rows = []
    for name, p_model in probs.items():
        y = ys[name]
        groups = split.groups_of(index, sides[name]) if name in sides else None
        for answer, p in [("model", p_model), ("nucleus shape alone", shape_probs[name]),
                          *[(f"fused, w {w}" + (" (chosen on PBC val)" if w == chosen else ""),
                             fuse(p_model, shape_probs[name], w)) for w in WEIGHTS[1:]]]:
            right = p.argmax(1) == y
            rows.append({"set": name, "answer": answer, "n": len(y), "accuracy": float(right.mean()),
                         "ci95": accuracy_ci(right, groups, n_boot=500),
                         "recall": {bundle.classes[c]: float(right[y == c].mean()) for c in np.unique(y)}})
    referral = []
    for name, p_model in probs.items():
        answer = p_model.argmax(1)
        wrong = answer != ys[name]
        agree = shape_probs[name][np.arange(len(answer)), answer] / shape_probs[name].max(1)
        for score_name, score in [("model max probability", p_model.max(1)),
                                  ("shape probability of the model's answer (relative to its top)", agree),
                                  ("product of the two", p_model.max(1) * agree)]:
            referral.append({"set": name, "score": score_name,
                             "auroc_errors": float(roc_auc_score(wrong, -score)) if 0 < wrong.sum() < len(wrong) else None})
    res = {"model": str(model), "model_sha256_16": hashlib.sha256(model_file.read_bytes()).hexdigest()[:16],
           "classes": cmap.describe(), "val_accuracy_by_weight": val_acc, "chosen_weight": chosen,
           "nucleus_found": {k: float((~np.isnan(v).any(1)).mean()) for k, v in feats.items()},
           "rows": rows, "referral": referral}
    out = ROOT / "results" / "shape_probe"
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    five = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
    lines = ["# Nucleus shape alone, and fused with the WBC model (issue 13 probe)", "",
             f"- Command: `python benchmarks/shape_probe.py {model}` (model sha256 {res['model_sha256_16']}...). 2 CPU cores.",
             ("- Shape: 21 stain-free numbers of the nucleus mask `find_nucleus` gives (see the script), logistic regression "
              f"(C 0.1, balanced classes) fitted on the PBC training side only (n {len(sets['train'])}). Fused: log p = "
              f"log p_model + w log p_shape; w = {chosen} chosen as the largest with PBC val accuracy not below the model's "
              f"(val accuracy by w: {', '.join(f'{w}: {a:.3f}' for w, a in val_acc.items())})."),
             "- Answers are over the model's 8 classes (no five-part limit); other labs zero-shot, classes mapped by name.",
             ("- 95% CI: bootstrap over groups (PBC) or images (other labs), 500 draws. Nothing here is fitted on the "
              "external sets; this file influenced no shipped choice."), "",
             "| set | answer | n | accuracy | " + " | ".join(f"{c} recall" for c in five) + " |",
             "|---|---|---|---|" + "---|" * len(five)]
    lines += [f"| {r['set']} | {r['answer']} | {r['n']} | {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
              + " | ".join(f"{r['recall'][c]:.2f}" if c in r["recall"] else "-" for c in five) + " |" for r in rows]
    lines += ["", "Referral scores: AUROC for separating the model's wrong answers from its right ones", "",
              "| set | score | error AUROC |", "|---|---|---|"]
    lines += [f"| {r['set']} | {r['score']} | {r['auroc_errors']:.3f} |" for r in referral]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
