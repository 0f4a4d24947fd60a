"""Classes a lab expects: a lab that knows which classes its images can hold (a five-part differential of
normal blood has no platelets, erythroblasts or immature granulocytes among its white cells) limits
the answer to them.

The model's probabilities are renormalised over those classes (Bayes' rule with a prior of zero on the
rest), so the low-confidence threshold applies to them as before. A cell whose probability lies mostly
on the classes left out is referred as `unexpected_class` (leukodx.heads.referral): the model sees
something the lab did not expect. A conformal set keeps its expected members (its coverage holds
whenever the true class is one the lab expects). Measured on other labs' cells: results/external_inputs.md.
"""
from __future__ import annotations

import numpy as np

from leukodx.errors import LeukodxError

UNEXPECTED_MASS = 0.5  # refer when the expected classes hold less than this share of the probability
FIVE_PART = "basophil,eosinophil,lymphocyte,monocyte,neutrophil"  # the white cells of a normal blood differential
SHOWN_SHARE = 0.95  # pages and reports show the share outside a limit when the expected classes hold less than this


def expected_mask(spec: str | list[str] | None, classes: list[str]) -> np.ndarray | None:
    """'a,b,c' or a list of class names -> a boolean mask over the model's classes; None stays None.
    Refuses names the model does not know, and fewer than two classes."""
    if spec is None:
        return None
    names = {s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()}
    unknown = sorted(names - set(classes))
    if unknown:
        raise LeukodxError(f"expected classes unknown to this model: {', '.join(unknown)} "
                           f"(it knows: {', '.join(classes)})")
    if len(names) < 2:
        raise LeukodxError("give at least two expected classes (with one, every answer would be that class)")
    return np.array([c in names for c in classes])


def expected_names(mask: np.ndarray | None, classes: list[str]) -> list[str] | None:
    """The class names a mask keeps, in the model's order (None stays None)."""
    return None if mask is None else [c for c, m in zip(classes, mask) if m]


def restrict(probs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, C) -> (probabilities renormalised over the expected classes, zero elsewhere;
    the share the expected classes held). A share of exactly zero spreads evenly over the expected
    classes (and is referred as unexpected_class); NaN stays NaN (invalid_output)."""
    probs = np.asarray(probs, float)
    mass = probs[:, mask].sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(mask, probs, 0.0) / mass[:, None]
    out[mass == 0] = mask / mask.sum()
    return out, mass


def outside_percent(share: float | None) -> int | None:
    """The percent of the probability outside a limit, where pages should show it (None: no limit, or too
    little to matter)."""
    return None if share is None or share >= SHOWN_SHARE else round(100 * (1 - share))
