"""Fit the referral rule (reference features + thresholds, leukodx.train.referral) of a finished run
without re-training it, then re-score its test side. Used to give the shipped models referral reasons:
    .venv/bin/python benchmarks/refit_referral.py runs/wbc_type
    .venv/bin/python benchmarks/refit_referral.py runs/all_severity_paint_blur3 --config configs/all_severity.yaml
    STAGE=robustness benchmarks/shipped_model.sh wbc_type
The model file's `gray_fallback` follows the (run's or --config's) config.
With --views N the model file averages N quarter turns / mirror images of each image at prediction
(test-time augmentation); the temperature is then refitted on the validation side too.
"""
import argparse
import json
from pathlib import Path

import torch

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.data.torch_dataset import ImageDataset
from leukodx.evaluate.evaluate_run import evaluate_bundle
from leukodx.evaluate.robustness import shifted_copies
from leukodx.heads.temperature import TemperatureScaler
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.train.referral import fit_bundle_referral, fit_cell_probe_on
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

KEEP = ("model", "pretrained", "data", "split", "image_size", "epochs_run", "train_seconds", "hardware",
        "colour_histogram_baseline_accuracy", "colour_histogram_baseline_ci95")

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("--conformal-alpha", type=float, default=0.01, help="conformal sets miss the true class this often")
ap.add_argument("--views", type=int, choices=(1, 2, 4, 8), help="test-time views to average (refits the temperature)")
ap.add_argument("--config", help="take refer_* (refer_no_cell: the no-white-cell probe) and gray_fallback settings from this config instead of the run's "
                                 "(e.g. configs/all_severity.yaml)")
a = ap.parse_args()
run = Path(a.run)
torch.set_num_threads(2)
cfg = TrainConfig.load(run / "config.yaml")
if a.config:
    new = TrainConfig.load(a.config)
    for k in ("refer_target_accuracy", "refer_unfamiliar_rate", "refer_shifts", "refer_no_cell", "gray_fallback"):
        setattr(cfg, k, getattr(new, k))
    cfg.save(run / "config.yaml")  # the run's config says how its referral was fitted
bundle = ModelBundle.load(run / "model.pt")
bundle.conformal_alpha = a.conformal_alpha
bundle.cell_probe = None  # its flags would move the distances the thresholds are fitted on; refitted below
bundle.gray_fallback = cfg.gray_fallback
index = load_dataset(cfg.data)
split = Split.load(run / "split.json")
pre = Preprocess(PreprocessConfig(**bundle.preprocess))
tr = ImageDataset(index.subset(split.indices(index, "train")), pre, None, cfg.threads, True)
tr_groups = [split.groups[index.key(r)] for r in tr.records]
va = ImageDataset(index.subset(split.indices(index, "val")), pre, None, cfg.threads, True)
if a.views is not None:
    bundle.views = a.views
    bundle.temperature = TemperatureScaler().fit(logits_for(bundle.model, va.images, pre.cfg.mean, pre.cfg.std,
                                                            views=a.views), va.labels.numpy()).temperature_
    bundle.info["views"] = a.views
    print(f"views {a.views}: temperature {bundle.temperature:.3f}")
bundle.info["referral"] = fit_bundle_referral(bundle, tr.images, tr.labels.numpy(), va.images, va.labels.numpy(),
                                              cfg.refer_target_accuracy, cfg.refer_unfamiliar_rate, seed=cfg.seed,
                                              train_groups=tr_groups,
                                              shifted_val=shifted_copies(va.records, pre, cfg.refer_shifts))
if cfg.refer_no_cell:
    bundle.info["referral"]["cell_probe"] = fit_cell_probe_on(bundle, va.records, pre, cfg.refer_no_cell)
print(json.dumps(bundle.info["referral"]))
bundle.save(run / "model.pt")
te = split.indices(index, "test")
groups = split.groups_of(index, te)
prev_file = run / "test" / "metrics.json"  # absent in a run folder made without training (a weight soup)
prev = json.loads(prev_file.read_text()) if prev_file.is_file() else {}
m = evaluate_bundle(bundle, index, te, groups, run / "test", f"{cfg.model} on {index.name}: test split",
                    {k: prev[k] for k in KEEP if k in prev}, cfg.bootstrap, cfg.seed,
                    run / "logs" / "metrics.csv", True)
print(json.dumps(m["referral"], indent=1))
