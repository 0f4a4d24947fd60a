"""Summarise the shipped models' committed results into results/shipped_models.{json,md}."""
import json
from pathlib import Path

from leukodx.evaluate.tables import write_results

root = Path(__file__).resolve().parents[1] / "results"
rows = []
for name in ("all_severity", "wbc_type"):
    f = root / f"{name}_metrics.json"
    if f.is_file():
        m = json.loads(f.read_text())
        m["baseline"] = f"{m['colour_histogram_baseline_accuracy']:.4f}"
        m["ece_after"] = f"{m['calibration']['ece_uncalibrated']:.4f} -> {m['calibration']['ece_calibrated']:.4f}"
        ref = m["referral"]
        m["coverage"] = f"{1 - ref['referred'] if 'referred' in ref else ref['coverage']:.3f}"
        m["train_min"] = f"{m['train_seconds'] / 60:.1f}"
        rows.append((f"{name} ({m['model']}, {m['pretrained']}, {m['image_size']} px)", m))
write_results(root / "shipped_models", rows, "Shipped models: grouped test splits",
              ["Re-run: benchmarks/shipped_model.sh NAME (fixed seed 0). CIs: bootstrap over split groups.",
               "Hardware: 2 CPU cores, no GPU."],
              keys=("accuracy", "macro_f1", "mcc", "roc_auc"),
              extra={"colour baseline acc": "baseline", "ECE before -> after T": "ece_after",
                     "referral coverage": "coverage", "train min": "train_min"})
