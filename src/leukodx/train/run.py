"""`leukodx train`: data -> grouped split -> Lightning fit -> calibration -> model file -> test report.

A run folder holds: config.yaml, split.json, checkpoints/, logs/metrics.csv, model.pt,
test/metrics.json, test/report.html, test/predictions.csv, train_summary.json.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split, make_split, split_summary
from leukodx.data.torch_dataset import ImageDataset
from leukodx.errors import LeukodxError
from leukodx.evaluate.baseline import ColorHistogramClassifier
from leukodx.evaluate.evaluate_run import evaluate_bundle
from leukodx.evaluate.metrics import compute_metrics
from leukodx.heads.temperature import TemperatureScaler
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.models.registry import create_model, sized_kwargs
from leukodx.train.referral import fit_bundle_referral
from leukodx.transforms.augment import build_augment
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


def with_synthetic(index, tr_idx: list[int], cfg: TrainConfig):
    """The training side, plus (or, for train-on-synthetic, replaced by) generated images from the
    `synthetic` manifest: `synthetic_ratio` generated images per real training image, classes balanced."""
    from dataclasses import replace

    real = index.subset(tr_idx)
    if not cfg.synthetic:
        return real
    syn = load_dataset(cfg.synthetic)
    extra = [c for c in syn.classes if c not in index.classes]
    if extra:
        raise LeukodxError(f"synthetic set has classes the data lacks: {', '.join(extra)}")
    n = len(tr_idx) if cfg.synthetic_mode == "only" else round(cfg.synthetic_ratio * len(tr_idx))
    rng = np.random.default_rng(cfg.seed)
    by_class = {c: [r for r in syn.records if syn.classes[r.label] == c] for c in syn.classes}
    picked = []
    for c, recs in by_class.items():
        take = min(len(recs), n // max(1, len(by_class)))
        picked += [replace(recs[i], label=index.classes.index(c), synthetic=True)
                   for i in rng.permutation(len(recs))[:take]]
    base = [] if cfg.synthetic_mode == "only" else list(real.records)
    return replace(real, records=base + picked)


def _limit_per_class(index, idx: list[int], n: int, seed: int) -> list[int]:
    if n <= 0:
        return idx
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(index.classes)):
        members = [i for i in idx if index.records[i].label == c]
        out += sorted(rng.permutation(members)[:n].tolist())
    return sorted(out)


def _ckpt_epoch(run_dir: Path) -> int | None:
    """The last finished epoch in checkpoints/last.ckpt."""
    try:
        return int(torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by Lightning itself
        return None


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True, index=None) -> dict:
    """Train and evaluate; returns the test metrics. `index` overrides cfg.data (e.g. generated data)."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    from leukodx.train.history import csv_logger
    from leukodx.train.module import ClassifierModule

    run_dir = Path(run_dir)
    if run_dir.exists() and (run_dir / "model.pt").exists() and not resume:
        raise LeukodxError(f"{run_dir}: a finished run is already there; pick a new --out")
    if resume and not (run_dir / "checkpoints" / "last.ckpt").exists():
        raise LeukodxError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    index = index if index is not None else load_dataset(cfg.data)
    split_path = run_dir / "split.json"
    if cfg.split_file:
        split = Split.load(cfg.split_file)
    elif split_path.exists():  # resumed or re-run: keep the same split
        split = Split.load(split_path)
    else:
        split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes, progress=progress)
    split.save(split_path)
    tr_idx = _limit_per_class(index, split.indices(index, "train"), cfg.max_images_per_class, cfg.seed)
    va_idx, te_idx = split.indices(index, "val"), split.indices(index, "test")

    model_kwargs = sized_kwargs(cfg.model, cfg.image_size, cfg.model_kwargs)
    model = create_model(cfg.model, num_classes=len(index.classes), pretrained=cfg.pretrained, **model_kwargs)
    pcfg = model.pretrained_cfg if hasattr(model, "pretrained_cfg") else {}
    pre = Preprocess(PreprocessConfig(cfg.image_size, cfg.gaussian_sigma, cfg.grayscale,
                                      tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),
                                      tuple(pcfg.get("std", (0.229, 0.224, 0.225))), cfg.mask_background,
                                      cfg.cell_centre, cfg.mask_corner))
    t_load = time.perf_counter()
    train_index = with_synthetic(index, tr_idx, cfg)
    train_ds = ImageDataset(train_index, pre, build_augment(cfg.augment, cfg.augment_drop), cfg.threads, progress)
    val_ds = ImageDataset(index.subset(va_idx), pre, None, cfg.threads, progress)
    t_load = time.perf_counter() - t_load
    bad = train_ds.bad + val_ds.bad
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise LeukodxError("no readable images on the train or val side")

    counts = torch.bincount(train_ds.labels, minlength=len(index.classes)).float()
    weights = (counts.sum() / (len(counts) * counts.clamp(min=1))) if cfg.class_weights else None
    sampler = None
    if cfg.balanced_sampling:
        w = (1.0 / counts.clamp(min=1))[train_ds.labels]
        sampler = WeightedRandomSampler(w.double(), len(w), generator=torch.Generator().manual_seed(cfg.seed))
    train_dl = DataLoader(train_ds, cfg.batch_size, shuffle=sampler is None, sampler=sampler, drop_last=len(train_ds) > cfg.batch_size,
                          generator=torch.Generator().manual_seed(cfg.seed))
    val_dl = DataLoader(val_ds, 64)

    module = ClassifierModule(model.to(memory_format=torch.channels_last), len(index.classes), pre.cfg.mean,
                              pre.cfg.std, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.scheduler, cfg.epochs,
                              cfg.freeze_epochs, weights, cfg.label_smoothing, cfg.plateau_factor, cfg.monitor)
    mode = "min" if cfg.monitor == "val_loss" else "max"
    ckpt = ModelCheckpoint(run_dir / "checkpoints", "best", monitor=cfg.monitor, mode=mode)
    # last.ckpt after every epoch (Lightning's save_last only follows improvements): a resume never repeats one
    last = ModelCheckpoint(run_dir / "checkpoints", "last", save_top_k=1, enable_version_counter=False)
    callbacks = [ckpt, last] + ([TQDMProgressBar(refresh_rate=5)] if progress else [])
    if cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(cfg.monitor, patience=cfg.early_stopping_patience, mode=mode))
    gpu = torch.cuda.is_available()
    precision = cfg.precision if cfg.precision != "auto" else ("16-mixed" if gpu else "32")
    trainer = pl.Trainer(max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices,
                         precision=precision, callbacks=callbacks, logger=csv_logger(run_dir, resume, _ckpt_epoch(run_dir) if resume else None),
                         enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
                         num_sanity_val_steps=0, deterministic=False)
    t0 = time.perf_counter()
    trainer.fit(module, train_dl, val_dl, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt") if resume else None)
    train_s = time.perf_counter() - t0
    if trainer.interrupted:
        raise LeukodxError(f"training interrupted; checkpoints kept. Resume with: leukodx train --resume {run_dir}")
    if trainer.global_rank != 0:
        return {}

    best = ckpt.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    model = module.model.cpu().eval()

    # calibration and referral are fitted on validation data only
    val_logits = logits_for(model, val_ds.images, pre.cfg.mean, pre.cfg.std)
    scaler = TemperatureScaler().fit(val_logits, val_ds.labels.numpy())

    hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads" + \
        (f", {torch.cuda.get_device_name()}" if gpu else ", no GPU")
    info = {"data": index.name, "split_protocol": split.protocol, "split_sizes": split_summary(index, split),
            "train_seconds": train_s, "load_seconds": t_load, "hardware": hardware,
            "pretrained": f"{cfg.model}: " + ("ImageNet weights" if cfg.pretrained else "trained from scratch"),
            "epochs_run": trainer.current_epoch, "best_checkpoint": Path(best).name}
    bundle = ModelBundle(model, cfg.model, index.classes, pre.to_dict(), model_kwargs, scaler.temperature_, 0.0, info)
    info["referral"] = fit_bundle_referral(bundle, train_ds.images, train_ds.labels.numpy(), val_ds.images,
                                           val_ds.labels.numpy(), cfg.refer_target_accuracy, cfg.refer_unfamiliar_rate,
                                           seed=cfg.seed)
    threshold = bundle.refer_threshold
    bundle.save(run_dir / "model.pt")

    # colour-histogram baseline on the same split: the shortcut to beat
    base = ColorHistogramClassifier().fit(train_ds.images.numpy(), train_ds.labels.numpy())
    test_ds_for_base = ImageDataset(index.subset(te_idx), pre, None, cfg.threads, False)
    base_m = compute_metrics(test_ds_for_base.labels.numpy(), base.predict_proba(test_ds_for_base.images.numpy()),
                             index.classes, n_boot=cfg.bootstrap, seed=cfg.seed)
    baseline = {"accuracy": base_m["accuracy"], "accuracy_ci95": base_m.get("ci95", {}).get("accuracy"),
                "macro_f1": base_m["macro_f1"], "method": "8x8x8 RGB histogram + logistic regression, same split"}

    extra = {"model": cfg.model, "pretrained": info["pretrained"], "data": index.name,
             "split": f"{split.protocol.get('method')} seed {cfg.seed}; test {len(te_idx)} images in "
                      f"{len({split.groups[index.key(index.records[i])] for i in te_idx})} groups",
             "image_size": cfg.image_size, "epochs_run": trainer.current_epoch, "train_seconds": round(train_s, 1),
             "hardware": hardware, "colour_histogram_baseline_accuracy": baseline["accuracy"],
             "colour_histogram_baseline_ci95": baseline["accuracy_ci95"]}
    groups = [split.groups[index.key(index.records[i])] for i in te_idx]
    metrics = evaluate_bundle(bundle, index, te_idx, groups, run_dir / "test", f"{cfg.model} on {index.name}: test split",
                              extra, cfg.bootstrap, cfg.seed, run_dir / "logs" / "metrics.csv", progress)
    summary = {"run_dir": str(run_dir), "accuracy": metrics["accuracy"], "accuracy_ci95": metrics.get("ci95", {}).get("accuracy"),
               "macro_f1": metrics["macro_f1"], "mcc": metrics["mcc"], "n_test": metrics["n"], "train_seconds": train_s,
               "temperature": scaler.temperature_, "refer_threshold": threshold, "baseline": baseline,
               "unreadable_files": bad, "pid": os.getpid()}
    if cfg.head == "xgboost":
        from leukodx.train.tree_head import fit_tree_head
        summary["xgboost"] = fit_tree_head(run_dir, index, progress)
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
