"""XGBoost classifier over deep features, scikit-learn style (XIncept-ALL stage 2).
Saved as XGBoost's own JSON text, so a model file stays loadable with weights_only=True."""
from __future__ import annotations

import numpy as np

from leukodx.errors import LeukodxError


class XGBoostHead:
    def __init__(self, n_estimators: int = 600, max_depth: int = 4, learning_rate: float = 0.05,
                 subsample: float = 0.8, colsample_bytree: float = 0.5, early_stopping_rounds: int = 40,
                 seed: int = 0, n_jobs: int = 2):
        self.params = {"n_estimators": n_estimators, "max_depth": max_depth, "learning_rate": learning_rate,
                       "subsample": subsample, "colsample_bytree": colsample_bytree, "random_state": seed,
                       "n_jobs": n_jobs, "tree_method": "hist", "eval_metric": "mlogloss"}
        self.early_stopping_rounds = early_stopping_rounds
        self.model_ = None

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None):
        from xgboost import XGBClassifier

        stop = self.early_stopping_rounds if X_val is not None else None
        self.model_ = XGBClassifier(objective="multi:softprob", early_stopping_rounds=stop, **self.params)
        eval_set = [(X_val, y_val)] if X_val is not None else None
        self.model_.fit(np.asarray(X, np.float32), np.asarray(y), eval_set=eval_set, verbose=False)
        return self

    @property
    def best_iteration(self) -> int | None:
        return getattr(self.model_, "best_iteration", None)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.model_ is None:
            raise LeukodxError("XGBoostHead is not fitted")
        return self.model_.predict_proba(np.asarray(X, np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)

    def to_json(self) -> str:
        return bytes(self.model_.get_booster().save_raw("json")).decode()

    @classmethod
    def from_json(cls, text: str) -> XGBoostHead:
        from xgboost import XGBClassifier

        head = cls()
        head.model_ = XGBClassifier()
        head.model_.load_model(bytearray(text.encode()))
        return head
