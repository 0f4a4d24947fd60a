"""Fit a model's referral on its own data: reference features from the train side (for the
unfamiliar-image distance), then both thresholds on the validation side (leukodx.heads.referral)."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.heads.conformal import ConformalSets
from leukodx.heads.familiarity import KNNDistance
from leukodx.heads.referral import fit_referral
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.transforms.preprocess import PreprocessConfig


def fit_bundle_referral(bundle: ModelBundle, train_images: torch.Tensor, train_labels: np.ndarray,
                        val_images: torch.Tensor, val_labels: np.ndarray, target_accuracy: float = 0.99,
                        unfamiliar_rate: float = 0.02, n_reference: int = 1000, seed: int = 0,
                        train_groups: list[str] | None = None, shifted_val=()) -> dict:
    """Sets bundle.reference / unfamiliar_threshold / refer_threshold in place; returns what it fitted.

    With `train_groups` (slides / patients, groups of more than one image at the median), the unfamiliar
    threshold is also fitted on training images scored without their own group's reference rows: a
    validation side of a dozen slides misses the odd slide that a test side holds (results/
    all_severity_robustness.md). With one image per group (no patient ids) that would score images the
    network has learned, so the validation side is used alone. `shifted_val`: (shift name, images, labels)
    of shifted validation copies (leukodx.evaluate.robustness.shifted_copies) that join the confidence fit."""
    pre = PreprocessConfig(**bundle.preprocess)
    feats = logits_for(bundle.model, train_images, pre.mean, pre.std, pre_logits=True, views=bundle.views)
    knn = KNNDistance(n_reference, bundle.knn_k, seed).fit(feats, np.asarray(train_labels))
    bundle.reference = torch.from_numpy(knn.reference_)
    _, probs, dist = bundle_outputs(bundle, val_images)
    cross = None
    if train_groups is not None and np.median(np.unique(train_groups, return_counts=True)[1]) > 1:
        cross = knn.cross_fitted_distance(feats, train_groups)
    shifted, names = [], []
    for name, images, labels in shifted_val:
        _, p, d = bundle_outputs(bundle, images)
        shifted.append((p, labels, d))
        names.append(name)
    rule = fit_referral(probs, np.asarray(val_labels), dist, target_accuracy, unfamiliar_rate, cross, shifted)
    bundle.refer_threshold, bundle.unfamiliar_threshold = rule.confidence, rule.unfamiliar
    bundle.conformal_qhat = ConformalSets(bundle.conformal_alpha).fit(probs, np.asarray(val_labels)).qhat_
    return {**rule.to_dict(), "n_reference": len(knn.reference_), "k": bundle.knn_k,
            "unfamiliar_rate": unfamiliar_rate, "target_accuracy": target_accuracy,
            "unfamiliar_fitted_on": "validation images" if cross is None else f"validation + {len(cross)} cross-fitted training images",
            "confidence_fitted_on": "validation images" + (f" + copies under {', '.join(names)}" if names else ""),
            "conformal_alpha": bundle.conformal_alpha, "conformal_qhat": bundle.conformal_qhat}
