"""GAN study on taleqani_all (issue 7), in stages that each write their results files:
  1. train DCGAN, WGAN-GP (one generator per class) and a cGAN (all classes) on the train side of the
     grouped split (seed 0), 64 px, width 32, batch 32, DiffAugment (translation + cutout; without it
     the thesis DCGAN collapsed to one image per class here); synthesize 500 images per class each
  2. quality per class and overall (FID-Lite0, KID-Lite0, IS-Lite0, SSIM, precision/recall,
     memorisation) -> results/gan_quality.{json,md}
  3. augmentation study, thesis Tables 3-5 form: thesis CNN / ViT / hybrid on real vs real + each GAN
     (ratio 1:1), evaluated on the same real grouped test split; plus train-on-synthetic / test-on-real
     (TSTR) with the thesis CNN and with EfficientNet-Lite0 (offline ImageNet weights)
     -> results/gan_augmentation_{4class,binary}.{json,md}
CPU protocol (2 cores): 64 px, --gan-epochs GAN epochs, classifier runs 15 epochs (early stopping 5).
  python benchmarks/gan_study.py [--gan-epochs 70] [--gan-width 32] [--threads 2]
"""
import argparse
import csv
import json
from pathlib import Path

import common

from leukodx.evaluate.tables import write_results
from leukodx.gan.evaluate import evaluate_gan
from leukodx.gan.run import synthesize, train_gan

ROOT = common.ROOT
GANS = ("dcgan", "wgan_gp", "cgan")
MODELS = (("CNN", "thesis_cnn"), ("ViT", "thesis_vit"), ("Hybrid CNN-ViT", "hybrid_cnn_vit"))
BINARY = {"Benign": "Benign", "Early": "Malignant", "Pre": "Malignant", "Pro": "Malignant"}


def binary_manifest(man: Path) -> Path:
    out = man.with_name("manifest_binary.csv")
    with open(man) as f:
        rows = list(csv.DictReader(f))
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "label": BINARY[r["label"]]})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gan-epochs", type=int, default=70)
    ap.add_argument("--gan-width", type=int, default=32)
    ap.add_argument("--gan-batch", type=int, default=32)
    ap.add_argument("--no-diffaugment", dest="diffaugment", action="store_false")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--stages", nargs="*", default=["gans", "quality", "study"], choices=["gans", "quality", "study"])
    args = ap.parse_args()
    gan_root = ROOT / "runs" / "gan"
    manifests = {}
    for kind in GANS:  # stage 1
        run = gan_root / kind
        if not (run / "generator.pt").is_file():
            train_gan("taleqani_all", kind, run, args.size, args.gan_epochs, args.gan_batch, 0,
                      resume=(run / "gan.yaml").is_file(), progress=False, width=args.gan_width,
                      diffaugment=args.diffaugment)
        man = gan_root / f"synthetic_{kind}" / "manifest.csv"
        if not man.is_file():
            synthesize(run, man.parent, 500)
        manifests[kind] = man
        print(f"GAN {kind} ready", flush=True)
    if "quality" not in args.stages:
        return
    quality_rows = {}
    for kind in GANS:  # stage 2
        q = gan_root / kind / "quality.json"
        quality_rows[kind] = json.loads(q.read_text()) if q.is_file() else evaluate_gan(gan_root / kind, 200)
    write_quality(quality_rows, args)
    if "study" not in args.stages:
        return
    rows4, rows2, tstr = [], [], []
    base = {"pretrained": False, "image_size": args.size, "epochs": 15, "freeze_epochs": 0, "optimizer": "adam",
            "lr": 1e-4, "scheduler": "plateau", "plateau_factor": 0.2, "monitor": "val_auc", "augment": "thesis",
            "early_stopping_patience": 5, "seed": 0, "threads": args.threads, "bootstrap": 500}
    for label, model in MODELS:  # stage 3
        for data, rows, relabel in (("taleqani_all", rows4, False), ("taleqani_binary", rows2, True)):
            rows.append((f"{label}, real", common.run("gan_study", f"{model}_{data}_real", data=data, model=model, **base)))
            for kind in GANS:
                man = binary_manifest(manifests[kind]) if relabel else manifests[kind]
                rows.append((f"{label}, real + {kind}", common.run("gan_study", f"{model}_{data}_{kind}", data=data,
                                                                   model=model, synthetic=str(man), **base)))
            write_augmentation(rows4, rows2, tstr, args)
    lite0 = {**base, "model": "efficientnet_lite0", "pretrained": True, "freeze_epochs": 1, "lr": 1e-3,
             "optimizer": "adamw", "scheduler": "cosine", "monitor": "val_loss", "augment": "seed"}
    tstr.append(("Lite0 (ImageNet), real", common.run("gan_study", "lite0_real", data="taleqani_all", **lite0)))
    for kind in GANS:
        tstr.append((f"TSTR: CNN trained on {kind} only", common.run(
            "gan_study", f"tstr_{kind}", data="taleqani_all", model="thesis_cnn", synthetic=str(manifests[kind]),
            synthetic_mode="only", **base)))
        tstr.append((f"TSTR: Lite0 (ImageNet) trained on {kind} only", common.run(
            "gan_study", f"tstr_lite0_{kind}", data="taleqani_all", synthetic=str(manifests[kind]),
            synthetic_mode="only", **lite0)))
        write_augmentation(rows4, rows2, tstr, args)


def write_quality(res: dict, args) -> None:
    rows = []
    lines = ["# GAN quality on taleqani_all (grouped split seed 0, train side)", "",
             f"- Protocol: {next(iter(res.values()))['overall']['protocol']}",
             ("- Real reference = the GAN's own training images (200 per class). 'real val' rows score real validation "
              "images the same way: the floor a perfect generator would reach. Memorisation: synthetic vs train, "
              "compared with real validation images vs train."),
             (f"- GAN training: {args.gan_epochs} epochs, {args.size} px, width {args.gan_width}, batch {args.gan_batch}, "
              f"DiffAugment {args.diffaugment}, 2 CPU cores. Closest pairs: runs/gan/KIND/closest_pairs.png"),
             "", ("| GAN | class | FID-Lite0 | KID-Lite0 (mean, std) | IS-Lite0 (mean, std) | SSIM fake / real pairs | "
                  "MS-SSIM fake / real pairs | precision | recall | share closer than real p5 |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    ref = next(iter(res.values())).get("real_reference")
    for kind, r in [*res.items(), *([("real val", {"per_class": {}, "overall": ref})] if ref else [])]:
        for c, q in [*r["per_class"].items(), ("overall", r["overall"])]:
            mem = q.get("memorisation", {}).get("share_fake_closer_than_held_out_p5", "-")
            lines.append(f"| {kind} | {c} | {q['fid_lite0']} | {q['kid_lite0']} | {q['is_lite0']} | "
                         f"{q['ssim_fake_pairs']} / {q['ssim_real_pairs']} | "
                         f"{q.get('ms_ssim_fake_pairs', '-')} / {q.get('ms_ssim_real_pairs', '-')} | "
                         f"{q['precision']} | {q['recall']} | {mem} |")
        rows.append({"gan": kind, **r})
    (ROOT / "results" / "gan_quality.md").write_text("\n".join(lines) + "\n")
    (ROOT / "results" / "gan_quality.json").write_text(json.dumps(rows, indent=1))


def write_augmentation(rows4, rows2, tstr, args) -> None:
    note = ["Same real grouped test split (seed 0) for every row; synthetic images only ever on the train side.",
            ("Thesis training: Adam 1e-4, LR x0.2 on plateau, early stopping 5 on val AUC, 15 epochs max, 64 px, "
            "from scratch, 2 CPU cores. Real + GAN = one synthetic image per real training image.")]
    for _, m in rows2:
        k = m["classes"].index("Malignant")
        m["sens"] = round(m["per_class"]["recall_sensitivity"][k], 4)
        m["spec"] = round(m["per_class"]["specificity"][k], 4)
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")
    write_results(ROOT / "results" / "gan_augmentation_4class", rows4 + tstr,
                  "Augmentation study, taleqani_all 4 classes (and train-on-synthetic / test-on-real)", note, keys)
    write_results(ROOT / "results" / "gan_augmentation_binary", rows2,
                  "Augmentation study, taleqani_all benign vs malignant (Tables 3-5 form)", note, keys,
                  extra={"sensitivity": "sens", "specificity": "spec"})


if __name__ == "__main__":
    main()
