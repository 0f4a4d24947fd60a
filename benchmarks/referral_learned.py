"""Would a learned error score refer better than the shipped rule? (issue 14) The shipped rule refers
when the top probability is under a threshold or the k-NN feature distance is over one. Here a
logistic regression predicts "this answer is wrong" from signals of one forward pass:

  probabilities + distance: 1 - top probability, top-two margin, entropy, k-NN distance (what both
      predictors already have);
  + class neighbours: also how close the cell lies to training cells of the class it was given
      (mean cosine similarity to the 5 nearest of that class) against those of other classes: the
      "lymphocyte among PBC erythroblasts" pattern of results/external_neighbours.md.

It is fitted on the model's own validation side plus shifted copies of every 3rd validation image
(eight shifts, so that the fit sees errors), never on the external sets. Its threshold keeps 99% of
the validation answers right, like the shipped confidence threshold. Scored on the test side, shifted
test copies and wbc_external (zero-shot). Features are cached under runs/referral_learned/.
Also the shipped rule's own score two ways (the same decisions, leukodx.heads.referral.Referral): as it is
(referred first, then 1 - top probability) and as it was before 2026-12-06 (the larger threshold ratio).
Writes results/referral_learned.{json,md}.
  python benchmarks/referral_learned.py [MODEL]
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from common import model_and_split
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.selective import risk_coverage
from leukodx.heads.referral import choose_threshold
from leukodx.models.inference import logits_for
from leukodx.transforms.shifts import build_shift

ROOT = Path(__file__).resolve().parents[1]
FIT_SHIFTS = ("grayscale", "stain_macenko", "stain_reinhard", "blur_2", "lowres_32", "jpeg_10", "hed_0.5", "scale_0.5")
TEST_SHIFTS = ("grayscale", "stain_macenko", "lowres_32")
RATIO = "shipped rule, score before 2026-12-06"  # the larger threshold ratio: same decisions, other order
SIGNALS = {"probabilities + distance": [0, 1, 2, 3], "+ class neighbours": [0, 1, 2, 3, 4, 5]}


def outputs(bundle, pre, images):
    """PIL images -> pooled features, calibrated probabilities, k-NN distances (batches of 256)."""
    f, p, d = [], [], []
    for i in range(0, len(images), 256):
        x = torch.stack([pre(im) for im in images[i:i + 256]])
        f.append(logits_for(bundle.model, x, pre.cfg.mean, pre.cfg.std, pre_logits=True))
        _, pi, di = bundle_outputs(bundle, x)
        p.append(pi)
        d.append(di)
    return np.concatenate(f), np.concatenate(p), np.concatenate(d)


def signals(f, p, d, ref_f, ref_y):
    """Per answer: 1 - top probability, margin, entropy, distance, 1 - own-class similarity,
    own-class minus other-class similarity (5 nearest training cells each)."""
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    sims = unit @ ref_f.T
    k = p.argmax(1)
    own = np.where(ref_y[None] == k[:, None], sims, -np.inf)
    other = np.where(ref_y[None] != k[:, None], sims, -np.inf)
    own5, other5 = np.sort(own, 1)[:, -5:].mean(1), np.sort(other, 1)[:, -5:].mean(1)
    ps = np.sort(p, 1)
    ent = -(p * np.log(np.clip(p, 1e-12, 1))).sum(1)
    return np.c_[1 - ps[:, -1], ps[:, -1] - ps[:, -2], ent, d, 1 - own5, own5 - other5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="src/leukodx/shipped/wbc_type.pt")
    ap.add_argument("--config", default="wbc_type", help="the model's training config (its dev data and split); "
                    "all_severity for the ALL model, which has no external lab to score")
    a = ap.parse_args()
    torch.set_num_threads(2)
    bundle, pre, index, split = model_and_split(a.model, a.config)
    wbc = a.config == "wbc_type"  # the WBC model is also scored on wbc_external; others write a file of their own
    train, val, test = (split.indices(index, s) for s in ("train", "val", "test"))
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.permutation([i for i in train if index.records[i].label == c])[:150]
                          for c in range(len(index.classes))])
    ext = map_classes(load_dataset("wbc_external"), bundle.classes)[0] if wbc else None
    jobs = {"reference": (index, ref, None), "val": (index, val, None)}
    jobs |= {f"val + {s}": (index, val[::3], s) for s in FIT_SHIFTS}
    jobs |= {"test": (index, test, None)} | {f"test + {s}": (index, test[::4], s) for s in TEST_SHIFTS}
    for lab in sorted({lab_of(ext, r) for r in ext.records} if ext else []):
        jobs[lab] = (ext, [i for i, r in enumerate(ext.records) if lab_of(ext, r) == lab], None)

    sha = hashlib.sha256(Path(a.model).read_bytes()).hexdigest()[:16]
    cache = ROOT / "runs" / "referral_learned" / f"{sha}.npz"
    if cache.is_file():
        z = np.load(cache)
        sets = {k: {f: z[f"{k}|{f}"] for f in "fpdy"} for k in jobs}
    else:
        sets = {}
        for name, (ix, idx, shift) in jobs.items():
            ims = [Image.open(ix.records[i].path).convert("RGB") for i in idx]
            if shift:
                s = build_shift(shift, ims[0])
                ims = [s(im) for im in ims]
            f, p, d = outputs(bundle, pre, ims)
            sets[name] = {"f": f, "p": p, "d": d, "y": np.array([ix.records[i].label for i in idx])}
            print(name, len(idx), f"accuracy {(p.argmax(1) == sets[name]['y']).mean():.3f}", flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **{f"{k}|{f}": v for k, s in sets.items() for f, v in s.items()})

    r = sets["reference"]
    ref_f, ref_y = r["f"] / np.linalg.norm(r["f"], axis=1, keepdims=True), r["y"]
    X = {k: signals(s["f"], s["p"], s["d"], ref_f, ref_y) for k, s in sets.items()}
    wrong = {k: s["p"].argmax(1) != s["y"] for k, s in sets.items()}
    fit = [k for k in jobs if k.startswith("val")]
    scores, thresholds, coefs = {}, {}, {}
    for name, cols in SIGNALS.items():
        m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        m.fit(np.concatenate([X[k][:, cols] for k in fit]), np.concatenate([wrong[k] for k in fit]))
        scores[name] = {k: m.predict_proba(X[k][:, cols])[:, 1] for k in sets}
        # refer when P(error) > t: the confidence threshold's rule on 1 - P(error), on the validation side
        thresholds[name] = 1 - choose_threshold(1 - scores[name]["val"], ~wrong["val"], 0.99)
        coefs[name] = dict(zip(["1 - top probability", "margin", "entropy", "distance", "1 - own-class similarity",
                                "own - other-class similarity"], np.round(m[-1].coef_[0], 3).tolist()))
    rows = []
    for k in jobs:
        if k == "reference" or k.startswith("val"):
            continue
        s, w = sets[k], wrong[k]
        unfamiliar = s["d"] > bundle.referral.unfamiliar
        shipped = np.array([x is not None for x in bundle.referral.reasons(s["p"], s["d"])])
        row = {"set": k, "n": len(w), "accuracy": float(1 - w.mean()),
               "auroc": {"shipped rule": float(roc_auc_score(w, bundle.referral.score(s["p"], s["d"]))),
                         RATIO: float(roc_auc_score(w, bundle.referral.ratio(s["p"], s["d"]))),
                         "1 - top probability": float(roc_auc_score(w, X[k][:, 0])),
                         **{n: float(roc_auc_score(w, scores[n][k])) for n in SIGNALS}},
               "aurc": {n: risk_coverage(f(s["p"], s["d"]), ~w)["aurc"] for n, f in
                        (("shipped rule", bundle.referral.score), (RATIO, bundle.referral.ratio))},
               "referred": {"shipped rule": float(shipped.mean())}, "kept_accuracy": {"shipped rule": float(1 - w[~shipped].mean())}}
        for n in SIGNALS:
            refer = (scores[n][k] > thresholds[n]) | unfamiliar  # the unfamiliar reason stays
            row["referred"][n] = float(refer.mean())
            row["kept_accuracy"][n] = float(1 - w[~refer].mean()) if (~refer).any() else float("nan")
        rows.append(row)
    res = {"command": "python benchmarks/referral_learned.py " + a.model + ("" if wbc else f" --config {a.config}"), "model_sha256": sha,
           "fit": {k: len(wrong[k]) for k in fit}, "fit_errors": int(sum(wrong[k].sum() for k in fit)),
           "coefficients (standardised)": coefs, "thresholds": thresholds, "rows": rows}
    out = ROOT / "results" / ("referral_learned" + ("" if wbc else f"_{a.config}"))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    names = ["shipped rule", *SIGNALS]
    md = [f"# Learned error score vs the shipped referral rule (`{a.model}`, sha256 {sha}...)", "",
          f"- Command: `{res['command']}`. 2 CPU cores, no GPU.",
          (f"- Fitted on the grouped split's validation side ({len(val)} images) plus shifted copies of every 3rd "
          f"validation image ({', '.join(FIT_SHIFTS)}): {sum(res['fit'].values())} answers, {res['fit_errors']} wrong. "
          "The external sets were not used to fit or choose anything here."),
          ("- Threshold: the one whose kept validation answers are 99% right (the shipped confidence threshold's rule); "
          "the shipped unfamiliar-image threshold still refers on its own."),
          f"- Class neighbours: 150 training cells per class (features of the model). Coefficients: `{json.dumps(coefs)}`.", "",
          "## Errors vs correct answers (AUROC of the score)", "",
          ("The shipped rule's score: the referred cases first, then the least confident answer first; the score "
           "before 2026-12-06 made the same decisions and ordered by the larger threshold ratio (AURC of each: "
           "area under the risk-coverage curve, lower is better)."), "",
          f"| set | n | accuracy | shipped rule | {RATIO} | 1 - top probability | " + " | ".join(SIGNALS)
          + " | AURC, shipped rule | AURC, score before |", "|---" * (8 + len(SIGNALS)) + "|"]
    md += [f"| {r['set']} | {r['n']} | {r['accuracy']:.3f} | " + " | ".join(f"{r['auroc'][n]:.3f}" for n in
           ["shipped rule", RATIO, "1 - top probability", *SIGNALS])
           + f" | {r['aurc']['shipped rule']:.4f} | {r['aurc'][RATIO]:.4f} |" for r in rows]
    md += ["", "## Referred share / accuracy on the answers kept", "", "| set | " + " | ".join(names) + " |",
           "|---" * (1 + len(names)) + "|"]
    md += [f"| {r['set']} | " + " | ".join(f"{r['referred'][n]:.3f} / {r['kept_accuracy'][n]:.3f}" for n in names) + " |"
           for r in rows]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
