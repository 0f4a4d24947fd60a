"""`leukodx train`, step by step:

1. data      the grouped split and the train / val / test images (train.data.CellDataModule)
2. fit       Lightning: ClassifierModule, TrainHeadFirst when fine-tuning, checkpoints, early stopping
3. calibrate temperature and referral on the validation side only -> RUN/model.pt
4. evaluate  the test side, beside the colour-histogram baseline on the same split -> RUN/test/
5. stage 2   optional XGBoost head over pooled features -> RUN/xgboost/

A run folder holds: config.yaml, environment.json (machine and library versions), split.json,
checkpoints/, logs/metrics.csv, model.pt, test/metrics.json, test/report.html, test/predictions.csv,
train_summary.json.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path

import torch

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import split_summary
from leukodx.errors import LeukodxError
from leukodx.evaluate.baseline import ColorHistogramClassifier
from leukodx.evaluate.evaluate_run import evaluate_bundle
from leukodx.evaluate.metrics import compute_metrics
from leukodx.evaluate.robustness import shifted_copies
from leukodx.heads.temperature import TemperatureScaler
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.models.registry import create_model, sized_kwargs
from leukodx.train.data import CellDataModule, run_split
from leukodx.train.environment import save_environment
from leukodx.train.referral import fit_bundle_referral, fit_cell_probe_on
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


def _ckpt_epoch(run_dir: Path) -> int | None:
    """The last finished epoch in checkpoints/last.ckpt."""
    try:
        return int(torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["epoch"])
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by Lightning itself
        return None


def _open_run(cfg: TrainConfig, run_dir: Path, resume: bool) -> None:
    if run_dir.exists() and (run_dir / "model.pt").exists() and not resume:
        raise LeukodxError(f"{run_dir}: a finished run is already there; pick a new --out")
    if resume and not (run_dir / "checkpoints" / "last.ckpt").exists():
        raise LeukodxError(f"{run_dir}: nothing to resume (no checkpoints/last.ckpt)")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")


def preprocess_for(cfg: TrainConfig, model) -> Preprocess:
    """The run's input pipeline; mean / std are the model's own (pretrained_cfg) or ImageNet's."""
    pcfg = getattr(model, "pretrained_cfg", {}) or {}
    same = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PreprocessConfig) if hasattr(cfg, f.name)}
    return Preprocess(PreprocessConfig(**{**same, "mean": tuple(pcfg.get("mean", (0.485, 0.456, 0.406))),
                                          "std": tuple(pcfg.get("std", (0.229, 0.224, 0.225)))}))


def _trainer(cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool):
    """The Lightning Trainer and its best-checkpoint callback. With cfg.max_steps the budget is in
    optimiser steps and validation runs every max_steps / 10 steps; else once per epoch."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    from leukodx.train.finetune import TrainHeadFirst
    from leukodx.train.history import csv_logger

    mode = "min" if cfg.monitor == "val_loss" else "max"
    best = ModelCheckpoint(run_dir / "checkpoints", "best", monitor=cfg.monitor, mode=mode)
    # last.ckpt after every validation (Lightning's save_last only follows improvements): a resume never repeats one
    last = ModelCheckpoint(run_dir / "checkpoints", "last", save_top_k=1, enable_version_counter=False)
    callbacks = [best, last] + ([TQDMProgressBar(refresh_rate=5)] if progress else [])
    if (cfg.freeze_epochs or cfg.frozen_layers) and cfg.pretrained:
        callbacks.append(TrainHeadFirst(cfg.freeze_epochs, cfg.frozen_layers))
    if cfg.ema_decay:  # Lightning swaps the average in for validation, checkpoints and the end of training
        from lightning.pytorch.callbacks import WeightAveraging
        from torch.optim.swa_utils import get_ema_multi_avg_fn
        callbacks.append(WeightAveraging(multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay)))
    if cfg.mixstyle:
        from leukodx.train.mixstyle import MixStyle
        callbacks.append(MixStyle(cfg.mixstyle))
    if cfg.amplitude_mix:
        from leukodx.train.amplitude_mix import AmplitudeMix
        callbacks.append(AmplitudeMix(cfg.amplitude_mix))
    if cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStopping(cfg.monitor, patience=cfg.early_stopping_patience, mode=mode))
    budget = ({"max_steps": cfg.max_steps, "max_epochs": -1, "val_check_interval": max(1, cfg.max_steps // 10),
               "check_val_every_n_epoch": None} if cfg.max_steps else {"max_epochs": cfg.epochs})
    gpu_precision = "bf16-mixed" if cfg.sam_rho else "16-mixed"  # SAM needs the closure the 16-bit scaler withholds
    precision = cfg.precision if cfg.precision != "auto" else (gpu_precision if torch.cuda.is_available() else "32")
    trainer = pl.Trainer(accelerator=cfg.accelerator, devices=cfg.devices, precision=precision, callbacks=callbacks,
                         logger=csv_logger(run_dir, resume, _ckpt_epoch(run_dir) if resume else None),
                         enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=10,
                         num_sanity_val_steps=0, deterministic=False, **budget)
    return trainer, best


def _hardware() -> str:
    gpu = torch.cuda.is_available()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads" + \
        (f", {torch.cuda.get_device_name()}" if gpu else ", no GPU")


def colour_baseline(data: CellDataModule, cfg: TrainConfig) -> dict:
    """8x8x8 RGB histogram + logistic regression on the same split: the shortcut to beat."""
    test = data.test_set()
    base = ColorHistogramClassifier().fit(data.train_ds.images.numpy(), data.train_ds.labels.numpy())
    m = compute_metrics(test.labels.numpy(), base.predict_proba(test.images.numpy()), data.index.classes,
                        n_boot=cfg.bootstrap, seed=cfg.seed)
    return {"accuracy": m["accuracy"], "accuracy_ci95": m.get("ci95", {}).get("accuracy"),
            "macro_f1": m["macro_f1"], "method": "8x8x8 RGB histogram + logistic regression, same split"}


def calibrate(model, cfg: TrainConfig, data: CellDataModule, model_kwargs: dict, info: dict) -> ModelBundle:
    """Temperature and referral thresholds from the validation side -> a model bundle."""
    val = data.val_ds
    scaler = TemperatureScaler().fit(logits_for(model, val.images, data.pre.cfg.mean, data.pre.cfg.std,
                                                views=cfg.tta_views), val.labels.numpy())
    bundle = ModelBundle(model, cfg.model, data.index.classes, data.pre.to_dict(), model_kwargs,
                         scaler.temperature_, 0.0, info, views=cfg.tta_views, gray_fallback=cfg.gray_fallback)
    info["referral"] = fit_bundle_referral(bundle, data.train_ds.images, data.train_ds.labels.numpy(), val.images,
                                           val.labels.numpy(), cfg.refer_target_accuracy, cfg.refer_unfamiliar_rate,
                                           seed=cfg.seed, train_groups=data.train_groups(),
                                           shifted_val=shifted_copies(val.records, data.pre, cfg.refer_shifts))
    if cfg.refer_no_cell:
        info["referral"]["cell_probe"] = fit_cell_probe_on(bundle, val.records, data.pre, cfg.refer_no_cell)
    return bundle


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True, index=None) -> dict:
    """Train and evaluate; returns the test metrics. `index` overrides cfg.data (e.g. generated data)."""
    import lightning.pytorch as pl

    from leukodx.train.finetune import named_layers
    from leukodx.train.module import ClassifierModule

    run_dir = Path(run_dir)
    _open_run(cfg, run_dir, resume)
    torch.set_num_threads(cfg.threads)
    environment = save_environment(run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    # 1. data
    index = index if index is not None else load_dataset(cfg.data)
    split = run_split(cfg, index, run_dir, progress)
    model_kwargs = sized_kwargs(cfg.model, cfg.image_size, cfg.model_kwargs)
    model = create_model(cfg.model, num_classes=len(index.classes), pretrained=cfg.pretrained, **model_kwargs)
    named_layers(model, cfg.frozen_layers)  # a misspelt layer fails here, before the images load
    data = CellDataModule(cfg, index, split, preprocess_for(cfg, model), progress)
    data.setup()

    # 2. fit (optionally from a linear probe on the pretrained features)
    probe_accuracy = None
    if cfg.probe_init and not resume:
        from leukodx.train.finetune import probe_init
        probe_accuracy = probe_init(model, data.train_ds.images, data.train_ds.labels.numpy(), data.pre.cfg.mean,
                                    data.pre.cfg.std, cfg.probe_init)
    module = ClassifierModule(model.to(memory_format=torch.channels_last), len(index.classes), data.pre.cfg.mean,
                              data.pre.cfg.std, cfg.lr, cfg.weight_decay, cfg.optimizer, cfg.scheduler,
                              cfg.warmup_steps, data.loss_weights(), cfg.label_smoothing, cfg.plateau_factor,
                              cfg.monitor, cfg.consistency, cfg.domain_weight, cfg.mixup_cutmix, cfg.sam_rho)
    trainer, best_cb = _trainer(cfg, run_dir, resume, progress)
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=data, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt") if resume else None)
    train_s = time.perf_counter() - t0
    if trainer.interrupted:
        raise LeukodxError(f"training interrupted; checkpoints kept. Resume with: leukodx train --resume {run_dir}")
    if trainer.global_rank != 0:
        return {}
    best = best_cb.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    model = module.model.to(trainer.strategy.root_device).eval()  # calibrated and tested where it trained

    # 3. calibrate
    hardware = _hardware()
    info = {"data": index.name, "split_protocol": split.protocol, "split_sizes": split_summary(index, split),
            "train_seconds": train_s, "load_seconds": data.load_seconds, "hardware": hardware,
            "pretrained": f"{cfg.model}: " + ("ImageNet weights" if cfg.pretrained else "trained from scratch"),
            "epochs_run": trainer.current_epoch, "steps_run": trainer.global_step, "best_checkpoint": Path(best).name,
            **({"probe_train_accuracy": probe_accuracy} if probe_accuracy is not None else {})}
    bundle = calibrate(model, cfg, data, model_kwargs, info)
    bundle.save(run_dir / "model.pt")

    # 4. evaluate, beside the colour baseline
    baseline = colour_baseline(data, cfg)
    extra = {"model": cfg.model, "pretrained": info["pretrained"], "data": index.name,
             "split": f"{split.protocol.get('method')} seed {split.protocol.get('seed', cfg.seed)}; test "
                      f"{len(data.test_idx)} images in {len(set(data.test_groups()))} groups",
             "image_size": cfg.image_size, "epochs_run": trainer.current_epoch, "steps_run": trainer.global_step,
             "train_seconds": round(train_s, 1), "hardware": hardware, "precision": str(trainer.precision),
             "environment": environment,
             "colour_histogram_baseline_accuracy": baseline["accuracy"],
             "colour_histogram_baseline_ci95": baseline["accuracy_ci95"]}
    metrics = evaluate_bundle(bundle, index, data.test_idx, data.test_groups(), run_dir / "test",
                              f"{cfg.model} on {index.name}: test split", extra, cfg.bootstrap, cfg.seed,
                              run_dir / "logs" / "metrics.csv", progress)
    summary = {"run_dir": str(run_dir), "accuracy": metrics["accuracy"], "accuracy_ci95": metrics.get("ci95", {}).get("accuracy"),
               "macro_f1": metrics["macro_f1"], "mcc": metrics["mcc"], "n_test": metrics["n"], "train_seconds": train_s,
               "temperature": bundle.temperature, "refer_threshold": bundle.refer_threshold, "baseline": baseline,
               "unreadable_files": data.unreadable, "pid": os.getpid()}

    # 5. stage 2
    if cfg.head == "xgboost":
        from leukodx.train.tree_head import fit_tree_head
        summary["xgboost"] = fit_tree_head(run_dir, index, progress)
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
