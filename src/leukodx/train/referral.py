"""Fit a model's referral on its own data: reference features from the train side (for the
unfamiliar-image distance), then both thresholds on the validation side (leukodx.heads.referral), and
optionally the no-white-cell probe (leukodx.heads.cell_probe), also on the validation side."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import shifted_copies
from leukodx.heads.cell_probe import CellProbe
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


CELL_PROBE_SHIFTS = ("none", "grayscale", "blur_2", "lowres_32")  # each with and without its cells


def probe_copies(records, pre) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The validation records under CELL_PROBE_SHIFTS, each as it is and with its cells painted out of the
    file (shift `cells_out`) -> (images, 1 where the cells were painted out, the group of each: its slide
    where the records name slides, else its source image)."""
    shifts = [*CELL_PROBE_SHIFTS, *("cells_out" if s == "none" else f"cells_out+{s}" for s in CELL_PROBE_SHIFTS)]
    named = [r.group or str(i) for i, r in enumerate(records)]
    images, no_cell, groups = [], [], []
    for name, x, _ in shifted_copies(records, pre, shifts):
        images.append(x)
        no_cell.append(np.full(len(x), name.startswith("cells_out"), int))
        groups.append(named if len(x) == len(named) else [str(i) for i in range(len(x))])  # unreadable files dropped
    return torch.cat(images), np.concatenate(no_cell), np.concatenate(groups)


def fit_bundle_cell_probe(bundle: ModelBundle, images: torch.Tensor, no_cell: np.ndarray, groups: np.ndarray,
                          max_flagged: float = 0.005, source: str = "validation images") -> dict:
    """Sets bundle.cell_probe in place (arguments from `probe_copies`; its threshold is fitted out of fold
    by those groups); returns what it fitted. A validation side of one slide cannot place that threshold:
    the model is then left without a probe (a trained model is never lost to it), and the report says so.
    `source` names the images in the report (validation images; a lab's cells for `leukodx adapt`)."""
    if len(np.unique(groups)) < 2:
        return {"skipped": f"the {source} come from one slide: no out-of-fold threshold for the cell probe"}
    pre = PreprocessConfig(**bundle.preprocess)
    feats = logits_for(bundle.model, images, pre.mean, pre.std, pre_logits=True, views=bundle.views)
    probe = CellProbe(max_flagged).fit(feats, no_cell, groups=groups)
    bundle.cell_probe = torch.from_numpy(probe.to_vector())
    return {"max_flagged": max_flagged, "C": probe.C, "folds": probe.folds, "n_with_cell": int((no_cell == 0).sum()),
            "n_without_cell": int(no_cell.sum()), "shifts": list(CELL_PROBE_SHIFTS),
            "flagged_with_cell_out_of_fold": probe.flagged_with_cell_,
            "flagged_without_cell_out_of_fold": probe.flagged_without_cell_,
            "fitted_on": f"{source} as they are and under " + ", ".join(CELL_PROBE_SHIFTS[1:]) +
                         ", each against the same with its cells painted out of the file (`cells_out`)"}


def fit_cell_probe_on(bundle: ModelBundle, records, pre, max_flagged: float = 0.005,
                      source: str = "validation images") -> dict:
    """`probe_copies` of these records, then `fit_bundle_cell_probe`: what training, refit_referral and adapt run."""
    images, no_cell, groups = probe_copies(records, pre)
    return fit_bundle_cell_probe(bundle, images, no_cell, groups, max_flagged, source)
