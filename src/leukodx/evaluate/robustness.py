"""Shift evaluation: a model's accuracy (95% CI) on its test split under named shifts, and on
labelled sets from other labs through a class map. Writes robustness.json and robustness.md.

Every row also gives how many images the model would refer and its median top probability, so
"confident and wrong" is visible, and the colour-histogram baseline under the same shift.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from leukodx.data.class_map import map_classes
from leukodx.data.dataset import DatasetIndex
from leukodx.data.recipes import lab_of
from leukodx.data.torch_dataset import read_record
from leukodx.errors import BadImageError
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.selective import selective_summary
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig
from leukodx.transforms.shifts import build_shift


def accuracy_ci(correct: np.ndarray, groups=None, n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the mean of `correct`, resampling whole groups if given."""
    if len(correct) == 0 or n_boot <= 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    g = np.arange(len(correct)) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    sums, sizes = np.bincount(g, weights=correct.astype(float)), np.bincount(g)
    pick = rng.integers(0, len(sums), (n_boot, len(sums)))
    acc = sums[pick].sum(1) / sizes[pick].sum(1)
    return [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))]


def _load(records) -> tuple[list[Image.Image], list[int], list[str]]:
    imgs, keep, bad = [], [], []
    for i, r in enumerate(records):
        try:
            imgs.append(read_record(r))
            keep.append(i)
        except BadImageError as e:
            bad.append(str(e))
    return imgs, keep, bad


def _shifted(pre: Preprocess, imgs: list[Image.Image], shift) -> np.ndarray:
    return np.stack([pre.array(shift(im)) for im in imgs]).transpose(0, 3, 1, 2)


def shifted_copies(records, pre: Preprocess, shifts: list[str]):
    """(shift name, images tensor, labels) for each shift of the readable records, read once; the stain
    reference is the first readable image."""
    if not shifts:
        return
    imgs, keep, _ = _load(records)
    y = np.array([records[k].label for k in keep])
    for name in shifts:
        yield name, torch.from_numpy(_shifted(pre, imgs, build_shift(name, imgs[0]))), y


def _row(bundle, pre, imgs, y, groups, shift, name, set_name, baseline, n_boot, seed) -> dict:
    x = _shifted(pre, imgs, shift)
    _, probs, dist = bundle_outputs(bundle, torch.from_numpy(x))
    pred, conf = probs.argmax(1), probs.max(1)
    correct = pred == y
    sel = selective_summary(probs, y, dist, bundle.referral,
                            x.transpose(0, 2, 3, 1), bundle.conformal())
    row = {"set": set_name, "shift": name, "n": len(y), "accuracy": float(correct.mean()),
           "ci95": accuracy_ci(correct, groups, n_boot, seed), **sel,
           "median_probability": float(np.median(conf)),
           "recall_per_class": {bundle.classes[c]: float(correct[y == c].mean()) for c in np.unique(y)},
           "predicted_counts": {bundle.classes[c]: int((pred == c).sum()) for c in np.unique(pred)}}
    if baseline is not None:
        row["baseline_accuracy"] = float((baseline.predict(x) == y).mean())
    return row


def shift_rows(bundle: ModelBundle, index: DatasetIndex, indices: list[int], groups: list[str] | None,
               shifts: list[str], set_name: str, baseline=None, n_boot: int = 1000, seed: int = 0,
               progress: bool = False, reference: tuple[str, Image.Image] | None = None) -> list[dict]:
    """One row per shift on index[indices]. The stain reference is the first image of the set, or
    `reference` given as (name, image)."""
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    imgs, keep, _ = _load([index.records[i] for i in indices])
    y = np.array([index.records[indices[k]].label for k in keep])
    g = [groups[k] for k in keep] if groups is not None else None
    rows = []
    for name in shifts:
        if progress:
            print(f"  {set_name}: {name}", flush=True)
        ref = reference[1] if reference else imgs[0]
        row = _row(bundle, pre, imgs, y, g, build_shift(name, ref), name, set_name, baseline, n_boot, seed)
        if name.startswith("stain_"):
            row["reference"] = reference[0] if reference else index.key(index.records[indices[keep[0]]])
        rows.append(row)
    return rows


def external_rows(bundle: ModelBundle, external: DatasetIndex, baseline=None, n_boot: int = 1000, seed: int = 0,
                  mapping: dict | None = None, shifts=("none",)) -> tuple[list[dict], str]:
    """Zero-shot accuracy on each lab of an external set (under each shift), classes mapped onto the
    model's by name."""
    mapped, cmap = map_classes(external, bundle.classes, mapping)
    rows = []
    for lab in sorted({lab_of(mapped, r) for r in mapped.records}):
        idx = [i for i, r in enumerate(mapped.records) if lab_of(mapped, r) == lab]
        rows += shift_rows(bundle, mapped, idx, None, list(shifts), f"{external.name}/{lab}", baseline, n_boot, seed)
    return rows, cmap.describe()


def write_robustness(rows: list[dict], out_dir: Path, title: str, notes: list[str]) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"title": title, "notes": notes, "rows": rows}
    (out_dir / "robustness.json").write_text(json.dumps(res, indent=1))
    (out_dir / "robustness.md").write_text("\n".join([f"# {title}", ""] + [f"- {n}" for n in notes] + [""]
                                                     + robustness_table(rows)) + "\n")
    return res


def robustness_table(rows: list[dict]) -> list[str]:
    """Markdown table lines (used by robustness.md and the model card)."""
    lines = [("| set | shift | n | accuracy [95% CI] | referred | accuracy on kept | error AUROC | median top p "
             "| colour baseline |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = f"{r['baseline_accuracy']:.3f}" if "baseline_accuracy" in r else "-"
        kept = f"{r['accuracy_on_kept']:.3f}" if "accuracy_on_kept" in r else "-"
        au = f"{r['auroc_errors']:.3f}" if "auroc_errors" in r else "-"
        lines.append(f"| {r['set']} | {r['shift']} | {r['n']} | {r['accuracy']:.3f} [{r['ci95'][0]:.3f}, "
                     f"{r['ci95'][1]:.3f}] | {r['referred']:.3f} | {kept} | {au} | {r['median_probability']:.3f} | {b} |")
    return lines


def evaluate_robustness(bundle: ModelBundle, index: DatasetIndex, split, shifts: list[str], out_dir: Path,
                        external: DatasetIndex | None = None, mapping: dict | None = None, n_boot: int = 1000,
                        seed: int = 0, progress: bool = True) -> dict:
    """Shift rows on the split's test side (group bootstrap), external rows, and the colour-histogram
    baseline fitted on the train side: robustness.json / .md in out_dir."""
    from leukodx.data.torch_dataset import ImageDataset
    from leukodx.evaluate.baseline import ColorHistogramClassifier

    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    train = ImageDataset(index.subset(split.indices(index, "train")), pre)
    baseline = ColorHistogramClassifier().fit(train.images.numpy(), train.labels.numpy())
    te = split.indices(index, "test")
    groups = split.groups_of(index, te)
    n_groups = len(set(groups))
    rows = shift_rows(bundle, index, te, groups, shifts, f"{index.name} test", baseline, n_boot, seed, progress)
    notes = [(f"Test side of the grouped split ({split.protocol.get('method')}, seed {split.protocol.get('seed')}): "
             f"{len(te)} images in {n_groups} groups; 95% CIs by bootstrap over groups."),
             ("Colour baseline: 8x8x8 RGB histogram + logistic regression fitted on the unshifted train side, "
             "scored on the same shifted images."),
             ("referred = share the model refers for any reason (low confidence, unfamiliar image, image checks); "
              "accuracy on kept = on the rest; error AUROC = how well the referral score separates errors from "
              "correct answers; shifts are defined in leukodx.transforms.shifts.")]
    if external is not None:
        ext_rows, described = external_rows(bundle, external, baseline, n_boot, seed, mapping)
        rows += ext_rows
        notes.append(f"{external.name}: other labs, zero-shot, never trained on; {described}; "
                     "95% CIs by bootstrap over images.")
    return write_robustness(rows, out_dir, f"Robustness of {bundle.arch} ({', '.join(bundle.classes)})", notes)
