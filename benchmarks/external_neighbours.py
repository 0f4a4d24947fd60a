"""Which PBC cells do other labs' cells resemble, in the model's own features? (issue 13) Each
wbc_external cell and each PBC test cell is placed among PBC training cells (a fixed sample per class)
by cosine distance of the pooled features the classifier sees; the table gives, per lab and true class,
the model's answers and the classes of the 10 nearest PBC training cells. If other labs' lymphocytes
sit among PBC erythroblasts in feature space, the features themselves, not only the head, misread
them, and a head refit (`leukodx adapt`) can only partly separate them. No training, nothing fitted
on the external sets. Writes results/external_neighbours.{json,md}.
  python benchmarks/external_neighbours.py [MODEL] [--per-class 150]
"""
import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from common import model_and_split
from PIL import Image

from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.transforms.preprocess import Preprocess

ROOT = Path(__file__).resolve().parents[1]
K = 10


def features(bundle: ModelBundle, pre: Preprocess, paths: list) -> np.ndarray:
    x = torch.stack([pre(Image.open(p).convert("RGB")) for p in paths])
    return logits_for(bundle.model, x, pre.cfg.mean, pre.cfg.std, pre_logits=True)


def unit(f: np.ndarray) -> np.ndarray:
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def share_text(counts: np.ndarray, classes: list[str], top: int = 3) -> str:
    order = np.argsort(-counts)[:top]
    total = max(counts.sum(), 1)
    return ", ".join(f"{classes[i]} {counts[i] / total:.2f}" for i in order if counts[i] > 0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="src/leukodx/shipped/wbc_type.pt")
    ap.add_argument("--per-class", type=int, default=150, help="PBC training cells per class to search among")
    a = ap.parse_args()
    torch.set_num_threads(2)
    bundle, pre, index, split = model_and_split(a.model)
    rng = np.random.default_rng(0)
    train, test = split.indices(index, "train"), split.indices(index, "test")
    ref = [i for c in range(len(index.classes))
           for i in rng.choice([i for i in train if index.records[i].label == c], a.per_class, replace=False)]
    ref_f = unit(features(bundle, pre, [index.records[i].path for i in ref]))
    head = bundle.model.get_classifier()  # the model's answer from the same features (argmax of its logits)
    w, b = head.weight.detach().numpy(), head.bias.detach().numpy()
    ref_y = np.array([index.records[i].label for i in ref])
    test = list(rng.choice(test, min(800, len(test)), replace=False))
    sets = {"pbc test (sample)": [(index.records[i].path, index.records[i].label) for i in test]}
    ext, _ = map_classes(load_dataset("wbc_external"), bundle.classes)
    for lab in sorted({lab_of(ext, r) for r in ext.records}):
        sets[lab] = [(r.path, r.label) for r in ext.records if lab_of(ext, r) == lab]
    n_cls = len(bundle.classes)
    rows = []
    for name, items in sets.items():
        f = features(bundle, pre, [p for p, _ in items])
        y = np.array([lbl for _, lbl in items])
        answer = (f @ w.T + b).argmax(1)
        nn = np.argsort(-(unit(f) @ ref_f.T), axis=1)[:, :K]
        nn_y = ref_y[nn]
        vote = np.array([np.bincount(v, minlength=n_cls).argmax() for v in nn_y])
        for c in np.unique(y):
            sel = y == c
            rows.append({"set": name, "class": bundle.classes[c], "n": int(sel.sum()),
                         "model_right": float((answer[sel] == c).mean()),
                         "knn_vote_right": float((vote[sel] == c).mean()),
                         "neighbours_of_true_class": float((nn_y[sel] == c).mean()),
                         "model_answers": np.bincount(answer[sel], minlength=n_cls).tolist(),
                         "neighbour_classes": np.bincount(nn_y[sel].ravel(), minlength=n_cls).tolist()})
    sha = hashlib.sha256(Path(a.model).read_bytes()).hexdigest()[:16]
    out = {"model": a.model, "model_sha256_16": sha, "classes": bundle.classes, "k": K,
           "reference": f"{a.per_class} PBC training cells per class (grouped split of configs/wbc_type.yaml, seed 0)",
           "rows": rows}
    stem = ROOT / "results" / "external_neighbours"
    stem.with_suffix(".json").write_text(json.dumps(out, indent=1))
    md = ["# Other labs' cells among PBC cells, in the model's features (issue 13)", "",
          (f"- Command: `python benchmarks/external_neighbours.py {a.model} --per-class {a.per_class}` "
          f"(model sha256 {sha}...). 2 CPU cores, no training, nothing fitted on the external sets."),
          (f"- Each cell's {K} nearest PBC training cells by cosine distance of the pooled features the classifier "
          f"sees ({out['reference']}); `k-NN vote right`: the majority class of those neighbours is the true one; "
          "`neighbours of its class`: the share of the neighbours that are of the true class."),
          "- The PBC test row is a fixed sample of 800 test cells, for reference.", "",
          "| set | class | n | model right | k-NN vote right | neighbours of its class | model's answers | nearest PBC cells |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['set']} | {r['class']} | {r['n']} | {r['model_right']:.2f} | {r['knn_vote_right']:.2f} | "
                  f"{r['neighbours_of_true_class']:.2f} | {share_text(np.array(r['model_answers']), bundle.classes)} | "
                  f"{share_text(np.array(r['neighbour_classes']), bundle.classes)} |")
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
