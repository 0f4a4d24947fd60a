"""Expected calibration error and the reliability table behind its diagram."""
from __future__ import annotations

import numpy as np


def reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins) / np.maximum(count, 1)
    mean_conf = np.bincount(bins, weights=conf, minlength=n_bins) / np.maximum(count, 1)
    return {"edges": edges.tolist(), "count": count.tolist(), "accuracy": acc.tolist(), "confidence": mean_conf.tolist()}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
    r = reliability(probs, y, n_bins)
    count = np.array(r["count"])
    gap = np.abs(np.array(r["accuracy"]) - np.array(r["confidence"]))
    return float((count * gap).sum() / max(count.sum(), 1))
