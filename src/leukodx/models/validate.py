"""Checks a model file must pass before it answers anything: a broken file is refused with one
line, never turned into confident labels (NaN weights, a zero temperature, fewer class names than
outputs, unexpected settings)."""
from __future__ import annotations

import math

import torch

from leukodx.config import model_kwargs_problem
from leukodx.errors import LeukodxError
from leukodx.transforms.views import VIEW_COUNTS


def _fail(path, what: str):
    raise LeukodxError(f"{path}: refused: {what}")


def check_payload(d: dict, path) -> None:
    """Types and ranges of everything beside the weights."""
    classes = d.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) and c for c in classes)):
        _fail(path, "class names must be a list of at least two non-empty strings")
    if len(set(classes)) != len(classes):
        _fail(path, "class names repeat")
    if not isinstance(d.get("arch"), str):
        _fail(path, "no architecture name")
    problem = model_kwargs_problem(d.get("model_kwargs"))
    if problem:
        _fail(path, f"model_kwargs {problem}")
    if not isinstance(d.get("preprocess"), dict):
        _fail(path, "no preprocessing settings")
    t = d.get("temperature")
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        _fail(path, f"temperature must be a positive finite number, got {t!r}")
    r = d.get("refer_threshold")
    if not (isinstance(r, (int, float)) and math.isfinite(r) and 0 <= r <= 1):
        _fail(path, f"referral threshold must be in [0, 1], got {r!r}")
    u = d.get("unfamiliar_threshold", math.inf)
    if not (isinstance(u, (int, float)) and not math.isnan(u) and u > 0):
        _fail(path, f"unfamiliar-image threshold must be positive, got {u!r}")
    q = d.get("conformal_qhat")
    if q is not None and not (isinstance(q, (int, float)) and 0 <= q <= 1):
        _fail(path, f"conformal threshold must be in [0, 1], got {q!r}")
    v = d.get("views", 1)
    if not (isinstance(v, int) and not isinstance(v, bool) and v in VIEW_COUNTS):
        _fail(path, f"views must be one of {VIEW_COUNTS}, got {v!r}")
    if not isinstance(d.get("gray_fallback", False), bool):
        _fail(path, f"gray_fallback must be true or false, got {d.get('gray_fallback')!r}")
    ref = d.get("reference")
    if ref is not None and not (isinstance(ref, torch.Tensor) and ref.ndim == 2 and torch.isfinite(ref).all()):
        _fail(path, "reference features must be a finite 2-D tensor")
    cp = d.get("cell_probe")
    if cp is not None and not (isinstance(cp, torch.Tensor) and cp.ndim == 1 and cp.numel() >= 2
                               and torch.is_floating_point(cp) and torch.isfinite(cp).all()):
        _fail(path, "the cell probe must be a finite 1-D float tensor (weights then bias)")
    if not isinstance(d.get("state_dict"), dict):
        _fail(path, "no weights")
    bad = [k for k, v in d["state_dict"].items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        _fail(path, f"{len(bad)} weight tensors hold NaN or infinite values (first: {bad[0]})")


def probe(bundle, path) -> None:
    """One forward pass on a grey image: the outputs must match the class names and be finite."""
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    try:
        pre = Preprocess(PreprocessConfig(**bundle.preprocess))
        size = pre.cfg.image_size
        x = pre.normalize(torch.full((1, 3, size, size), 128, dtype=torch.uint8))
        with torch.no_grad():
            width = bundle.model.forward_head(bundle.model.forward_features(x), pre_logits=True).shape[1]
            if bundle.reference is not None and bundle.reference.shape[1] != width:
                _fail(path, "reference features do not match the network's feature size")
            if bundle.cell_probe is not None and bundle.cell_probe.shape[0] != width + 1:
                _fail(path, "the cell probe does not match the network's feature size")
            logits, dist = bundle.net()(x)
    except LeukodxError:
        raise
    except Exception as e:  # noqa: BLE001 - settings that make the network fail
        _fail(path, f"the network does not run on its own preprocessing ({type(e).__name__}: {str(e)[:120]})")
    if logits.shape[1] != len(bundle.classes):
        _fail(path, f"the network gives {logits.shape[1]} outputs for {len(bundle.classes)} class names")
    if not (torch.isfinite(logits).all() and torch.isfinite(dist).all()):
        _fail(path, "the network's outputs are not finite")
