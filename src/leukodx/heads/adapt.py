"""Few-shot adaptation to a new lab: refit a linear classifier on frozen pooled features, pulled
towards the model's own head (an L2 prior), so 5-50 cells per class move it without erasing what it
knows; a class the lab gave no cells for is lowered on every cell shown, or, where the lab names it (`keep`),
keeps the source head's row. Plus self-training on the lab's
unlabelled cells, re-estimating batch-norm statistics on the lab's images (AdaBN, Li et al. 2016), or
fine-tuning every weight on them."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from leukodx.heads.temperature import softmax


class PriorLinearHead(BaseEstimator, ClassifierMixin):
    """Multinomial logistic regression with weights shrunk towards (weight0, bias0).

    `prior` scales the penalty `prior * (||W - W0||^2 + ||b - b0||^2)` against the mean cross-entropy.
    Every row is fitted, so a class absent from y is lowered on every cell shown (the source's classes a lab does
    not have stay off its cells); `keep`: class indices left out of the loss while absent from y, their rows staying
    at the prior (classes the lab sees but gave no cells for)."""

    def __init__(self, weight0: np.ndarray, bias0: np.ndarray, prior: float = 1e-3, max_iter: int = 100,
                 keep: tuple = ()):
        self.weight0 = weight0
        self.bias0 = bias0
        self.prior = prior
        self.max_iter = max_iter
        self.keep = keep

    def fit(self, X: np.ndarray, y: np.ndarray) -> PriorLinearHead:
        x = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        t = torch.as_tensor(np.asarray(y), dtype=torch.long)
        w0 = torch.as_tensor(np.asarray(self.weight0), dtype=torch.float32)
        b0 = torch.as_tensor(np.asarray(self.bias0), dtype=torch.float32)
        w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, line_search_fn="strong_wolfe")
        kept = set(self.keep) - set(t.tolist())
        fitted = torch.tensor([c for c in range(len(b0)) if c not in kept])
        target = torch.searchsorted(fitted, t)  # class index -> its place among the fitted classes

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy((x @ w.T + b)[:, fitted], target) + \
                self.prior * (((w - w0) ** 2).sum() + ((b - b0) ** 2).sum())
            loss.backward()
            return loss

        opt.step(closure)
        self.coef_, self.intercept_ = w.detach().numpy(), b.detach().numpy()
        self.classes_ = np.arange(len(self.intercept_))
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return np.asarray(X, dtype=np.float32) @ self.coef_.T + self.intercept_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return softmax(self.decision_function(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(1)


def spread_labels(labelled: np.ndarray, labels: np.ndarray, unlabelled: np.ndarray, neighbours: int = 7) -> np.ndarray:
    """The label each unlabelled cell gets from its lab's own neighbourhoods: sklearn's LabelSpreading (k-NN graph
    over the labelled and unlabelled cells' features, standardised and unit length; alpha 0.2)."""
    from sklearn.semi_supervised import LabelSpreading

    x = np.concatenate([labelled, unlabelled]).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    x /= np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    k = int(min(neighbours, len(x) - 1))
    spread = LabelSpreading(kernel="knn", n_neighbors=k, alpha=0.2).fit(x, np.r_[labels, -np.ones(len(unlabelled), int)])
    return spread.transduction_[len(labelled):]


def self_train(fit, labelled: list[np.ndarray], labels: np.ndarray, unlabelled: list[np.ndarray],
               threshold: float = 0.95, rounds: int = 3, neighbours: int = 7):
    """Self-training on a lab's unlabelled cells: `fit(X, y)` -> head; `labelled` / `unlabelled` hold one
    feature array per view of the same cells. Each round, an unlabelled cell whose view-averaged
    probability is at least `threshold` for a class the labelled cells show joins the fit with that
    label (all its views), if label spreading over the lab's cells (`spread_labels`, `neighbours` > 0) gives it
    the same label: a confident answer its look-alikes in the lab disagree with is not learnt from.
    A cell's confidence is judged over its views together, which sklearn's SelfTrainingClassifier
    (one row at a time) cannot do. Returns (head, cells pseudo-labelled)."""
    shown = np.unique(labels)
    agree = (spread_labels(np.mean(labelled, 0), labels, np.mean(unlabelled, 0), neighbours) if neighbours
             else None)
    head, n = fit(np.concatenate(labelled), np.tile(labels, len(labelled))), 0
    for _ in range(rounds):
        p = np.mean([head.predict_proba(u) for u in unlabelled], 0)
        keep = (p.max(1) >= threshold) & np.isin(p.argmax(1), shown)
        if agree is not None:
            keep &= p.argmax(1) == agree
        n = int(keep.sum())
        y = np.concatenate([labels, p.argmax(1)[keep]])
        head = fit(np.concatenate([np.concatenate([f, u[keep]]) for f, u in zip(labelled, unlabelled)]),
                   np.tile(y, len(labelled)))
    return head, n


@torch.no_grad()
def adapt_batchnorm(model: torch.nn.Module, batches) -> int:
    """Re-estimate every BatchNorm's running mean / variance from `batches` (normalised inputs);
    weights are untouched. Returns how many layers were updated."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for x in batches:
        model(x)
    model.eval()
    return len(bns)


def finetune_network(model: torch.nn.Module, x: torch.Tensor, labels: np.ndarray, steps: int = 120,
                     lr: float = 3e-4, batch_size: int = 64, seed: int = 0) -> int:
    """Every weight learns from the lab's cells (normalised inputs `x`): AdamW, cosine from `lr` over
    `steps`, each step a batch of cells in one random quarter turn / mirror view. Batch-norm statistics
    stay frozen (a few dozen cells cannot re-estimate them). Returns the steps taken."""
    from leukodx.transforms.views import dihedral_views

    g = torch.Generator().manual_seed(seed)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    for _ in range(steps):
        idx = torch.randperm(len(y), generator=g)[:batch_size]
        view = int(torch.randint(8, (1,), generator=g))
        loss = torch.nn.functional.cross_entropy(model(dihedral_views(x[idx], 8)[view].contiguous()), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return steps
