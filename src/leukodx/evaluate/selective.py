"""Selective prediction: what the referral rule buys. Risk-coverage curve and its area (AURC,
lower is better), accuracy on the cases kept, AUROC of the referral score for telling errors from
correct answers, and how many cases each reason referred."""
from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.metrics import roc_auc_score

from leukodx.heads.image_checks import image_problem
from leukodx.heads.referral import Referral

COVERAGES = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def risk_coverage(score: np.ndarray, correct: np.ndarray) -> dict:
    """Keep cases in order of increasing referral score; risk = error rate among those kept."""
    score, correct = np.asarray(score, float), np.asarray(correct, bool)
    n = len(score)
    if n == 0:
        return {"aurc": float("nan"), "auroc_errors": float("nan"), "accuracy_at_coverage": {}}
    order = np.argsort(np.nan_to_num(score, nan=np.inf, posinf=np.finfo(float).max), kind="stable")
    errors = np.cumsum(~correct[order])
    risk = errors / np.arange(1, n + 1)
    at = {f"{c:.2f}": float(1 - risk[max(0, int(np.ceil(c * n)) - 1)]) for c in COVERAGES}
    both = 0 < correct.sum() < n
    auroc = float(roc_auc_score(~correct, np.nan_to_num(score, nan=1e300, posinf=1e300))) if both else float("nan")
    return {"aurc": float(risk.mean()), "auroc_errors": auroc, "accuracy_at_coverage": at}


def selective_summary(probs: np.ndarray, y: np.ndarray, distance: np.ndarray, referral: Referral,
                      images: np.ndarray | None = None, conformal=None, expected_share=None) -> dict:
    """Referral as the model applies it (reasons, with image checks when `images` (N, S, S, 3) are
    given), the risk-coverage view of its score, and with `conformal` the sets' coverage and size.
    `expected_share`: where `probs` were limited to a lab's expected classes (leukodx.heads.expected)."""
    probs, y = np.asarray(probs), np.asarray(y)
    problems = [image_problem(a) for a in images] if images is not None else None
    reasons = referral.reasons(probs, distance, problems, expected_share)
    refer = np.array([r is not None for r in reasons], bool)
    correct = np.nan_to_num(probs, nan=-1).argmax(1) == y
    score = referral.score(probs, distance, expected_share)
    if problems is not None:
        score = np.where([p is not None for p in problems], np.inf, score)
    sets = {}
    if conformal is not None and len(y):
        member = conformal.predict_set(probs)
        sets = {"set_coverage": float(member[np.arange(len(y)), y].mean()), "mean_set_size": float(member.sum(1).mean()),
                "set_target": 1 - conformal.alpha}
    return {**sets, "referred": float(refer.mean()) if len(refer) else 0.0,
            "accuracy_on_kept": float(correct[~refer].mean()) if (~refer).any() else float("nan"),
            "n_kept": int((~refer).sum()), "reasons": dict(Counter(r for r in reasons if r)),
            **risk_coverage(score, correct)}
