"""Stage 2 of XIncept-ALL: pooled fused features of a trained run -> XGBoost head (early stopping
on the validation side) -> its own model file and test evaluation in RUN/xgboost/."""
from __future__ import annotations

import json
import time
from pathlib import Path

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.data.torch_dataset import ImageDataset
from leukodx.evaluate.evaluate_run import evaluate_bundle
from leukodx.evaluate.robustness import shifted_copies
from leukodx.heads.xgboost_head import XGBoostHead
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.train.referral import fit_bundle_referral
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


def fit_tree_head(run_dir: str | Path, index=None, progress: bool = True, extra: dict | None = None) -> dict:
    run = Path(run_dir)
    cfg = TrainConfig.load(run / "config.yaml")
    index = index if index is not None else load_dataset(cfg.data)
    split = Split.load(run / "split.json")
    soft = ModelBundle.load(run)
    pre = Preprocess(PreprocessConfig(**soft.preprocess))
    sides = {s: ImageDataset(index.subset(split.indices(index, s)), pre, None, cfg.threads, progress)
             for s in ("train", "val")}
    t0 = time.perf_counter()
    feats = {s: logits_for(soft.model, d.images, pre.cfg.mean, pre.cfg.std, pre_logits=True, views=soft.views)
             for s, d in sides.items()}
    labels = {s: d.labels.numpy() for s, d in sides.items()}
    head = XGBoostHead(seed=cfg.seed, n_jobs=cfg.threads).fit(feats["train"], labels["train"], feats["val"], labels["val"])
    fit_s = time.perf_counter() - t0
    info = {**soft.info, "head": "xgboost", "xgboost_best_iteration": head.best_iteration,
            "xgboost_fit_seconds": round(fit_s, 1)}
    bundle = ModelBundle(soft.model, soft.arch, soft.classes, soft.preprocess, soft.model_kwargs, 1.0, 0.0, info,
                         head.to_json(), knn_k=soft.knn_k, views=soft.views)
    info["referral"] = fit_bundle_referral(bundle, sides["train"].images, labels["train"], sides["val"].images,
                                           labels["val"], cfg.refer_target_accuracy, cfg.refer_unfamiliar_rate,
                                           seed=cfg.seed,
                                           shifted_val=shifted_copies(sides["val"].records, pre, cfg.refer_shifts))
    out = run / "xgboost"
    bundle.save(out / "model.pt")
    te_idx = split.indices(index, "test")
    groups = split.groups_of(index, te_idx)
    prev = json.loads((run / "test" / "metrics.json").read_text()) if (run / "test" / "metrics.json").is_file() else {}
    keep = {k: prev[k] for k in ("model", "pretrained", "data", "split", "image_size", "epochs_run", "train_seconds",
                                 "hardware", "colour_histogram_baseline_accuracy", "colour_histogram_baseline_ci95")
            if k in prev}
    m = evaluate_bundle(bundle, index, te_idx, groups, out / "test", f"{soft.arch} + XGBoost head on {index.name}",
                        {**keep, "head": "xgboost", "xgboost_fit_seconds": round(fit_s, 1), **(extra or {})},
                        cfg.bootstrap, cfg.seed, None, progress)
    return {"accuracy": m["accuracy"], "accuracy_ci95": m.get("ci95", {}).get("accuracy"), "n_test": m["n"],
            "fit_seconds": fit_s, "best_iteration": head.best_iteration, "model": str(out / "model.pt")}
