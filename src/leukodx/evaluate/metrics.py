"""Classification metrics with bootstrap 95% confidence intervals.

When group ids are given (slides, duplicate groups), the bootstrap resamples whole groups, so
the interval reflects how many independent sources the test set really has.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
)


def _auc(y: np.ndarray, probs: np.ndarray, k: int) -> float:
    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    if k == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    if len(present) < k:  # a bootstrap sample without some class: average over present classes
        return float(np.mean([roc_auc_score(y == c, probs[:, c]) for c in present]))
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def point_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes missing from a bootstrap sample are expected
        return _point_metrics(y, probs, k)


def _point_metrics(y: np.ndarray, probs: np.ndarray, k: int) -> dict:
    pred = probs.argmax(axis=1)
    labels = list(range(k))
    cm = confusion_matrix(y, pred, labels=labels)
    tp = np.diag(cm).astype(float)
    fn, fp = cm.sum(1) - tp, cm.sum(0) - tp
    tn = cm.sum() - tp - fn - fp
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    present = np.isin(labels, y)  # macro averages over classes present in y (bootstrap samples may lack one)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_precision": float(p[present].mean()), "macro_recall": float(r[present].mean()),
        "macro_f1": float(f[present].mean()),
        "mcc": float(matthews_corrcoef(y, pred)),
        "roc_auc": _auc(y, probs, k),
        "per_class": {"precision": p.tolist(), "recall_sensitivity": r.tolist(), "specificity": spec.tolist(),
                      "f1": f.tolist(), "support": s.tolist()},
        "confusion_matrix": cm.tolist(),
    }


SCALARS = ("accuracy", "balanced_accuracy", "macro_precision", "macro_recall", "macro_f1", "mcc", "roc_auc")


def bootstrap_ci(y: np.ndarray, probs: np.ndarray, k: int, groups=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """95% percentile intervals for the scalar metrics and per-class sensitivity / specificity."""
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([i]) for i in range(len(y))]
    else:
        g = np.asarray(groups)
        units = [np.nonzero(g == u)[0] for u in np.unique(g)]
    samples = {m: [] for m in SCALARS}
    sens, spec = [], []
    for _ in range(n_boot):
        pick = np.concatenate([units[i] for i in rng.integers(0, len(units), len(units))])
        m = point_metrics(y[pick], probs[pick], k)
        for name in SCALARS:
            samples[name].append(m[name])
        sens.append(m["per_class"]["recall_sensitivity"])
        spec.append(m["per_class"]["specificity"])

    def ci(vals):
        v = np.asarray(vals, dtype=float)
        v = v[~np.isnan(v)] if v.ndim == 1 else v
        return [float(np.nanpercentile(v, 2.5, axis=0)), float(np.nanpercentile(v, 97.5, axis=0))] if v.ndim == 1 \
            else np.nanpercentile(v, [2.5, 97.5], axis=0).T.tolist()

    out = {name: ci(samples[name]) for name in SCALARS}
    out["per_class_sensitivity"] = ci(np.array(sens, dtype=float))
    out["per_class_specificity"] = ci(np.array(spec, dtype=float))
    out["method"] = f"percentile bootstrap, {n_boot} resamples of " + ("groups" if groups is not None else "images")
    out["n_units"] = len(units)
    return out


def compute_metrics(y, probs, classes: list[str], groups=None, n_boot: int = 1000, seed: int = 0) -> dict:
    y, probs = np.asarray(y), np.asarray(probs, dtype=float)
    k = len(classes)
    out = {"n": len(y), "classes": list(classes), **point_metrics(y, probs, k)}
    if n_boot > 0:
        out["ci95"] = bootstrap_ci(y, probs, k, groups, n_boot, seed)
    return out
