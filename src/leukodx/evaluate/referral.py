"""Refer uncertain cases: a confidence threshold chosen on validation data, and what it costs."""
from __future__ import annotations

import numpy as np


def choose_threshold(conf: np.ndarray, correct: np.ndarray, target_accuracy: float = 0.99) -> float:
    """Lowest threshold at which the cases kept (confidence >= t) reach `target_accuracy`.
    If no threshold reaches it, the one with the best accuracy on what it keeps."""
    order = np.argsort(-conf)
    c, ok = conf[order], correct[order].astype(float)
    kept_acc = np.cumsum(ok) / np.arange(1, len(ok) + 1)
    reach = np.nonzero(kept_acc >= target_accuracy)[0]
    if len(reach):
        return float(c[reach[-1]])
    return float(c[int(np.argmax(kept_acc))]) if len(c) else 1.0


def coverage_at(conf: np.ndarray, correct: np.ndarray, threshold: float) -> dict:
    keep = conf >= threshold
    return {"threshold": float(threshold), "coverage": float(keep.mean()) if len(keep) else 0.0,
            "accuracy_on_kept": float(correct[keep].mean()) if keep.any() else float("nan"),
            "n_referred": int((~keep).sum())}
