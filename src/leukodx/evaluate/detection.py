"""Detector evaluation on annotated fields: AP@0.5 and AP@[.5:.95] per kind (COCO rules), recall /
precision at the shipped score threshold, count error per field, and 95% CIs by bootstrap over
fields. Detections are matched once per field, so a bootstrap draw only re-sums them; the AP equals
pycocotools' (via torchmetrics), which tests/detect checks."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.data.smears import KINDS, SmearField
from leukodx.detect.detector import Detections

IOUS = np.linspace(0.5, 0.95, 10)
RECALLS = np.linspace(0, 1, 101)


def _field_matches(pred: Detections, f: SmearField, kind: str, max_dets: int = 100) -> tuple:
    """COCO matching in one field for one kind: (scores, true-positive flags (10 IoU thresholds x
    detections), number of true boxes)."""
    from torchvision.ops import box_iou

    keep = np.array([k == kind for k in pred.kinds], bool)
    order = np.argsort(-pred.scores[keep], kind="mergesort")[:max_dets]
    scores, boxes = pred.scores[keep][order], pred.boxes[keep][order]
    truth = f.boxes[[k == kind for k in f.kinds]]
    tp = np.zeros((len(IOUS), len(scores)), bool)
    if len(scores) and len(truth):
        ious = box_iou(torch.from_numpy(boxes), torch.from_numpy(truth)).numpy()
        for t, thr in enumerate(IOUS):
            free = np.ones(len(truth), bool)
            for d in range(len(scores)):
                cand = np.where(free, ious[d], -1)
                j = int(np.argmax(cand))
                if cand[j] >= min(thr, 1 - 1e-10):
                    free[j], tp[t, d] = False, True
    return scores, tp, len(truth)


def _ap(parts: list[tuple]) -> np.ndarray | None:
    """AP per IoU threshold over the given fields (COCO's 101-point interpolation), None without truth."""
    npos = sum(p[2] for p in parts)
    if npos == 0:
        return None
    scores = np.concatenate([p[0] for p in parts])
    tp = np.concatenate([p[1] for p in parts], axis=1)
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[:, order]
    ctp, cfp = np.cumsum(tp, 1), np.cumsum(~tp, 1)
    out = np.zeros(len(IOUS))
    for t in range(len(IOUS)):
        rec = ctp[t] / npos
        prec = ctp[t] / np.maximum(ctp[t] + cfp[t], np.spacing(1))
        prec = np.maximum.accumulate(prec[::-1])[::-1]  # precision envelope
        idx = np.searchsorted(rec, RECALLS, side="left")
        out[t] = np.where(idx < len(prec), prec[np.minimum(idx, len(prec) - 1)], 0).mean()
    return out


def average_precision(preds: list[Detections], fields: list[SmearField]) -> dict:
    """{kind: {ap50, ap}} over the given fields, COCO rules (checked against pycocotools by the tests);
    a kind absent from the truth gets None."""
    out = {}
    for kind in KINDS:
        ap = _ap([_field_matches(p, f, kind) for p, f in zip(preds, fields)])
        out[kind] = {"ap50": None if ap is None else float(ap[0]), "ap": None if ap is None else float(ap.mean())}
    return out


def match(pred: Detections, f: SmearField, kind: str, iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, predicted, true) for one kind in one field; greedy by score at IoU >= iou."""
    from torchvision.ops import box_iou

    p = pred.boxes[[k == kind for k in pred.kinds]]
    order = np.argsort(-pred.scores[[k == kind for k in pred.kinds]])
    t = f.boxes[[k == kind for k in f.kinds]]
    if len(p) == 0 or len(t) == 0:
        return 0, len(p), len(t)
    ious = box_iou(torch.from_numpy(p[order]), torch.from_numpy(t)).numpy()
    used, tp = np.zeros(len(t), bool), 0
    for row in ious:
        row = np.where(used, -1, row)
        j = int(np.argmax(row))
        if row[j] >= iou:
            used[j], tp = True, tp + 1
    return tp, len(p), len(t)


def _rates(counts: np.ndarray) -> tuple[float, float]:
    tp, npred, ntrue = counts.sum(0)
    return tp / max(1, ntrue), tp / max(1, npred)


def choose_thresholds(det, fields: list[SmearField], preds: list[Detections] | None = None) -> dict[str, float]:
    """Per kind, the score threshold with the best F1 on these (validation) fields."""
    preds = preds if preds is not None else [det.detect(_load(f)) for f in fields]
    out = {}
    for kind in KINDS:
        best, best_f1 = 0.5, -1.0
        for thr in np.arange(0.2, 0.96, 0.05):
            r, pr = _rates(np.array([match(p.keep(p.scores >= thr), f, kind) for p, f in zip(preds, fields)]))
            f1 = 2 * r * pr / max(1e-9, r + pr)
            if f1 > best_f1:
                best, best_f1 = float(round(thr, 2)), f1
        out[kind] = best
    return out


def _load(f: SmearField) -> np.ndarray:
    from leukodx.data.images import load_image

    return np.asarray(load_image(f.path), np.uint8)


def detection_metrics(preds: list[Detections], fields: list[SmearField], thresholds: dict[str, float],
                      n_boot: int = 200, seed: int = 0) -> dict:
    """Point estimates with 95% CIs by bootstrap over fields; recall, precision and counts at the
    per-kind score thresholds."""
    rng = np.random.default_rng(seed)
    kept = [p.confident(thresholds) for p in preds]
    per_kind = {}
    boot_idx = [rng.integers(0, len(fields), len(fields)) for _ in range(n_boot)]
    for kind in KINDS:
        parts = [_field_matches(p, f, kind) for p, f in zip(preds, fields)]
        ap = _ap(parts)
        boot_ap = [a for a in (_ap([parts[i] for i in b]) for b in boot_idx) if a is not None]
        c = np.array([match(p, f, kind) for p, f in zip(kept, fields)])
        err = np.array([abs(p.kinds.count(kind) - f.count(kind)) for p, f in zip(kept, fields)], float)
        rec, prec = _rates(c)
        boots = np.array([[*_rates(c[b]), err[b].mean()] for b in boot_idx])
        row = {"recall": rec, "precision": prec, "count_abs_error_per_field": float(err.mean()),
               "true_boxes": int(c[:, 2].sum()), "recall_ci": np.percentile(boots[:, 0], [2.5, 97.5]).tolist(),
               "precision_ci": np.percentile(boots[:, 1], [2.5, 97.5]).tolist(),
               "count_abs_error_ci": np.percentile(boots[:, 2], [2.5, 97.5]).tolist()}
        for key, pick in (("ap50", lambda a: a[0]), ("ap", lambda a: a.mean())):
            row[key] = None if ap is None else float(pick(ap))
            row[f"{key}_ci"] = np.percentile([pick(a) for a in boot_ap], [2.5, 97.5]).tolist() if boot_ap else None
        per_kind[kind] = row
    return {"fields": len(fields), "score_thresholds": thresholds, "per_kind": per_kind,
            "ci": f"95% bootstrap over fields ({n_boot} draws)"}


def evaluate_detector(det, fields: list[SmearField], n_boot: int = 200, detect=None) -> dict:
    """Detect on each field (`detect`: image -> Detections; default the detector at the field's own
    scale), then `detection_metrics`."""
    detect = detect or det.detect
    preds = [detect(_load(f)) for f in fields]
    return detection_metrics(preds, fields, det.score_thresholds, n_boot)


def evaluate_detector_on(det, data: str | None, side: str = "test", all_fields: bool = False,
                         n_boot: int = 200) -> dict:
    """`leukodx evaluate DETECTOR`: the side of the detector's own grouped split (remade from the
    protocol in its file), or every field of another set."""
    from leukodx.data.smears import load_smear_fields, smear_root, split_fields

    root = smear_root(data or det.info.get("data", "bccd_smears"))
    fields = load_smear_fields(root)
    if all_fields:
        chosen, how = fields, "all fields (no split)"
    else:
        p = det.info.get("split", {})
        sides, _ = split_fields(fields, root, p.get("seed", 0), p.get("val_frac", 0.15), p.get("test_frac", 0.2))
        chosen, how = [fields[i] for i in sides[side]], f"grouped split by field ({p.get('groups')}), side {side}"
    m = evaluate_detector(det, chosen, n_boot)
    m["data"], m["split"] = str(root), how
    return m
