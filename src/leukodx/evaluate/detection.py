"""Detector evaluation on annotated fields: AP@0.5 and AP@[.5:.95] per kind (torchmetrics, COCO rules),
recall / precision at the shipped score threshold, white-cell count error per field, and 95% CIs by
bootstrap over fields."""
from __future__ import annotations

import numpy as np
import torch

from leukodx.data.smears import KINDS, SmearField
from leukodx.detect.detector import Detections


def _as_torch(d: Detections) -> dict:
    return {"boxes": torch.from_numpy(d.boxes).float().reshape(-1, 4), "scores": torch.from_numpy(d.scores).float(),
            "labels": torch.tensor([KINDS.index(k) for k in d.kinds], dtype=torch.int64)}


def _truth(f: SmearField) -> dict:
    return {"boxes": torch.from_numpy(f.boxes).float().reshape(-1, 4),
            "labels": torch.tensor([KINDS.index(k) for k in f.kinds], dtype=torch.int64)}


def average_precision(preds: list[Detections], fields: list[SmearField]) -> dict:
    """{kind: {ap50, ap}} over the given fields (a kind absent from the truth gets None)."""
    from torchmetrics.detection import MeanAveragePrecision

    m = MeanAveragePrecision(iou_type="bbox", class_metrics=True, iou_thresholds=None)
    m.update([_as_torch(p) for p in preds], [_truth(f) for f in fields])
    res = m.compute()
    m50 = MeanAveragePrecision(iou_type="bbox", class_metrics=True, iou_thresholds=[0.5])
    m50.update([_as_torch(p) for p in preds], [_truth(f) for f in fields])
    res50 = m50.compute()
    out = {}
    classes = [int(c) for c in res["classes"].reshape(-1)]
    for kind_i, kind in enumerate(KINDS):
        if kind_i in classes:
            j = classes.index(kind_i)
            ap, ap50 = float(res["map_per_class"].reshape(-1)[j]), float(res50["map_per_class"].reshape(-1)[j])
            out[kind] = {"ap50": ap50 if ap50 >= 0 else None, "ap": ap if ap >= 0 else None}
        else:
            out[kind] = {"ap50": None, "ap": None}
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


def choose_threshold(det, fields: list[SmearField], preds: list[Detections] | None = None) -> float:
    """The score threshold with the best mean F1 over kinds on these (validation) fields."""
    preds = preds if preds is not None else [det.detect(_load(f)) for f in fields]
    best, best_f1 = 0.5, -1.0
    for thr in np.arange(0.2, 0.96, 0.05):
        f1s = []
        for kind in KINDS:
            c = np.array([match(p.keep(p.scores >= thr), f, kind) for p, f in zip(preds, fields)])
            r, pr = _rates(c)
            f1s.append(2 * r * pr / max(1e-9, r + pr))
        if np.mean(f1s) > best_f1:
            best, best_f1 = float(round(thr, 2)), float(np.mean(f1s))
    return best


def _load(f: SmearField) -> np.ndarray:
    from leukodx.data.images import load_image

    return np.asarray(load_image(f.path), np.uint8)


def detection_metrics(preds: list[Detections], fields: list[SmearField], threshold: float,
                      n_boot: int = 200, seed: int = 0) -> dict:
    """Point estimates with 95% CIs by bootstrap over fields."""
    rng = np.random.default_rng(seed)
    kept = [p.keep(p.scores >= threshold) for p in preds]
    per_kind = {}
    ap = average_precision(preds, fields)
    boot_idx = [rng.integers(0, len(fields), len(fields)) for _ in range(n_boot)]
    boot_ap = [average_precision([preds[i] for i in b], [fields[i] for i in b]) for b in boot_idx]
    for kind in KINDS:
        c = np.array([match(p, f, kind) for p, f in zip(kept, fields)])
        err = np.array([abs(p.kinds.count(kind) - f.count(kind)) for p, f in zip(kept, fields)], float)
        rec, prec = _rates(c)
        boots = np.array([[*_rates(c[b]), err[b].mean()] for b in boot_idx])
        row = {"recall": rec, "precision": prec, "count_abs_error_per_field": float(err.mean()),
               "true_boxes": int(c[:, 2].sum()), "recall_ci": np.percentile(boots[:, 0], [2.5, 97.5]).tolist(),
               "precision_ci": np.percentile(boots[:, 1], [2.5, 97.5]).tolist(),
               "count_abs_error_ci": np.percentile(boots[:, 2], [2.5, 97.5]).tolist()}
        for key in ("ap50", "ap"):
            row[key] = ap[kind][key]
            vals = [b[kind][key] for b in boot_ap if b[kind][key] is not None]
            row[f"{key}_ci"] = np.percentile(vals, [2.5, 97.5]).tolist() if vals else None
        per_kind[kind] = row
    return {"fields": len(fields), "score_threshold": threshold, "per_kind": per_kind,
            "ci": f"95% bootstrap over fields ({n_boot} draws)"}


def evaluate_detector(det, fields: list[SmearField], n_boot: int = 200, detect=None) -> dict:
    """Detect on each field (`detect`: image -> Detections; default the detector at the field's own
    scale), then `detection_metrics`."""
    detect = detect or det.detect
    preds = [detect(_load(f)) for f in fields]
    return detection_metrics(preds, fields, det.score_threshold, n_boot)


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
