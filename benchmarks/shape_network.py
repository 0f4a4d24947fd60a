"""Does a network that sees only the cell's outline transfer to other labs? (issue 13)
shape_probe.py found that 21 hand-made numbers of the nucleus mask transfer lymphocytes to other labs where
the WBC model does not, but score only 0.44 on PBC. Here a network learns shape itself: each cell is centred as
the WBC model centres it (2.5 nucleus diameters, `CellCentre`) at 64 px and rendered as three binary channels,
nucleus (`find_nucleus`), cytoplasm and whole cell (`whole_cell_mask`): no colour, no texture. ResNet-18 (timm,
from scratch, no pretrained weights) learns the 8 PBC types from them on the training side of configs/wbc_type.yaml's
grouped split, AdamW, warm-up + cosine over a budget of optimiser steps, best step by PBC val accuracy; the masks are
augmented (any rotation, flips, zoom 0.85-1.15, a one-pixel erosion or dilation of each mask). Scored on PBC
val / test and, zero-shot, on wbc_external; then fused with the WBC model as shape_probe.py does
(log p_model + w log p_shape, w chosen on PBC val alone). Nothing is fitted on the external sets.
  python benchmarks/shape_network.py [--model MODEL] [--steps 3000] [--seeds 0 1] [--lr 0.003] [--input nucleus]
  python benchmarks/shape_network.py --sweep 0.0003 0.001 0.003   # the learning rate, on PBC val alone
Writes results/shape_network.{json,md} (`--input nucleus`: results/shape_network_nucleus.*; `--sweep`:
results/shape_network_sweep.*); masks are cached under runs/shape_network/.
"""
import argparse
import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import model_and_split, sides_and_labs
from joblib import Parallel, delayed
from PIL import Image
from shape_probe import WEIGHTS, fuse
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import accuracy_ci
from leukodx.heads.temperature import softmax
from leukodx.models.inference import logits_for
from leukodx.models.registry import create_model
from leukodx.transforms import cell_finder, preprocess, stain
from leukodx.transforms.cell_finder import CellCentre, find_nucleus, whole_cell_mask
from leukodx.transforms.preprocess import Resize

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64
FIVE = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def render(path: str) -> np.ndarray:
    """uint8 (3, SIZE, SIZE) of 0 / 255: nucleus, cytoplasm, whole cell of the centred white cell."""
    img = Resize(SIZE)(CellCentre(2.5)(Image.open(path).convert("RGB")))
    nucleus = find_nucleus(img).mask
    cell = whole_cell_mask(img) | nucleus
    return np.stack([nucleus, cell & ~nucleus, cell]).astype(np.uint8) * 255


def render_version() -> str:
    """Hash of the code that renders the masks (`render` and the transforms modules it calls)."""
    code = inspect.getsource(render).encode() + b"".join(Path(m.__file__).read_bytes() for m in (cell_finder, preprocess, stain))
    return hashlib.sha256(code + str(SIZE).encode()).hexdigest()[:16]


def masks(records, cache: Path) -> torch.Tensor:
    """Rendered masks of `records`, cached by the rendering code's version and the file list."""
    key = hashlib.sha256((render_version() + "\n".join(r.path for r in records)).encode())
    f = cache / f"masks_{SIZE}_{key.hexdigest()[:16]}.npy"
    if not f.exists():
        cache.mkdir(parents=True, exist_ok=True)
        arr = np.stack(Parallel(n_jobs=2, batch_size=64)(delayed(render)(r.path) for r in records))
        tmp = f.with_suffix(".tmp.npy")
        np.save(tmp, arr)
        tmp.replace(f)
    return torch.from_numpy(np.load(f))


def _morph(m: torch.Tensor, k: int) -> torch.Tensor:
    """m (1, H, W) float 0/1; k 1 = dilate, 2 = erode by one pixel, else unchanged."""
    if k == 1:
        return F.max_pool2d(m[None], 3, 1, 1)[0]
    if k == 2:
        return -F.max_pool2d(-m[None], 3, 1, 1)[0]
    return m


class MaskAugment:
    """Any rotation, flips, zoom 0.85-1.15 and a one-pixel erosion / dilation of each mask (another lab's
    segmentation draws the border a little elsewhere); the three channels are rebuilt from the two masks."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        nuc, cell = (_morph(x[i:i + 1].float() / 255, int(torch.randint(3, ()))) for i in (0, 2))
        m = torch.cat([nuc, torch.maximum(cell, nuc)])
        angle, zoom = float(torch.rand(()) * 360), float(0.85 + 0.3 * torch.rand(()))
        m = TF.affine(m, angle=angle, translate=[0, 0], scale=zoom, shear=[0.0, 0.0],
                      interpolation=InterpolationMode.NEAREST)
        if torch.rand(()) < 0.5:
            m = m.flip(-1)
        nuc, cell = m[0] > 0.5, m[1] > 0.5
        return (torch.stack([nuc, cell & ~nuc, cell]).to(torch.uint8) * 255)


INPUTS = {"masks": [0, 1, 2], "nucleus": [0, 0, 0]}  # channels shown to the network: all three, or the nucleus alone
INPUT_WORDS = {"masks": "nucleus, cytoplasm, whole cell", "nucleus": "the nucleus alone, in all three channels"}


def shown(x: torch.Tensor, input_: str) -> torch.Tensor:
    """(..., 3, H, W) rendered masks -> the channels `input_` shows."""
    return x.index_select(-3, torch.tensor(INPUTS[input_]))


class Masks(Dataset):
    def __init__(self, x: torch.Tensor, y: np.ndarray, input_: str, augment=None):
        self.x, self.y, self.input, self.augment = x, torch.as_tensor(y), input_, augment

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return shown(self.augment(self.x[i]) if self.augment else self.x[i], self.input), self.y[i]


def train_network(x, y, xv, yv, classes: int, seed: int, steps: int, lr: float, input_: str,
                  run_dir: Path) -> torch.nn.Module:
    """ResNet-18 from scratch through leukodx's ClassifierModule and a Lightning Trainer; best step by val accuracy."""
    import lightning.pytorch as pl

    from leukodx.train.module import ClassifierModule

    pl.seed_everything(seed, workers=True)
    done = run_dir / "done.json"  # written after a finished fit: a re-run with the same masks scores the same network
    made = {"seed": seed, "steps": steps, "lr": lr, "input": input_, "render_version": render_version()}
    weights = torch.as_tensor(len(y) / (classes * np.bincount(y, minlength=classes)), dtype=torch.float32)
    module = ClassifierModule(create_model("resnet18", classes), classes, (0.5,) * 3, (0.5,) * 3, lr=lr,
                              weight_decay=0.05, warmup_steps=100, class_weights=weights)
    best_path = run_dir / "checkpoints" / "best.ckpt"
    if not done.exists() or json.loads(done.read_text()) != made:
        done.unlink(missing_ok=True)
        best_path.unlink(missing_ok=True)
        _fit(module, x, y, xv, yv, steps, input_, run_dir)
        done.write_text(json.dumps(made))
    module.load_state_dict(torch.load(best_path, map_location="cpu", weights_only=True)["state_dict"])
    return module.eval()


def _fit(module, x, y, xv, yv, steps: int, input_: str, run_dir: Path) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(run_dir / "checkpoints", "best", monitor="val_acc", mode="max")
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, max_epochs=-1, val_check_interval=max(1, steps // 10),
                         check_val_every_n_epoch=None, callbacks=[best], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=run_dir)
    trainer.fit(module, DataLoader(Masks(x, y, input_, MaskAugment()), batch_size=32, shuffle=True, drop_last=True),
                DataLoader(Masks(xv, yv, input_), batch_size=256))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="src/leukodx/shipped/wbc_type.pt")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--input", choices=sorted(INPUTS), default="masks")
    ap.add_argument("--sweep", type=float, nargs="+", help="train seed 0 for --sweep-steps at each rate; PBC val only")
    ap.add_argument("--sweep-steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(2)
    bundle, pre, index, split = model_and_split(args.model)
    sides, sets, cmap = sides_and_labs(index, split, bundle.classes)
    cache = ROOT / "runs" / "shape_network"
    xs = {name: masks(recs, cache) for name, recs in sets.items()}
    ys = {name: np.array([r.label for r in recs]) for name, recs in sets.items()}
    k = len(bundle.classes)
    if args.sweep:
        return sweep(args, xs, ys, k, cache)
    shape_probs = {name: [] for name in sets if name != "train"}
    for seed in args.seeds:
        net = train_network(xs["train"], ys["train"], xs["val"], ys["val"], k, seed, args.steps, args.lr, args.input,
                            cache / f"{args.input}_seed{seed}_steps{args.steps}_lr{args.lr}")
        for name, found in shape_probs.items():
            found.append(softmax(logits_for(net.model, shown(xs[name], args.input), net.mean, net.std)))
    model_probs = {name: bundle_outputs(bundle, torch.stack([pre(Image.open(r.path).convert("RGB")) for r in sets[name]]))[1]
                   for name in shape_probs}
    rows, chosen = [], {}
    for i, seed in enumerate(args.seeds):
        val_acc = {w: float((fuse(model_probs["val"], shape_probs["val"][i], w).argmax(1) == ys["val"]).mean())
                   for w in WEIGHTS}
        chosen[seed] = max(w for w in WEIGHTS if val_acc[w] >= val_acc[0.0])
        for name, p_model in model_probs.items():
            groups = split.groups_of(index, sides[name]) if name in sides else None
            answers = [("model", p_model), (f"mask network seed {seed}", shape_probs[name][i]),
                       (f"fused seed {seed}, w {chosen[seed]} (chosen on PBC val)", fuse(p_model, shape_probs[name][i], chosen[seed])),
                       (f"fused seed {seed}, w 1.0", fuse(p_model, shape_probs[name][i], 1.0))]
            for answer, p in answers[(1 if i else 0):]:
                right = p.argmax(1) == ys[name]
                rows.append({"set": name, "answer": answer, "n": len(right), "accuracy": float(right.mean()),
                             "ci95": accuracy_ci(right, groups, n_boot=500),
                             "recall": {bundle.classes[c]: float(right[ys[name] == c].mean()) for c in np.unique(ys[name])},
                             "confusion_top": _top_confusions(p.argmax(1), ys[name], bundle.classes)})
    referral = []
    for name, p_model in model_probs.items():
        answer = p_model.argmax(1)
        wrong = answer != ys[name]
        for i, seed in enumerate(args.seeds):
            p_net = shape_probs[name][i]
            agree = p_net[np.arange(len(answer)), answer] / p_net.max(1)
            for score_name, score in [("model's top probability", p_model.max(1)),
                                      (f"mask network seed {seed}: its probability of the model's answer over its top", agree),
                                      (f"product of the two (seed {seed})", p_model.max(1) * agree)][(1 if i else 0):]:
                referral.append({"set": name, "score": score_name, "errors": int(wrong.sum()),
                                 "auroc_errors": float(roc_auc_score(wrong, -score)) if 0 < wrong.sum() < len(wrong) else None})
    res = {"model": args.model, "steps": args.steps, "seeds": args.seeds, "lr": args.lr, "input": args.input, "size": SIZE,
           "classes": cmap.describe(), "chosen_weight": chosen, "n_train": len(sets["train"]), "rows": rows,
           "referral": referral}
    out = ROOT / "results" / ("shape_network" if args.input == "masks" else f"shape_network_{args.input}")
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    lines = ["# A network that sees only the cell's outline (nucleus and cell masks), alone and fused with the WBC model (issue 13)", "",
             (f"- Command: `python benchmarks/shape_network.py --model {args.model} --steps {args.steps} --seeds "
              f"{' '.join(map(str, args.seeds))} --lr {args.lr} --input {args.input}`; 2 CPU cores."),
             (f"- Input: 64-px binary masks of the centred cell ({INPUT_WORDS[args.input]}); ResNet-18 from scratch "
              f"(no pretrained weights), {args.steps} optimiser steps, batch 32, AdamW lr {args.lr} wd 0.05, 100 warm-up steps "
              f"+ cosine, class-balanced loss, best of 10 validations by PBC val accuracy; trained on the PBC training side of "
              f"the grouped split (configs/wbc_type.yaml, n {len(sets['train'])})."),
             "- Fused: log p = log p_model + w log p_masks, w the largest of " + ", ".join(map(str, WEIGHTS))
             + " whose PBC val accuracy is not below the model's alone; w 1.0 shown beside it, not chosen.",
             ("- Other labs zero-shot, classes mapped by name; 95% CI by bootstrap over groups (PBC) or images (other labs), "
              "500 draws. Nothing is fitted on the external sets; this file influenced no shipped choice."), "",
             "| set | answer | n | accuracy [95% CI] | " + " | ".join(f"{c} recall" for c in FIVE) + " | commonest errors |",
             "|---|---|---|---|" + "---|" * (len(FIVE) + 1)]
    lines += [f"| {r['set']} | {r['answer']} | {r['n']} | {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | "
              + " | ".join(f"{r['recall'][c]:.2f}" if c in r["recall"] else "-" for c in FIVE)
              + f" | {r['confusion_top']} |" for r in rows]
    lines += ["", "Referral scores: AUROC for separating the model's wrong answers from its right ones (higher is better)", "",
              "| set | score | model's errors | error AUROC |", "|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['score']} | {r['errors']} | "
              + (f"{r['auroc_errors']:.3f}" if r["auroc_errors"] is not None else "-") + " |" for r in referral]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def sweep(args, xs: dict, ys: dict, k: int, cache: Path) -> None:
    """Seed 0 for --sweep-steps at each rate; best-step PBC val accuracy picks the rate (no other set is scored)."""
    rows = []
    for lr in args.sweep:
        net = train_network(xs["train"], ys["train"], xs["val"], ys["val"], k, 0, args.sweep_steps, lr, args.input,
                            cache / f"{args.input}_seed0_steps{args.sweep_steps}_lr{lr}")
        right = logits_for(net.model, shown(xs["val"], args.input), net.mean, net.std).argmax(1) == ys["val"]
        rows.append({"lr": lr, "val_accuracy": float(right.mean()), "n": len(right)})
    pick = max(rows, key=lambda r: r["val_accuracy"])["lr"]
    out = ROOT / "results" / "shape_network_sweep"
    out.with_suffix(".json").write_text(json.dumps({"steps": args.sweep_steps, "input": args.input, "pick": pick,
                                                    "rows": rows}, indent=1))
    lines = ["# The mask network's learning rate, on PBC val alone (issue 13)", "",
             (f"- Command: `python benchmarks/shape_network.py --sweep {' '.join(map(str, args.sweep))} --sweep-steps "
              f"{args.sweep_steps} --input {args.input}`; 2 CPU cores. Seed 0, {args.sweep_steps} optimiser steps at each "
              "rate, otherwise as results/shape_network.md; best of 10 validations. No other set is scored."), "",
             "| lr | PBC val accuracy (best step) | n |", "|---|---|---|"]
    lines += [f"| {r['lr']}{' (pick)' if r['lr'] == pick else ''} | {r['val_accuracy']:.3f} | {r['n']} |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _top_confusions(pred: np.ndarray, y: np.ndarray, classes: list[str], n: int = 3) -> str:
    pairs, counts = np.unique(np.stack([y, pred])[:, pred != y], axis=1, return_counts=True)
    order = np.argsort(-counts)[:n]
    return "; ".join(f"{classes[pairs[0, j]]} -> {classes[pairs[1, j]]} {counts[j]}" for j in order) if len(counts) else "-"


if __name__ == "__main__":
    main()
