"""Evaluate a model bundle on one side of a split: metrics with CIs, calibration, referral, report."""
from __future__ import annotations

import csv
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from leukodx.data.dataset import DatasetIndex
from leukodx.data.torch_dataset import ImageDataset
from leukodx.evaluate.calibration import expected_calibration_error, reliability
from leukodx.evaluate.metrics import compute_metrics
from leukodx.evaluate.report import write_html_report
from leukodx.evaluate.selective import selective_summary
from leukodx.heads.gray_fallback import fallback_threshold, with_gray_fallback
from leukodx.heads.temperature import softmax
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for, model_device
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig, normalize


def _explanation_images(bundle: ModelBundle, records, y, probs, n: int = 8) -> dict[str, str]:
    """The default explanation (LayerCAM) for the test set's mistakes first, then one correct image per class."""
    import base64
    import io

    from leukodx.explain.render import overlay_sheet

    wrong = [i for i in range(len(y)) if probs[i].argmax() != y[i]]
    right = [next((i for i in range(len(y)) if y[i] == k and probs[i].argmax() == k), None)
             for k in range(len(bundle.classes))]
    pick = (wrong + [i for i in right if i is not None])[:n]
    sheet = overlay_sheet(bundle, [records[i].path for i in pick], [bundle.classes[y[i]] for i in pick])
    if sheet is None:
        return {}
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    return {"LayerCAM (test mistakes first; caption: true -> predicted)": base64.b64encode(buf.getvalue()).decode()}


def bundle_outputs(bundle: ModelBundle, images, batch_size: int = 64) -> tuple:
    """uint8 images (N, 3, S, S) -> (uncalibrated probabilities, calibrated probabilities, unfamiliar-image
    distances), one forward pass per batch. A tree head gives probabilities directly (not temperature
    scaled; its features take one more pass); a softmax head is divided by the temperature. With the
    model's `gray_fallback`, unfamiliar images are answered as their grayscale copies where those are
    familiar (leukodx.heads.gray_fallback), as at prediction."""
    return with_gray_fallback(partial(_outputs, bundle, batch_size=batch_size), images, fallback_threshold(bundle),
                              channel_axis=1)[:3]


def _outputs(bundle: ModelBundle, images, batch_size: int) -> tuple:
    pre = PreprocessConfig(**bundle.preprocess)
    bundle.model.eval()
    device = model_device(bundle.model)
    logits, dists = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = normalize(images[i:i + batch_size].to(device), pre.mean, pre.std).contiguous(
                memory_format=torch.channels_last)
            z, d = bundle.net()(x)
            logits.append(z.float().cpu())
            dists.append(d.float().cpu())
    z = torch.cat(logits).numpy() if logits else np.zeros((0, len(bundle.classes)), np.float32)
    dist = torch.cat(dists).numpy() if dists else np.zeros(0, np.float32)
    if bundle.tree_head is not None:
        probs = bundle.head().predict_proba(logits_for(bundle.model, images, pre.mean, pre.std, pre_logits=True,
                                                       views=bundle.views))
        return probs, probs, dist
    return softmax(z), softmax(z, bundle.temperature), dist


def evaluate_bundle(bundle: ModelBundle, index: DatasetIndex, indices: list[int], groups: list[str] | None,
                    out_dir: Path, title: str, extra: dict | None = None, n_boot: int = 1000, seed: int = 0,
                    history_csv: Path | None = None, progress: bool = True) -> dict:
    """Writes metrics.json, predictions.csv and report.html into out_dir and returns the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    sub = index.subset(indices)
    ds = ImageDataset(sub, pre, progress=progress)
    t0 = time.perf_counter()
    raw, probs, dist = bundle_outputs(bundle, ds.images)
    infer_s = time.perf_counter() - t0
    y = ds.labels.numpy()
    kept_groups = None
    if groups is not None:
        key_to_group = {index.key(index.records[i]): groups[n] for n, i in enumerate(indices)}
        kept_groups = [key_to_group[index.key(r)] for r in ds.records]
    m = compute_metrics(y, probs, bundle.classes, groups=kept_groups, n_boot=n_boot, seed=seed)
    m["calibration"] = {"ece_uncalibrated": expected_calibration_error(raw, y),
                        "ece_calibrated": expected_calibration_error(probs, y), "temperature": bundle.temperature,
                        "bins": 15}
    m["referral"] = {**bundle.referral.to_dict(), **selective_summary(
        probs, y, dist, bundle.referral, ds.images.permute(0, 2, 3, 1).numpy(),
        bundle.conformal()), **{k: bundle.info.get("referral", {}).get(k, "validation images")
                                for k in ("unfamiliar_fitted_on", "confidence_fitted_on")}}
    if bundle.cell_probe is not None:
        m["referral"]["cell_probe"] = (bundle.info.get("adapted", {}).get("cell_probe")  # leukodx adapt refits it
                                       or bundle.info.get("referral", {}).get("cell_probe", {}))
    m["inference_seconds"] = infer_s
    m["unreadable_files"] = ds.bad
    (out_dir / "metrics.json").write_text(json.dumps({**(extra or {}), **m}, indent=1))
    tmp = out_dir / "predictions.csv.tmp"  # UTF-8; undecodable bytes of file names as \\xNN
    with open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "predicted", "probability"])
        w.writerows([index.key(r), bundle.classes[yy], bundle.classes[int(p.argmax())], f"{p.max():.6f}"]
                    for r, yy, p in zip(ds.records, y, probs))
    tmp.replace(out_dir / "predictions.csv")
    tables = {"uncalibrated": reliability(raw, y), f"temperature {bundle.temperature:.2f}": reliability(probs, y)}
    info = {**(extra or {}), "ECE before / after temperature scaling":
            f"{m['calibration']['ece_uncalibrated']:.4f} / {m['calibration']['ece_calibrated']:.4f}",
            "referral": f"confidence < {bundle.refer_threshold:.3f} or unfamiliar > {bundle.unfamiliar_threshold:.3f}: "
                        f"{m['referral']['referred']:.3f} referred {m['referral']['reasons']}, accuracy on kept "
                        f"{m['referral']['accuracy_on_kept']:.4f}, AURC {m['referral']['aurc']:.4f}, "
                        f"error AUROC {m['referral']['auroc_errors']:.3f}"}
    write_html_report(out_dir / "report.html", title, m, y, probs, info, history_csv, tables,
                      _explanation_images(bundle, ds.records, y, probs))
    return m

