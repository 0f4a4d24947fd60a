"""Referral with a reason: which answers a person must check, and why.

Reasons, most serious first: `invalid_output` (NaN / infinite probabilities), `unreadable` (blank or
burnt-out image), `not_a_cell` (no stained object; or, for an image that is not unfamiliar, no white cell
by the model's cell probe: leukodx.heads.cell_probe), `unfamiliar_image` (pooled features far from every
training image: another lab, another kind of picture), `unexpected_class` (most of the probability on
classes the lab said its images do not hold: leukodx.heads.expected), `low_confidence` (top probability
under the threshold). Thresholds are fitted on validation data only and travel in the model file and the
ONNX metadata, so both predictors answer alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leukodx.heads.cell_probe import split_distance
from leukodx.heads.expected import UNEXPECTED_MASS

REASONS = ("invalid_output", "unreadable", "not_a_cell", "unfamiliar_image", "unexpected_class", "low_confidence")
SHIFT_EXPECTED = 0.05  # unfamiliar share of a batch that raises no flag: the threshold refers 2% of val, plus room
SHIFT_ALPHA = 0.001    # one-sided binomial test level of the lab-shift flag
DOUBT_SCALE = 0.999    # keeps the kept cases' score, 1 - top probability scaled by it, below 1


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


@dataclass
class Referral:
    confidence: float = 0.0          # refer when the top probability is below this
    unfamiliar: float = float("inf")  # refer when the feature distance is above this

    def __post_init__(self):
        if not (np.isfinite(self.confidence) and 0.0 <= self.confidence <= 1.0):
            raise ValueError(f"referral confidence threshold must be in [0, 1], got {self.confidence}")
        if np.isnan(self.unfamiliar) or self.unfamiliar <= 0:
            raise ValueError(f"unfamiliar-image threshold must be positive, got {self.unfamiliar}")

    def score(self, probs: np.ndarray, distance: np.ndarray, expected_share: np.ndarray | None = None) -> np.ndarray:
        """One number per case, >= 1 exactly when a threshold refers it (NaN outputs: infinity): the referred
        cases first, then, among the referred and among the kept, the least confident answer first
        (1 - top probability). Sorting by it gives the risk-coverage curve of the rule the model applies, read
        in the order a person would check. Ordering each group by the larger threshold ratio instead (the score
        before 2026-12-06) makes the same decisions and ranks errors worse: on other labs' cells the feature
        distance says little about which answers are wrong (results/referral_learned.md)."""
        probs, distance = np.asarray(probs, float), np.asarray(distance, float)
        p = probs.max(1)
        refer = self.ratio(probs, distance, expected_share) >= 1
        bad = ~np.isfinite(probs).all(1) | ~np.isfinite(distance)
        return np.where(bad, np.inf, refer + DOUBT_SCALE * (1 - p))

    def ratio(self, probs: np.ndarray, distance: np.ndarray, expected_share: np.ndarray | None = None) -> np.ndarray:
        """The largest of each threshold's ratio (1 - top p over 1 - its threshold, distance over its threshold,
        and for limited answers the expected share's): >= 1 exactly when a threshold refers the case."""
        p = np.asarray(probs, float).max(1)
        s = np.maximum((1 - p) / max(1 - self.confidence, 1e-9), np.asarray(distance, float) / self.unfamiliar)
        if expected_share is not None:
            with np.errstate(divide="ignore"):
                s = np.maximum(s, UNEXPECTED_MASS / np.asarray(expected_share, float))
        return s

    def reasons(self, probs: np.ndarray, distance: np.ndarray, problems=None,
                expected_share: np.ndarray | None = None) -> list[str | None]:
        """A reason per case, or None when the answer can stand. `problems` are per-image findings
        ('unreadable' / 'not_a_cell' / None) from leukodx.heads.image_checks; `expected_share` is the
        share of the probability the lab's expected classes held (leukodx.heads.expected), where the
        answer was limited to them."""
        probs, distance = np.asarray(probs, float), np.asarray(distance, float)
        problems = problems if problems is not None else [None] * len(probs)
        share = np.ones(len(probs)) if expected_share is None else np.asarray(expected_share, float)
        knn, no_cell = split_distance(distance)
        out = []
        for p, d, empty, prob, s in zip(probs, knn, no_cell, problems, share):
            if not (np.isfinite(p).all() and np.isfinite(d)):
                out.append("invalid_output")
            elif prob:
                out.append(prob)
            elif d > self.unfamiliar:
                out.append("unfamiliar_image")
            elif empty:  # the cell probe (heads.cell_probe) speaks for images like the training lab's only
                out.append("not_a_cell")
            elif s < UNEXPECTED_MASS:
                out.append("unexpected_class")
            elif p.max() < self.confidence:
                out.append("low_confidence")
            else:
                out.append(None)
        return out

    def to_dict(self) -> dict:
        return {"confidence": float(self.confidence), "unfamiliar": float(self.unfamiliar)}


def fit_referral(val_probs: np.ndarray, val_y: np.ndarray, val_distance: np.ndarray,
                 target_accuracy: float = 0.99, unfamiliar_rate: float = 0.02,
                 more_distances: np.ndarray | None = None, shifted=()) -> Referral:
    """Unfamiliar threshold: the (1 - unfamiliar_rate) quantile of validation distances, pooled with
    `more_distances` (cross-fitted training distances: more slides than the validation side holds);
    then the confidence threshold at which the validation cases it keeps reach `target_accuracy`, pooled
    with `shifted`: (probs, labels, distances) of shifted validation copies, for a validation side with
    too few errors to place it (they do not move the unfamiliar threshold)."""
    pooled = np.asarray(val_distance, float)
    if more_distances is not None:
        more = np.asarray(more_distances, float)
        pooled = np.concatenate([pooled, more[np.isfinite(more)]])
    unfamiliar = float(np.quantile(pooled, 1 - unfamiliar_rate)) if unfamiliar_rate > 0 else float("inf")
    probs = np.concatenate([np.asarray(val_probs, float)] + [np.asarray(p, float) for p, _, _ in shifted])
    y = np.concatenate([np.asarray(val_y)] + [np.asarray(t) for _, t, _ in shifted])
    dist = np.concatenate([np.asarray(val_distance, float)] + [np.asarray(d, float) for _, _, d in shifted])
    keep = dist <= unfamiliar
    conf = choose_threshold(probs[keep].max(1), probs[keep].argmax(1) == y[keep], target_accuracy)
    return Referral(conf, max(unfamiliar, 1e-6))


def lab_shift_flag(reasons: list[str | None], expected: float = SHIFT_EXPECTED, alpha: float = SHIFT_ALPHA,
                   noun: str = "images") -> str | None:
    """A warning for a batch of images (a folder, a case, a smear), or None. When significantly more than
    `expected` of them are unfamiliar (one-sided exact binomial test at level `alpha`), they probably come
    from a lab, stain or microscope the model has not learned, and its answers that were not referred
    are doubtful too (results/lab_shift_flag.md measures how often it fires on other labs and shifts)."""
    from scipy.stats import binomtest

    n, k = len(reasons), sum(r == "unfamiliar_image" for r in reasons)
    if n == 0 or k == 0 or binomtest(k, n, expected, alternative="greater").pvalue >= alpha:
        return None
    return (f"{k} of {n} {noun} ({100 * k / n:.0f}%) look unlike the model's training images (expected at most "
            f"{100 * expected:.0f}%): they probably come from another lab, stain or microscope, and the answers "
            "not referred are doubtful too. Check a labelled sample (leukodx evaluate) or adapt the model to "
            "these images (leukodx adapt).")
