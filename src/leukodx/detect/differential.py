"""The differential count of a case: white cells per type over all its fields, with 95% intervals.

Only white cells the WBC model did not refer are counted; referred cells are listed for review.
Intervals are exact (Clopper-Pearson) binomial intervals on each type's share.
"""
from __future__ import annotations

from collections import Counter

from leukodx.heads.referral import lab_shift_flag

MIN_RELIABLE = 100  # labs count 100-200 white cells; fewer gives wide intervals


def binomial_ci(k: int, n: int) -> list[float] | None:
    from scipy.stats import binomtest

    if n == 0:
        return None
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def differential(rows: list[dict], classes: list[str]) -> dict:
    """rows: one dict per detected cell (kind, label, refer, image). Returns counts, percentages with
    95% CIs, referred cells, red-cell and platelet counts per field, the low-count flag and the lab-shift
    flag (many cells unlike the training images: `lab_shift_flag`)."""
    wbc = [r for r in rows if r["kind"] == "wbc"]
    typed = [r for r in wbc if not r["refer"]]
    counts = Counter(r["label"] for r in typed)
    n = len(typed)
    per_type = {c: {"count": counts.get(c, 0), "percent": 100 * counts.get(c, 0) / n if n else None,
                    "percent_ci95": [100 * v for v in binomial_ci(counts.get(c, 0), n)] if n else None}
                for c in classes}
    fields = sorted({r["image"] for r in rows})
    per_field = {f: {k: sum(r["image"] == f and r["kind"] == k for r in rows) for k in ("wbc", "rbc", "platelet")}
                 for f in fields}
    flag = None
    if n < MIN_RELIABLE:
        flag = (f"only {n} white cells typed (fewer than {MIN_RELIABLE}): the differential is not reliable; "
                "scan more fields")
    shift = lab_shift_flag([r.get("refer_reason") if r["refer"] else None for r in wbc], noun="white cells")
    return {"white_cells_detected": len(wbc), "white_cells_typed": n, "white_cells_referred": len(wbc) - n,
            "per_type": per_type, "referred": [{"image": r["image"], "box": r["box"], "label": r["label"],
                                                "probability": r["probability"], "reason": r.get("refer_reason")}
                                               for r in wbc if r["refer"]],
            "per_field": per_field, "low_count_flag": flag, "lab_shift_flag": shift,
            "method": "non-referred white cells only; 95% exact binomial (Clopper-Pearson) intervals"}
