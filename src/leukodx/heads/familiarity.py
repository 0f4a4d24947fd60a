"""How unfamiliar an image is to a model: cosine distance of its pooled features to the nearest
training images' features (k-NN, Sun et al. 2022). Chosen by measurement over max-softmax, energy,
Mahalanobis and PCA-residual scores (benchmarks/referral_scores.py): it separates other labs'
cells, blank and noise images from the model's own test images best.

`KNNDistance` is a scikit-learn style estimator on features; `FamiliarNet` wraps a network so one
forward pass gives logits and the distance (the same graph goes into the ONNX file), with NO_CELL added
where the model's cell probe (leukodx.heads.cell_probe) finds no white cell.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator

from leukodx.heads.cell_probe import NO_CELL
from leukodx.transforms.views import dihedral_views


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distance(X: np.ndarray, reference: np.ndarray, k: int, groups=None, reference_groups=None) -> np.ndarray:
    """1 - mean cosine similarity of each row of X to its k nearest unit-norm reference rows; with
    `groups`, a row never counts reference rows of its own group (cross-fitting)."""
    sims = _unit(np.asarray(X, dtype=np.float32)) @ np.asarray(reference, dtype=np.float32).T
    if groups is not None:
        sims[np.asarray(groups)[:, None] == np.asarray(reference_groups)[None, :]] = -np.inf
    k = min(k, sims.shape[1])
    return 1.0 - np.sort(sims, axis=1)[:, -k:].mean(1)


class KNNDistance(BaseEstimator):
    """1 - mean cosine similarity to the k nearest of `n_reference` reference features, drawn
    evenly over classes from the training side."""

    def __init__(self, n_reference: int = 1000, k: int = 5, random_state: int = 0):
        self.n_reference = n_reference
        self.k = k
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> KNNDistance:
        X = np.asarray(X, dtype=np.float32)
        rng = np.random.default_rng(self.random_state)
        y = np.zeros(len(X), int) if y is None else np.asarray(y)
        per = max(1, self.n_reference // len(np.unique(y)))
        pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per] for c in np.unique(y)])
        self.reference_index_ = np.sort(pick)
        self.reference_ = _unit(X[self.reference_index_]).astype(np.float32)
        return self

    def distance(self, X: np.ndarray) -> np.ndarray:
        return knn_distance(X, self.reference_, self.k)

    def cross_fitted_distance(self, X: np.ndarray, groups) -> np.ndarray:
        """Distances of the fitting features X themselves, each scored without the reference rows of
        its own group (slide / patient): how far a new group lies, estimated from every training group."""
        groups = np.asarray(groups)
        return knn_distance(X, self.reference_, self.k, groups, groups[self.reference_index_])


class FamiliarNet(torch.nn.Module):
    """network -> (logits, distance). Without a reference the distance is 0 (nothing is unfamiliar).
    With `views` > 1 each image is seen as that many quarter turns / mirror images in one batch, and
    logits and pooled features are their means (test-time augmentation inside the graph). With a
    `cell_probe` (weights then bias, heads.cell_probe.CellProbe.to_vector) NO_CELL is added to the
    distance of each image it finds without a white cell."""

    def __init__(self, model: torch.nn.Module, reference: torch.Tensor | None, k: int = 5, views: int = 1,
                 cell_probe: torch.Tensor | None = None):
        super().__init__()
        self.model = model
        self.k = int(k)
        self.views = int(views)
        self.register_buffer("reference", reference if reference is not None else torch.zeros(0, 1))
        self.register_buffer("cell_probe", cell_probe if cell_probe is not None else torch.zeros(0))

    def _mean(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.views == 1 else y.reshape(self.views, -1, y.shape[-1]).mean(0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        if self.views > 1:
            x = torch.cat(dihedral_views(x, self.views))
        if self.reference.shape[0] == 0 and self.cell_probe.shape[0] == 0:
            logits = self._mean(self.model(x))
            return logits, torch.zeros(n, dtype=logits.dtype, device=x.device)
        fmap = self.model.forward_features(x)
        logits = self._mean(self.model.forward_head(fmap))
        f = torch.nn.functional.normalize(self._mean(self.model.forward_head(fmap, pre_logits=True)).float(), dim=1)
        if self.reference.shape[0] == 0:
            dist = torch.zeros(n, dtype=f.dtype, device=x.device)
        else:
            sims = f @ self.reference.float().T
            dist = 1.0 - sims.topk(min(self.k, sims.shape[1]), dim=1).values.mean(1)
        if self.cell_probe.shape[0]:
            no_cell = (f @ self.cell_probe[:-1].float() + self.cell_probe[-1].float()) > 0
            dist = dist + NO_CELL * no_cell.to(dist.dtype)
        return logits, dist
