"""XIncept-ALL comparisons on taleqani_all (issue 5), grouped split seed 0 (the shipped model's split).
Writes results/xincept_all.{json,md}. Runs (each: softmax head, then XGBoost on pooled features):
  fused    EfficientNet-Lite0 + Lite2, offline ImageNet weights, AutoAugment   (the main variant)
  single   EfficientNet-Lite0 alone, offline ImageNet weights, AutoAugment     (single vs fused)
  noauto   EfficientNet-Lite0 alone, the plain 'seed' augmentation             (with vs without auto-aug,
           on the single backbone to fit the 2-core time budget)
  scratch  InceptionV3 + Xception (the paper's backbones) from scratch, 96 px, 200 imgs/class (CPU-feasible)
About 45 minutes on 2 CPU cores. With internet, the paper's pretrained pair is:
  leukodx train --config configs/xincept_all.yaml   (backbones inception_v3 + xception, pretrained)
"""
import common

from leukodx.evaluate.tables import write_results

BASE = {"data": "taleqani_all", "head": "xgboost", "image_size": 160, "epochs": 8, "freeze_epochs": 1, "batch_size": 32,
        "optimizer": "adamw", "lr": 1e-3, "scheduler": "cosine", "early_stopping_patience": 4, "seed": 0,
        "refer_target_accuracy": 0.995}
LITE_PAIR = {"model": "xincept_all", "model_kwargs": {"backbones": ["efficientnet_lite0", "efficientnet_lite2"]}}
RUNS = {
    "fused": ("Lite0+Lite2 fused, offline ImageNet, AutoAugment", {**LITE_PAIR, "augment": "autoaugment"}),
    "single": ("Lite0 single, offline ImageNet, AutoAugment", {"model": "efficientnet_lite0", "augment": "autoaugment"}),
    "noauto": ("Lite0 single, offline ImageNet, no auto-aug", {"model": "efficientnet_lite0", "augment": "seed"}),
    "scratch": ("InceptionV3+Xception fused, from scratch, 96 px", {
        "model": "xincept_all", "model_kwargs": {"backbones": ["inception_v3", "xception"]}, "pretrained": False,
        "augment": "autoaugment", "image_size": 96, "max_images_per_class": 200, "epochs": 6, "freeze_epochs": 0}),
}


def main():
    rows = []
    for key, (label, cfg) in RUNS.items():
        soft = common.run("xincept_all", key, **{**BASE, **cfg})
        trees = common.tree_metrics("xincept_all", key)
        for head, m in (("softmax", soft), ("XGBoost", trees)):
            m["baseline"] = f"{soft['colour_histogram_baseline_accuracy']:.4f}"
            m["train_min"] = f"{soft['train_seconds'] / 60:.1f} + {trees.get('xgboost_fit_seconds', 0) / 60:.1f}"
            m["sens"] = " / ".join(f"{v:.3f}" for v in m["per_class"]["recall_sensitivity"])
            m["spec"] = " / ".join(f"{v:.3f}" for v in m["per_class"]["specificity"])
            rows.append((f"{label}, {head} head", m))
    write_results(common.ROOT / "results" / "xincept_all", rows, "XIncept-ALL on taleqani_all (grouped split, seed 0)",
                  [("Split: StratifiedGroupKFold over 25-number blocks + duplicate groups, test side as in the shipped "
                   "ALL model; CIs: bootstrap over groups (per-class CIs in the JSON)."),
                   "Hardware: 2 CPU cores, no GPU. 'train min' = network training + XGBoost fit.",
                   "Per-class sensitivity / specificity in class order Benign / Early / Pre / Pro.",
                   ("InceptionV3 / Xception ImageNet weights cannot be downloaded here; that row trains them from "
                   "scratch and is not the paper's setting.")],
                  keys=("accuracy", "macro_f1", "mcc"),
                  extra={"sensitivity": "sens", "specificity": "spec", "colour baseline": "baseline",
                         "train min": "train_min"})


if __name__ == "__main__":
    main()
