"""The heads are real scikit-learn estimators: clonable, parameters round-trip, fitted attributes
appear only in fit, and an unfitted head refuses to predict."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from leukodx.evaluate.baseline import ColorHistogramClassifier
from leukodx.heads.adapt import PriorLinearHead
from leukodx.heads.temperature import TemperatureScaler
from leukodx.heads.xgboost_head import XGBoostHead

rng = np.random.default_rng(0)
Y = np.repeat([0, 1, 2], 40)
FEATS = rng.normal(0, 1, (120, 6)) + Y[:, None]
LOGITS = rng.normal(0, 1, (120, 3)) + 3 * np.eye(3)[Y]
IMAGES = np.stack([np.full((3, 8, 8), 60 + 60 * c, np.uint8) for c in Y]) + rng.integers(0, 20, (120, 3, 8, 8)).astype(np.uint8)

CASES = [
    (TemperatureScaler(max_iter=50), LOGITS),
    (XGBoostHead(n_estimators=20, seed=1), FEATS),
    (ColorHistogramClassifier(bins=4), IMAGES),
    (PriorLinearHead(np.zeros((3, 6)), np.zeros(3), prior=1e-2), FEATS),
]


@pytest.mark.parametrize("est,X", CASES, ids=lambda c: type(c).__name__ if not isinstance(c, np.ndarray) else "")
def test_head_is_a_sklearn_estimator(est, X):
    copy = clone(est)
    assert copy.get_params().keys() == est.get_params().keys()
    assert not [a for a in vars(copy) if a.endswith("_") and not a.startswith("_")], "fitted attributes before fit"
    with pytest.raises(NotFittedError):
        copy.predict_proba(X)
    fitted = copy.fit(X, Y)
    assert fitted is copy
    p = copy.predict_proba(X)
    assert p.shape == (len(X), 3) and np.allclose(p.sum(1), 1)
    assert list(copy.classes_) == [0, 1, 2]
    assert (copy.predict(X) == Y).mean() > 0.8
