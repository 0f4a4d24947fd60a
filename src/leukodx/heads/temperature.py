"""Temperature scaling (Guo et al. 2017) as a scikit-learn-style estimator over logits."""
from __future__ import annotations

import numpy as np
import torch


class TemperatureScaler:
    """One scalar T fitted on validation logits by minimising the negative log-likelihood.

    T is kept in [0.5, 20]: on (nearly) separable validation data the NLL keeps falling as
    T -> 0, and sharpening that far would make the rare wrong answer look certain.
    """
    T_MIN, T_MAX = 0.5, 20.0

    def __init__(self, max_iter: int = 200):
        self.max_iter = max_iter
        self.temperature_ = 1.0

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
        return self

    def predict_proba(self, logits: np.ndarray) -> np.ndarray:
        z = np.asarray(logits, dtype=np.float64) / self.temperature_
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits).argmax(axis=1)
