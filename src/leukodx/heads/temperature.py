"""Temperature scaling (Guo et al. 2017): a scikit-learn estimator over logits."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature, in float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class TemperatureScaler(BaseEstimator, ClassifierMixin):
    """One scalar T fitted on validation logits by minimising the negative log-likelihood.

    T is kept in [0.5, 20]: on (nearly) separable validation data the NLL keeps falling as
    T -> 0, and sharpening that far would make the rare wrong answer look certain.
    """
    T_MIN, T_MAX = 0.5, 20.0

    def __init__(self, max_iter: int = 200):
        self.max_iter = max_iter

    def fit(self, logits: np.ndarray, y: np.ndarray) -> TemperatureScaler:
        z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
        t = torch.as_tensor(np.asarray(y), dtype=torch.long)
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
            loss.backward()
            return loss

        opt.step(closure)
        self.temperature_ = float(np.clip(log_t.exp().item(), self.T_MIN, self.T_MAX))
        self.classes_ = np.arange(z.shape[1])
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "temperature_")
        return softmax(logits, self.temperature_)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits).argmax(axis=1)
