"""Reproduce the seed papers' comparison tables (issue 4) on ../shared/data, writing
results/ddrnet_pbc4.*, results/ddrnet_ablation_pbc4.*, results/ddrnet_taleqani.* and
results/thesis_binary.* (JSON + Markdown).

Default = the CPU protocol (2 cores): 64 px, at most --per-class training images per class, a few
epochs, every model from scratch (no pretrained weights). The papers' protocol is one flag away:
  python benchmarks/seed_networks.py --size 224 --epochs 30 --per-class 0     (GPU advised)
Validation and test sides are always the full grouped split (seed 0).
"""
import argparse

import common

from leukodx.evaluate.tables import write_results
from leukodx.models.ddrnet import VARIANTS

ROOT = common.ROOT
DDRNET = {"optimizer": "adam", "lr": 0.01, "scheduler": "constant", "augment": "ddrnet"}  # paper's training
CLASSIC = {"mask_background": True, "gaussian_sigma": 1.0, "grayscale": True, "optimizer": "adam", "lr": 1e-3,
           "scheduler": "cosine", "augment": "seed"}  # Sudhakar et al. preprocessing
THESIS = {"optimizer": "adam", "lr": 1e-4, "scheduler": "plateau", "plateau_factor": 0.2, "monitor": "val_auc",
          "augment": "thesis", "early_stopping_patience": 5}


def run(name: str, data: str, model: str, args, **kw) -> dict:
    return common.run("seed_networks", name, data=data, model=model, pretrained=False, image_size=args.size,
                      epochs=args.epochs, freeze_epochs=0, batch_size=32, max_images_per_class=args.per_class,
                      seed=0, bootstrap=500, **{"early_stopping_patience": 0, **kw})


def binary_rates(m: dict) -> dict:
    k = m["classes"].index("Malignant")
    pc = m["per_class"]
    return {**m, "sensitivity": round(pc["recall_sensitivity"][k], 4), "specificity": round(pc["specificity"][k], 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--per-class", type=int, default=150)
    ap.add_argument("--only", choices=["ddrnet", "ablation", "taleqani", "thesis", "classic"], nargs="*")
    args = ap.parse_args()
    want = set(args.only or ["ddrnet", "ablation", "taleqani", "thesis", "classic"])
    proto = (f"{args.size} px, {args.epochs} epochs, train side capped at {args.per_class or 'all'} images per class, "
             "from scratch (no pretrained weights), grouped split seed 0 (val/test full), 2 CPU cores")
    extra = {"train min": "wall_minutes"}
    if want & {"ddrnet", "ablation"}:
        full = run("ddrnet_full_pbc4", "pbc4", "ddrnet", args, **DDRNET)
    if "ddrnet" in want:
        rows = [("DDRNet (full)", full)] + [(f"ResNet-{d}", run(f"resnet{d}_pbc4", "pbc4", f"resnet{d}", args, **DDRNET))
                                            for d in (18, 50, 101)]
        rows.append(("DDRNet (full), Adam 1e-3 (not the paper's lr)",
                     run("ddrnet_full_pbc4_lr1e-3", "pbc4", "ddrnet", args, **{**DDRNET, "lr": 1e-3})))
        write_results(ROOT / "results" / "ddrnet_pbc4", rows, "DDRNet vs ResNets, PBC 4 WBC types (paper Tables 4-5 form)",
                      [proto, ("All trained alike: Adam lr 0.01 constant, DDRNet augmentation (paper's setup); the last "
                       "row repeats DDRNet with lr 1e-3 to show its sensitivity to the learning rate."),
                       "Confusion matrices are in the JSON file."], extra=extra)
    if "ablation" in want:
        rows = [(v, full if v == "full" else run(f"ddrnet_{v}_pbc4", "pbc4", "ddrnet", args, model_kwargs={"variant": v},
                                                 **DDRNET)) for v in VARIANTS]
        write_results(ROOT / "results" / "ddrnet_ablation_pbc4", rows, "DDRNet ablation, PBC 4 WBC types (Table 6 form)",
                      [proto, "conv = stem only; + DRDB / GLFEB / CSAB as named."], extra=extra)
    if "taleqani" in want:
        rows = [("DDRNet (full)", run("ddrnet_full_taleqani", "taleqani_all", "ddrnet", args, **DDRNET))]
        write_results(ROOT / "results" / "ddrnet_taleqani", rows, "DDRNet on taleqani_all (4 classes)", [proto], extra=extra)
    if "thesis" in want:
        rows = [(n, binary_rates(run(f"{m}_binary", "taleqani_binary", m, args, **THESIS)))
                for n, m in (("CNN", "thesis_cnn"), ("ViT", "thesis_vit"), ("Hybrid CNN-ViT", "hybrid_cnn_vit"))]
        write_results(ROOT / "results" / "thesis_binary", rows,
                      "Thesis models, taleqani_all benign vs malignant (Tables 3-5 form, original data only)",
                      [proto, "Stand-in for C-NMC 2019, which is not available here; GAN rows come with issue 7.",
                       "Adam 1e-4, LR x0.2 on plateau, early stopping patience 5, best checkpoint on val AUC."],
                      keys=("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc"),
                      extra={"sensitivity (malignant)": "sensitivity", "specificity (malignant)": "specificity",
                             **extra})

    if "classic" in want:
        for data in ("taleqani_all", "pbc"):
            rows = [(n, run(f"{m}_{data}_classic", data, m, args, **CLASSIC))
                    for n, m in (("Conv2D CNN", "classic_cnn"), ("ResNet-34", "resnet34"), ("DenseNet-169", "densenet169"))]
            write_results(ROOT / "results" / f"classic_{data}", rows, f"Classic CNN pipeline on {data} (Sudhakar et al. form)",
                          [proto, ("Preprocessing for all three: Otsu threshold segmentation (background whitened), "
                           "Gaussian low-pass sigma 1, grayscale. Five-class ALL/AML/CLL/CML/healthy data is not "
                           "available here: not measured.")], extra=extra)


if __name__ == "__main__":
    main()
