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
CPU protocol (2 cores): 64 px, --gan-epochs GAN epochs, classifier runs --epochs 10 (early stopping 5).
--longer-dcgan N also resumes a copy of the DCGAN run up to N epochs (runs/gan/dcgan_N) and adds its
quality, TSTR and 4-class rows: does more generator training close the TSTR gap?
  python benchmarks/gan_study.py [--gan-epochs 70] [--gan-width 32] [--threads 2] [--longer-dcgan 200]
  # stage 3 faster as two 1-thread shards, then one call to write the tables:
  python benchmarks/gan_study.py --threads 1 --shard 0/2 & python benchmarks/gan_study.py --threads 1 --shard 1/2; wait
  python benchmarks/gan_study.py
"""
import argparse
import csv
import json
import os
import shutil
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
    tmp = out.with_suffix(f".{os.getpid()}.tmp")  # shards may write it at the same time
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "label": BINARY[r["label"]]})
    os.replace(tmp, out)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gan-epochs", type=int, default=70)
    ap.add_argument("--gan-width", type=int, default=32)
    ap.add_argument("--gan-batch", type=int, default=32)
    ap.add_argument("--no-diffaugment", dest="diffaugment", action="store_false")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10, help="classifier epochs (the thesis's early stopping still applies)")
    ap.add_argument("--shard", type=lambda v: tuple(map(int, v.split("/"))), metavar="K/N",
                    help="run only every N-th classifier job still to run, from K (two 1-thread shards use 2 cores best); "
                         "a final call without --shard writes the tables")
    ap.add_argument("--collect", action="store_true", help="write the tables from finished runs only, train nothing")
    ap.add_argument("--longer-dcgan", type=int, default=0, metavar="N",
                    help="also resume a copy of the DCGAN run to N epochs; adds quality, TSTR and 4-class rows")
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
    if args.longer_dcgan:
        manifests[f"dcgan_{args.longer_dcgan}"] = longer_dcgan(gan_root, args)
    if "quality" not in args.stages:
        return
    quality_rows = {}
    for kind in manifests:  # stage 2
        q = gan_root / kind / "quality.json"
        quality_rows[kind] = json.loads(q.read_text()) if q.is_file() else evaluate_gan(gan_root / kind, 200)
    write_quality(quality_rows, args)
    if "study" not in args.stages:
        return
    tables, missing, pending = {"4class": [], "binary": [], "tstr": []}, [], 0
    for table, label, name, cfg in study_jobs(args, manifests):  # stage 3
        done = common.is_done("gan_study", name, cfg)
        if args.collect and not done:
            missing.append(label if table != "binary" else f"{label} (binary)")
        elif done or args.shard is None:
            tables[table].append((label, common.run("gan_study", name, **cfg)))
        else:  # shards split the jobs still to run, so they stay balanced after a restart
            pending += 1
            if (pending - 1) % args.shard[1] == args.shard[0]:
                common.run("gan_study", name, **cfg)
    if args.shard is None:
        write_augmentation(tables, args, missing)


def longer_dcgan(gan_root: Path, args) -> Path:
    """Copy the DCGAN run's checkpoints to runs/gan/dcgan_N and resume them up to N epochs. split.json
    is copied with a fresh file time, so the quality table's minutes are those of the extra epochs."""
    run, src = gan_root / f"dcgan_{args.longer_dcgan}", gan_root / "dcgan"
    if not (run / "generator.pt").is_file():
        if not run.is_dir():
            for sub in src.iterdir():
                if (sub / "checkpoints").is_dir():
                    shutil.copytree(sub, run / sub.name)
            shutil.copy(src / "gan.yaml", run / "gan.yaml")
            shutil.copy(src / "split.json", run / "split.json")
        train_gan("taleqani_all", "dcgan", run, args.size, args.longer_dcgan, args.gan_batch, 0, resume=True,
                  progress=False, width=args.gan_width, diffaugment=args.diffaugment)
    man = gan_root / f"synthetic_dcgan_{args.longer_dcgan}" / "manifest.csv"
    if not man.is_file():
        synthesize(run, man.parent, 500)
    return man


def study_jobs(args, manifests: dict) -> list[tuple[str, str, str, dict]]:
    """(table, row label, run name, train config) for every classifier run of the study."""
    base = {"pretrained": False, "image_size": args.size, "epochs": args.epochs, "freeze_epochs": 0,
            "optimizer": "adam", "lr": 1e-4, "scheduler": "plateau", "plateau_factor": 0.2, "monitor": "val_auc",
            "augment": "thesis", "early_stopping_patience": 5, "seed": 0, "threads": args.threads, "bootstrap": 500}
    lite0 = {**base, "model": "efficientnet_lite0", "pretrained": True, "freeze_epochs": 1, "lr": 1e-3,
             "optimizer": "adamw", "scheduler": "cosine", "monitor": "val_loss", "augment": "seed"}
    jobs = [("tstr", "Lite0 (ImageNet), real", "lite0_real", {**lite0, "data": "taleqani_all"})]
    for kind, man in manifests.items():  # the thesis's three GANs, then a longer-trained DCGAN if asked for
        only = {"data": "taleqani_all", "synthetic": str(man), "synthetic_mode": "only"}
        jobs.append(("tstr", f"TSTR: CNN trained on {kind} only", f"tstr_{kind}", {**base, "model": "thesis_cnn", **only}))
        jobs.append(("tstr", f"TSTR: Lite0 (ImageNet) trained on {kind} only", f"tstr_lite0_{kind}", {**lite0, **only}))
    binary = {kind: binary_manifest(manifests[kind]) for kind in GANS}
    for data, table in (("taleqani_all", "4class"), ("taleqani_binary", "binary")):
        for label, model in MODELS:
            cfg = {**base, "data": data, "model": model}
            jobs.append((table, f"{label}, real", f"{model}_{data}_real", cfg))
            for kind, man in (binary if table == "binary" else manifests).items():
                jobs.append((table, f"{label}, real + {kind}", f"{model}_{data}_{kind}", {**cfg, "synthetic": str(man)}))
    return jobs


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
    mins = {k: round(((ROOT / "runs" / "gan" / k / "generator.pt").stat().st_mtime -
                      (ROOT / "runs" / "gan" / k / "split.json").stat().st_mtime) / 60, 1) for k in res}
    lines.insert(5, f"- GAN training wall minutes (split.json to generator.pt file times): {mins}")
    if args.longer_dcgan:
        lines.insert(6, f"- dcgan_{args.longer_dcgan}: the DCGAN run resumed up to {args.longer_dcgan} epochs "
                        "(its minutes are those of the extra epochs)")
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


def write_augmentation(tables: dict, args, missing: list[str]) -> None:
    note = ["Same real grouped test split (seed 0) for every row; synthetic images only ever on the train side.",
            (f"Thesis training: Adam 1e-4, LR x0.2 on plateau, early stopping 5 on val AUC, {args.epochs} epochs max, "
             f"{args.size} px, from scratch, 2 CPU cores. Real + GAN = one synthetic image per real training image, "
             "classes balanced. TSTR = trained on synthetic images only (as many as the real train side), model "
             "chosen on the real validation side, tested on real test images. Lite0 rows: ImageNet "
             "EfficientNet-Lite0 (offline weights), AdamW 1e-3 cosine, first epoch frozen.")]
    if missing:
        note.append(f"NOT RUN YET (written with --collect): {'; '.join(missing)}")
    for _, m in tables["binary"]:
        k = m["classes"].index("Malignant")
        m["sens"] = round(m["per_class"]["recall_sensitivity"][k], 4)
        m["spec"] = round(m["per_class"]["specificity"][k], 4)
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "roc_auc")
    write_results(ROOT / "results" / "gan_augmentation_4class", tables["4class"] + tables["tstr"],
                  "Augmentation study, taleqani_all 4 classes (and train-on-synthetic / test-on-real)", note, keys)
    if tables["binary"]:
        write_results(ROOT / "results" / "gan_augmentation_binary", tables["binary"],
                      "Augmentation study, taleqani_all benign vs malignant (Tables 3-5 form)", note, keys,
                      extra={"sensitivity": "sens", "specificity": "spec"})


if __name__ == "__main__":
    main()
