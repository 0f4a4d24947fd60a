"""XGBoost classifier over deep features, a scikit-learn estimator (XIncept-ALL stage 2).
Saved as XGBoost's own JSON text, so a model file stays loadable with weights_only=True."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted


class XGBoostHead(BaseEstimator, ClassifierMixin):
    def __init__(self, n_estimators: int = 600, max_depth: int = 4, learning_rate: float = 0.05,
                 subsample: float = 0.8, colsample_bytree: float = 0.5, early_stopping_rounds: int = 40,
                 seed: int = 0, n_jobs: int = 2):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.early_stopping_rounds = early_stopping_rounds
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray | None = None, y_val: np.ndarray | None = None):
        """Early stopping on (X_val, y_val) when given."""
        from xgboost import XGBClassifier

        self.model_ = XGBClassifier(
            objective="multi:softprob", n_estimators=self.n_estimators, max_depth=self.max_depth,
            learning_rate=self.learning_rate, subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            early_stopping_rounds=self.early_stopping_rounds if X_val is not None else None,
            random_state=self.seed, n_jobs=self.n_jobs, tree_method="hist", eval_metric="mlogloss")
        eval_set = [(np.asarray(X_val, np.float32), np.asarray(y_val))] if X_val is not None else None
        self.model_.fit(np.asarray(X, np.float32), np.asarray(y), eval_set=eval_set, verbose=False)
        self.classes_ = np.unique(y)
        return self

    @property
    def best_iteration(self) -> int | None:
        return getattr(getattr(self, "model_", None), "best_iteration", None)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(np.asarray(X, np.float32))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba(X).argmax(1)

    def to_json(self) -> str:
        check_is_fitted(self, "model_")
        return bytes(self.model_.get_booster().save_raw("json")).decode()

    @classmethod
    def from_json(cls, text: str) -> XGBoostHead:
        from xgboost import XGBClassifier

        head = cls()
        head.model_ = XGBClassifier()
        head.model_.load_model(bytearray(text.encode()))
        head.classes_ = np.arange(head.model_.n_classes_)
        return head
