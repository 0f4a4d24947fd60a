"""Prediction records and how they are written; no torch here (shared by both predictors)."""
from __future__ import annotations

import csv
import json
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from leukodx.data.images import is_image_file, load_image
from leukodx.data.walk import walk_files
from leukodx.errors import BadImageError, LeukodxError
from leukodx.heads.cell_probe import split_distance
from leukodx.heads.expected import expected_names, restrict
from leukodx.heads.image_checks import image_problem
from leukodx.heads.referral import Referral


@dataclass
class Prediction:
    path: str
    label: str
    probability: float
    probabilities: dict[str, float]
    refer: bool
    refer_reason: str | None = None   # one of leukodx.heads.referral.REASONS when refer is true
    unfamiliarity: float = 0.0        # k-NN feature distance to the training images
    prediction_set: list[str] | None = None  # conformal set of classes (None: the model has no conformal fit)
    expected_classes: list[str] | None = None  # the answer was limited to these (leukodx.heads.expected)
    expected_share: float | None = None  # with a limit: the share of the model's probability on those classes
    grayscale_copy: bool = False      # answered from the image's grayscale copy (leukodx.heads.gray_fallback)

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probability": _num(self.probability),
                "probabilities": {k: _num(v) for k, v in self.probabilities.items()}, "refer": self.refer,
                "refer_reason": self.refer_reason, "unfamiliarity": _num(self.unfamiliarity),
                "prediction_set": self.prediction_set, "expected_classes": self.expected_classes,
                "expected_share": None if self.expected_share is None else _num(self.expected_share),  # NaN -> None
                "grayscale_copy": self.grayscale_copy}


    @classmethod
    def from_dict(cls, d: dict) -> Prediction:
        nan = float("nan")
        return cls(d["path"], d["label"], nan if d["probability"] is None else d["probability"],
                   {k: nan if v is None else v for k, v in d["probabilities"].items()}, d["refer"],
                   d.get("refer_reason"), nan if d.get("unfamiliarity") is None else d["unfamiliarity"],
                   d.get("prediction_set"), d.get("expected_classes"), d.get("expected_share"),
                   bool(d.get("grayscale_copy", False)))


class Journal:
    """The finished rows of `predict --out OUT`, appended and flushed one by one to OUT.partial.jsonl,
    so a killed run loses nothing and a re-run with the same model skips them. Removed once OUT is
    written; a journal from another model file is started afresh."""

    def __init__(self, out: str | Path, model_id: str):
        self.path = Path(str(out) + ".partial.jsonl")
        self.preds, self.errors = [], []
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines() if self.path.is_file() else []
        if lines and _json_or_none(lines[0]) == {"model": model_id}:
            for line in lines[1:]:
                row = _json_or_none(line)  # a line cut by the kill is simply redone
                if row and "error" in row:
                    self.errors.append(row)
                elif row:
                    self.preds.append(Prediction.from_dict(row))
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"model": model_id}) + "\n")
        self.done = {r.path for r in self.preds} | {e["path"] for e in self.errors}

    def add(self, row) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row.to_dict() if isinstance(row, Prediction) else row) + "\n")

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def _num(v: float) -> float | None:
    """Rounded, and None for NaN / infinity (JSON has no NaN)."""
    return round(float(v), 6) if np.isfinite(v) else None


def collect_images(target: str | Path) -> tuple[list[Path], list[dict]]:
    """A file, or every file under a folder, following linked folders (non-images are kept so they
    are reported). Returns (files, skipped entries with the reason: hidden, broken link, FIFO ...)."""
    p = Path(target).expanduser()
    if p.is_dir():
        return walk_files(p)
    if p.exists():
        return [p], []
    raise LeukodxError(f"{p}: no such file or folder")


def finds_cells(cfg) -> bool:
    """Whether preparing a file for this PreprocessConfig includes finding or masking cells (the slow
    part of preparing, worth overlapping with the network), not just decoding and resizing."""
    return bool(cfg.cell_centre or cfg.mask_background or cfg.stained_only or cfg.stain_free or cfg.nucleus_only)


def network_threads(cfg=None) -> int:
    """The network's threads for a model with this PreprocessConfig. Where preparing finds cells,
    `predict_batches` prepares files on one thread beside the network, which gets all cores but one;
    otherwise files are prepared between batches and the network gets every core. Measured side by
    side on 2 cores (results/predict_throughput*.md): the WBC model (cell-centred) runs faster with the
    overlap, the ALL model (resize only, network-bound at 160 px) without it."""
    cores = os.cpu_count() or 2
    return max(1, cores - 1) if cfg is not None and finds_cells(cfg) else cores


def prepare(path, to_input) -> tuple[np.ndarray, str | None]:
    """One file -> (model input array, image-check problem or None); a bad file raises BadImageError."""
    if not is_image_file(path):
        raise BadImageError(path, f"not an image file type ({Path(path).suffix or 'no extension'})")
    arr = to_input(load_image(path))
    return arr, image_problem(arr)


def predict_batches(paths, to_input, scores, make, batch_size: int = 32, progress: bool = False, on_row=None,
                    overlap: bool = True):
    """Decode, preprocess and check each file (`prepare`), run `scores` (-> probabilities, distances,
    answered in grayscale) on full batches, build results with `make(path, probs, distance, image_problem,
    gray)`. Returns (predictions, errors); a bad file is listed in errors, never fatal. `on_row` sees each result as it is made.
    With `overlap`, files are prepared one thread ahead of the network (at most two batches in flight),
    so decoding and cell-finding overlap the forward pass; without it, between batches (see
    `network_threads`). Results come in the order of `paths`."""
    preds, errors, batch, batch_info = [], [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc="predicting", unit="img")

    def flush():
        if batch:
            probs, dists, grays = scores(np.stack(batch))
            for (bp, problem), p, d, g in zip(batch_info, probs, dists, grays):
                preds.append(make(str(bp), p, d, problem, bool(g)))
                if on_row:
                    on_row(preds[-1])
            batch.clear()
            batch_info.clear()

    todo, pending = iter(paths), deque()
    pool = ThreadPoolExecutor(1, thread_name_prefix="leukodx-prepare") if overlap else _Inline()
    try:
        while True:
            for path in islice(todo, 2 * batch_size - len(pending)):
                pending.append((path, pool.submit(prepare, path, to_input)))
            if not pending:
                break
            path, job = pending.popleft()
            try:
                arr, problem = job.result()
                batch.append(arr)
                batch_info.append((path, problem))
            except BadImageError as e:
                errors.append({"path": str(path), "error": e.problem})
                if on_row:
                    on_row(errors[-1])
            if len(batch) >= batch_size:
                flush()
            if bar:
                bar.update(1)
        flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar:
            bar.close()
    return preds, errors


class _Inline:
    """`predict_batches` without the overlap: each file is prepared when it is submitted."""

    def submit(self, fn, *args):
        f = Future()
        try:
            f.set_result(fn(*args))
        except BadImageError as e:
            f.set_exception(e)
        return f

    def shutdown(self, **kwargs):
        pass


def to_prediction(path: str, p: np.ndarray, distance: float, problem: str | None, classes: list[str],
                  referral: Referral, conformal=None, expected: np.ndarray | None = None,
                  grayscale_copy: bool = False) -> Prediction:
    """Label, probability, the referral decision with its reason (`problem`: the image checks' finding) and,
    with a conformal fit, the set of classes that holds the true one at the fitted coverage.
    `expected` (a mask over the classes, leukodx.heads.expected) limits the answer to those classes."""
    pset = None if conformal is None else conformal.predict_set(p[None])[0]
    share = None
    if expected is not None:
        p, share = restrict(p[None], expected)
        p, pset = p[0], None if pset is None else pset & expected
    k = int(np.nan_to_num(p, nan=-1.0).argmax())
    if pset is not None:
        pset[k] = True  # never empty: the answer is always in its set
    reason = referral.reasons(p[None], np.array([distance]), [problem], share)[0]
    return Prediction(path, classes[k], float(p[k]), {c: float(v) for c, v in zip(classes, p)},
                      reason is not None, reason, float(split_distance(distance)[0]),
                      None if pset is None else [c for c, m in zip(classes, pset) if m],
                      expected_names(expected, classes), None if share is None else float(share[0]), grayscale_copy)


def write_predictions(preds: list[Prediction], errors: list[dict], out: str | Path, fmt: str | None = None,
                      warnings: list[str] | None = None) -> Path:
    """CSV (one row per image; warnings are for the caller to print) or JSON with predictions, errors and
    warnings about the batch as a whole (`lab_shift_flag`). Written to a temporary file, then renamed."""
    out = Path(out)
    fmt = fmt or ("csv" if out.suffix.lower() == ".csv" else "json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    if fmt == "csv":
        classes = list(preds[0].probabilities) if preds else []
        # UTF-8; bytes of file names that are not UTF-8 are written as \\xNN escapes
        with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "probability", "refer", "refer_reason", "unfamiliarity", "expected_share",
                        "grayscale_copy", "error"] + [f"p_{c}" for c in classes])
            for p in preds:
                share = "" if p.expected_share is None else f"{p.expected_share:.6f}"
                w.writerow([p.path, p.label, f"{p.probability:.6f}", int(p.refer), p.refer_reason or "",
                            f"{p.unfamiliarity:.4f}", share, int(p.grayscale_copy), ""] +
                           [f"{p.probabilities[c]:.6f}" for c in classes])
            for e in errors:
                w.writerow([e["path"], "", "", 1, "unreadable", "", "", "", e["error"]] + [""] * len(classes))
    else:
        tmp.write_text(json.dumps({"predictions": [p.to_dict() for p in preds], "errors": errors,
                                   "warnings": warnings or []}, indent=1))
    tmp.replace(out)
    return out
