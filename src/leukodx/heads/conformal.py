"""Split-conformal prediction sets (LAC, Sadinle et al. 2019): the classes whose calibrated
probability is at least 1 - q, with q fitted on validation data so that the set holds the true class
for at least (1 - alpha) of cells from the same distribution. The guarantee does not carry over to
other labs' images: the shift tables measure how far coverage falls there."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator


class ConformalSets(BaseEstimator):
    def __init__(self, alpha: float = 0.01):
        self.alpha = alpha

    def fit(self, probs: np.ndarray, y: np.ndarray) -> ConformalSets:
        scores = 1.0 - np.asarray(probs)[np.arange(len(y)), np.asarray(y)]
        n = len(scores)
        level = min(1.0, np.ceil((n + 1) * (1 - self.alpha)) / n)
        self.qhat_ = float(np.quantile(scores, level, method="higher"))
        return self

    def predict_set(self, probs: np.ndarray) -> np.ndarray:
        """Boolean (N, C): class c is in the set of cell i. Never empty: the top class is always in."""
        probs = np.asarray(probs)
        member = probs >= 1.0 - self.qhat_
        member[np.arange(len(probs)), np.nan_to_num(probs, nan=-1).argmax(1)] = True
        return member
