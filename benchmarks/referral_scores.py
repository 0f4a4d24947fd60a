"""Which unfamiliar-image score to ship (issue 14): AUROC for telling a model's own test images from
shifted copies, other labs' cells and made-up images, and AUROC for telling errors from correct
answers, for max-softmax, energy, class-conditional Mahalanobis (tied covariance, top-16/64/256
components), PCA residual and k-NN cosine distance (k = 5, 1000 reference images). Features of a
run's model; references drawn from its train side. Writes results/referral_scores.{json,md}.
    .venv/bin/python benchmarks/referral_scores.py runs/wbc_type
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.data.splits import Split
from leukodx.data.torch_dataset import ImageDataset, read_record
from leukodx.heads.familiarity import KNNDistance
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig
from leukodx.transforms.shifts import build_shift

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("--out", default="results/referral_scores")
a = ap.parse_args()
torch.set_num_threads(2)
run = Path(a.run)
b = ModelBundle.load(run / "model.pt")
pc = PreprocessConfig(**b.preprocess)
pre = Preprocess(pc)
index = load_dataset(__import__("yaml").safe_load((run / "config.yaml").read_text())["data"])
split = Split.load(run / "split.json")


def feats(images):
    f = logits_for(b.model, images, pc.mean, pc.std, pre_logits=True)
    return f, b.model.get_classifier()(torch.from_numpy(f)).detach().numpy()


rng = np.random.default_rng(0)
sets = {}
tr_idx = sorted(rng.permutation(split.indices(index, "train"))[:3000].tolist())
for side, idx in (("train", tr_idx), ("test", split.indices(index, "test"))):
    ds = ImageDataset(index.subset(idx), pre)
    sets[side] = (*feats(ds.images), ds.labels.numpy())
te = split.indices(index, "test")[::4]
imgs = [read_record(index.records[i]) for i in te]
y = np.array([index.records[i].label for i in te])
for sh in ("grayscale", "stain_macenko", "blur_2", "lowres_32", "scale_0.5"):
    s = build_shift(sh, imgs[0])
    sets[f"test + {sh}"] = (*feats(torch.from_numpy(np.stack([pre.array(s(im)) for im in imgs]).transpose(0, 3, 1, 2))), y)
if set(b.classes) & {"lymphocyte", "neutrophil"}:
    ext, _ = map_classes(load_dataset("wbc_external"), b.classes)
    for lab in sorted({lab_of(ext, r) for r in ext.records}):
        ds = ImageDataset(ext.subset([i for i, r in enumerate(ext.records) if lab_of(ext, r) == lab]), pre)
        sets[lab] = (*feats(ds.images), ds.labels.numpy())
S = pc.image_size
g = np.random.default_rng(1)
sets["blank"] = (*feats(torch.full((20, 3, S, S), 230, dtype=torch.uint8)), np.zeros(20, int))
sets["noise"] = (*feats(torch.from_numpy(g.integers(0, 256, (20, 3, S, S), dtype=np.uint8))), np.zeros(20, int))

F, Y = sets["train"][0], sets["train"][2]
mu_c = np.stack([F[Y == c].mean(0) for c in np.unique(Y)])
_, sv, vt = np.linalg.svd(F - mu_c[np.searchsorted(np.unique(Y), Y)], full_matrices=False)
sd = sv / np.sqrt(len(F) - 1)


def maha(k):
    zc = (mu_c @ vt[:k].T) / sd[:k]
    return lambda f: (((f @ vt[:k].T) / sd[:k])[:, None, :] - zc[None]).__pow__(2).sum(-1).min(1)


def resid(f):
    r = f - F.mean(0)
    return ((r - (r @ vt[:64].T) @ vt[:64]) ** 2).sum(1)


def softmax(z):
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


knn = KNNDistance(1000, 5).fit(F, Y)
scores = {"max softmax": lambda f, z: -softmax(z).max(1),
          "energy": lambda f, z: -np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) - z.max(1),
          "Mahalanobis 16": lambda f, z: maha(16)(f), "Mahalanobis 64": lambda f, z: maha(64)(f),
          "Mahalanobis 256": lambda f, z: maha(256)(f), "PCA residual": lambda f, z: resid(f),
          "k-NN cosine (shipped)": lambda f, z: knn.distance(f)}
val = {name: {s: fn(v[0], v[1]) for s, v in sets.items()} for name, fn in scores.items()}
rows = []
for s, (f, z, yy) in sets.items():
    if s in ("train", "test"):
        continue
    acc = float((z.argmax(1) == yy).mean()) if s not in ("blank", "noise") else None
    row = {"set": s, "n": len(yy), "accuracy": acc}
    for name in scores:
        t, o = val[name]["test"], val[name][s]
        row[name] = float(roc_auc_score(np.r_[np.zeros(len(t)), np.ones(len(o))], np.r_[t, o]))
    rows.append(row)
err_rows = []
for s in ["test"] + [k for k in sets if k not in ("train", "test", "blank", "noise")]:
    wrong = sets[s][1].argmax(1) != sets[s][2]
    if 0 < wrong.sum() < len(wrong):
        err_rows.append({"set": s, **{n: float(roc_auc_score(wrong, val[n][s])) for n in scores}})
out = Path(a.out)
out.with_suffix(".json").write_text(json.dumps({"run": str(run), "ood_auroc": rows, "error_auroc": err_rows}, indent=1))
head = "| set | n | accuracy | " + " | ".join(scores) + " |"
sep = "|---" * (3 + len(scores)) + "|"
lines = [f"# Unfamiliar-image scores on `{run}` ({b.arch}, {index.name})", "",
         f"- Command: `.venv/bin/python benchmarks/referral_scores.py {run}`. 2 CPU cores.",
         ("- Reference / fit: 3,000 train-side images; compared against the whole test side of the grouped split "
         f"({len(sets['test'][2])} images); shifted copies use every 4th test image."),
         "- Higher AUROC = the score separates the set from the model's own test images better (OOD detection).", "",
         "## AUROC: set vs own test images", "", head, sep]
for r in rows:
    acc = f"{r['accuracy']:.3f}" if r["accuracy"] is not None else "-"
    lines.append(f"| {r['set']} | {r['n']} | {acc} | " + " | ".join(f"{r[n]:.3f}" for n in scores) + " |")
lines += ["", "## AUROC: errors vs correct answers within each set", "",
          "| set | " + " | ".join(scores) + " |", "|---" * (1 + len(scores)) + "|"]
for r in err_rows:
    lines.append(f"| {r['set']} | " + " | ".join(f"{r[n]:.3f}" for n in scores) + " |")
out.with_suffix(".md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
