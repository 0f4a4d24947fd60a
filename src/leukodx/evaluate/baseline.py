"""Colour-histogram baseline: how far colour alone gets (the shortcut every model must beat)."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted


def color_histograms(images_uint8: np.ndarray, bins: int = 8) -> np.ndarray:
    """images (N, 3, H, W) uint8 -> (N, bins**3) normalised joint RGB histograms."""
    q = (images_uint8.astype(np.int64) * bins) // 256
    codes = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    flat = codes.reshape(len(codes), -1)
    hist = np.stack([np.bincount(row, minlength=bins ** 3) for row in flat]).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


class ColorHistogramClassifier(BaseEstimator, ClassifierMixin):
    """A scikit-learn estimator on uint8 image arrays (N, 3, H, W): joint RGB histogram -> logistic regression."""

    def __init__(self, bins: int = 8, C: float = 1.0):
        self.bins = bins
        self.C = C

    def fit(self, images: np.ndarray, y: np.ndarray) -> ColorHistogramClassifier:
        self.clf_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.clf_.fit(color_histograms(images, self.bins), y)
        self.classes_ = self.clf_.classes_
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "clf_")
        return self.clf_.predict_proba(color_histograms(images, self.bins))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.predict_proba(images).argmax(axis=1)
