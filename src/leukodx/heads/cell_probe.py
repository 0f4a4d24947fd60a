"""`not_a_cell` from the model's own features: is there a white cell in the image at all?

A field whose white cell is missing (cropped off, or a red-cell-only field) still shows red cells and
platelets, so the image checks (leukodx.heads.image_checks) pass it and the WBC model answered such
fields 'platelet' at a median probability of 0.98 (results/cell_removal.md). `CellProbe` is a logistic
regression on the pooled, unit-norm features the unfamiliar-image distance uses, fitted on validation
images as they are (a cell) against the same images with their cells painted out of the file (no
cell), each also under a few shifts. Its threshold flags `max_flagged` of the validation images that
hold a cell, scored out of fold, and is folded into the bias, so `decision_function > 0` means "no white cell".

In the network (heads.familiarity.FamiliarNet) a flagged image gets NO_CELL added to its distance
output: cosine distances lie in [0, 2], so the one output carries both signals, the ONNX file keeps
its two outputs, and an older reader still refers such an image (as unfamiliar). Referral asks the
probe only about images within the unfamiliar-image threshold: it learnt the training lab's cells, so
an unfamiliar image (another stain, another lab) is referred as `unfamiliar_image`, not as no cell.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

NO_CELL = 10.0  # added to the distance of an image without a white cell; far beyond any cosine distance (<= 2)


def split_distance(distance):
    """Distance output(s) -> (the k-NN distance, whether the probe found no white cell)."""
    d = np.asarray(distance, dtype=float)
    no_cell = d >= NO_CELL
    return np.where(no_cell, d - NO_CELL, d), no_cell


class CellProbe(BaseEstimator):
    """Features (N, D) of images, y = 1 where the image holds no white cell."""

    def __init__(self, max_flagged: float = 0.005, C: float = 0.01, folds: int = 5):
        self.max_flagged = max_flagged
        self.C = C
        self.folds = folds

    def fit(self, X: np.ndarray, y: np.ndarray, groups=None) -> CellProbe:
        """`groups`: the source image of each row (its shifted and painted copies share it); the threshold
        comes from out-of-fold scores, each image scored by a probe fitted without any copy of it (a
        threshold on the fitted rows themselves flags far fewer new cells than it promises)."""
        from sklearn.model_selection import GroupKFold

        if not 0 < self.max_flagged < 0.5:
            raise ValueError(f"max_flagged must be in (0, 0.5), got {self.max_flagged}")
        X, y = _unit(X), np.asarray(y).astype(int)
        if set(np.unique(y)) != {0, 1}:
            raise ValueError("the cell probe needs images with a cell (0) and without one (1)")
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        folds = min(self.folds, len(np.unique(groups)))
        if folds < 2:
            raise ValueError("the cell probe's out-of-fold threshold needs images from at least two groups")
        oof = np.zeros(len(y))
        for tr, te in GroupKFold(folds).split(X, y, groups):
            w, b = self._linear(X[tr], y[tr])
            oof[te] = X[te] @ w + b
        threshold = float(np.quantile(oof[y == 0], 1 - self.max_flagged))  # new images score like held-out ones
        w, b = self._linear(X, y)
        self.coef_, self.intercept_ = w.astype(np.float32), np.float32(b - threshold)
        self.flagged_with_cell_ = float((oof[y == 0] > threshold).mean())  # out of fold
        self.flagged_without_cell_ = float((oof[y == 1] > threshold).mean())
        return self

    def _linear(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Logistic regression on standardised features, the standardisation folded into the weights."""
        from sklearn.linear_model import LogisticRegression

        mu, sd = X.mean(0), X.std(0) + 1e-6
        lr = LogisticRegression(C=self.C, max_iter=5000).fit((X - mu) / sd, y)
        w = lr.coef_[0] / sd
        return w, float(lr.intercept_[0] - (w * mu).sum())

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return _unit(X) @ self.coef_ + self.intercept_

    def predict(self, X: np.ndarray) -> np.ndarray:
        """True where the image holds no white cell."""
        return self.decision_function(X) > 0

    def to_vector(self) -> np.ndarray:
        """Weights then bias, one float32 row: what the model file stores."""
        return np.r_[self.coef_, self.intercept_].astype(np.float32)


def _unit(X: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import normalize

    return normalize(np.asarray(X, dtype=np.float32))
