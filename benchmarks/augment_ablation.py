"""Which training ingredient removes which shortcut (issue 13): EfficientNet-Lite0 (offline ImageNet
weights) fine-tuned on PBC (8 WBC types) with the `robust` augmentation, once with everything, once
without each ingredient, once with cell-centred input (the white cell found, centred and cropped to
3.5 nucleus diameters) and once with the old `seed` preset. The v2 rows add the `tight_crop` ingredient
and pad cell-centred crops with the background colour; there centring fixes the scale, so the zoom is narrow. Scored on the PBC validation side
(in distribution, and in grayscale) and zero-shot on both wbc_external labs. Writes
results/augment_ablation.{json,md}.

The budget is reduced so that 11 runs fit a CPU session (2 cores): 96 px, --per-class training images
per class (default 250), 4 epochs (1 frozen), one seed. Selection uses the validation side and
wbc_external; the PBC test side is not looked at.
  python benchmarks/augment_ablation.py [--threads 1 --shard 0/2]   # finished runs are skipped
"""
import argparse
import json

import common

from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.evaluate.robustness import external_rows, shift_rows
from leukodx.models.artifact import ModelBundle
from leukodx.transforms.augment import ROBUST_INGREDIENTS

ROOT = common.ROOT
VARIANTS = {"seed preset (before)": {"augment": "seed"}, "robust (all)": {"augment": "robust"},
            "robust + cell-centred input": {"augment": "robust", "cell_centre": 3.5},
            "robust without hue + cell-centred input": {"augment": "robust", "augment_drop": ["hue"], "cell_centre": 3.5},
            "robust + grayscale input": {"augment": "robust", "grayscale": True}}
VARIANTS.update({f"robust without {x}": {"augment": "robust", "augment_drop": [x]} for x in ROBUST_INGREDIENTS
                 if x != "tight_crop"})
# v2: robust gained the tight_crop ingredient, and cell-centring pads with the background colour
NARROW = {"augment": "robust", "augment_drop": ["scale"], "cell_centre": 3.5}  # centring fixes the scale
VARIANTS.update({"v2 robust": {"augment": "robust"},
                 "v2 robust + grayscale input": {"augment": "robust", "grayscale": True},
                 "v2 robust + cell-centred input (narrow zoom)": NARROW,
                 "v2 robust + cell-centred + grayscale input (narrow zoom)": {**NARROW, "grayscale": True},
                 "v2 robust + cell-centred input 2.5 diameters (narrow zoom)": {**NARROW, "cell_centre": 2.5},
                 "v2 robust + cell-centred input 5 diameters (narrow zoom)": {**NARROW, "cell_centre": 5.0},
                 "v2 robust without hed + cell-centred input (narrow zoom)": {**NARROW, "augment_drop": ["scale", "hed"]},
                 "v2 robust + cell-centred input 2 diameters (narrow zoom)": {**NARROW, "cell_centre": 2.0}})
# v3: the shipped recipe (centring at 2.5 diameters) with one change each
V3 = {**NARROW, "cell_centre": 2.5}
SEEDS = (("", {}), (" (seed 1)", {"seed": 1}))  # (name tag, config) of the two seeds a row pair runs
VARIANTS.update({"v3 + MixStyle": {**V3, "mixstyle": 0.5},
                 "v3 with EfficientNet-Lite2": {**V3, "model": "efficientnet_lite2"},
                 "v3 at 128 px": {**V3, "image_size": 128},
                 "v3 + stain transfer p 0.3": {**V3, "stain_transfer": 0.3},
                 "v3 + white-balanced input": {**V3, "white_balance": True},
                 "v3 at 64 px": {**V3, "image_size": 64},
                 "v3 + blur up to 3 px": {**V3, "blur_sigma": 3.0},
                 "v3 re-run with current code": V3,
                 "v3 + random convolutions p 0.5": {**V3, "random_conv": 0.5},
                 "v3 + weight average (EMA 0.99)": {**V3, "ema_decay": 0.99},
                 "v3 + random tone curves p 0.5": {**V3, "tone_curves": 0.5},
                 "v3 + random tone curves p 1": {**V3, "tone_curves": 1.0},
                 "v3 re-run with current code (seed 1)": {**V3, "seed": 1},
                 "v3 + random tone curves p 0.5 (seed 1)": {**V3, "tone_curves": 0.5, "seed": 1}})
# a consistency loss between two augmented views of each image (AugMix's Jensen-Shannon term, lambda 12)
CONS = {"consistency": 12.0}
VARIANTS.update({"v3 + consistency loss 12": {**V3, **CONS},
                 "v3 + consistency loss 12 (seed 1)": {**V3, **CONS, "seed": 1},
                 "v3 + random tone curves p 0.5 + consistency loss 12": {**V3, **CONS, "tone_curves": 0.5},
                 "v3 + random tone curves p 0.5 + consistency loss 12 (seed 1)": {**V3, **CONS, "tone_curves": 0.5,
                                                                                "seed": 1}})
# stain-free input (nucleus mask + stretched darkness): the colour ingredients have nothing left to vary
VARIANTS.update({"v3 with stain-free input": {**V3, "stain_free": True,
                                              "augment_drop": ["scale", "background", "hed", "colour", "hue", "grayscale"]},
                 "v3 with nucleus-only input": {**V3, "nucleus_only": True},
                 "v3 with stain-free nucleus-only input": {**V3, "stain_free": True, "nucleus_only": True,
                                                           "augment_drop": ["scale", "background", "hed", "colour", "hue",
                                                                            "grayscale"]}})
# the nucleus found by its red and green absorption, not green alone (red cells absorb green, results/cell_finder.md)
VARIANTS.update({"v3 + red-green cell finder": {**V3, "cell_darkness": "red_green"},
                 "v3 + red-green cell finder (seed 1)": {**V3, "cell_darkness": "red_green", "seed": 1}})
# a fixed Gaussian low-pass at input, at training and prediction alike (`gaussian_sigma`, the classic pipeline's filter):
# every lab's image loses the fine detail a sharp camera shows and a blurred one does not
VARIANTS.update({f"v3 + Gaussian low-pass input {s:g} px" + tag: {**V3, "gaussian_sigma": s, **seed}
                 for s in (1.0, 2.0) for tag, seed in SEEDS})
VARIANTS.update({"v3 re-run on 2026-12-06": V3, "v3 re-run on 2026-12-06 (seed 1)": {**V3, "seed": 1}})  # their baseline
# stain transfer to unlabelled white cells of a third lab (BCCD smear fields, never labelled by type) instead of to
# other PBC images: real other-lab stains and backgrounds, no labels and no wbc_external image
VARIANTS.update({f"v3 + stain transfer to BCCD white cells p {p:g}" + tag: {**V3, "stain_transfer": p,
                                                                            "stain_refs": "bccd_smears", **seed}
                 for p in (0.3, 0.6) for tag, seed in SEEDS})

# stain transfer to other PBC images again, after Macenko was rewritten (2026-12-06: torchstain's inverted some nuclei
# and tinted backgrounds, results/macenko_check.md); the row above it used torchstain's for half its references
VARIANTS.update({"v3 + stain transfer p 0.3 with leukodx Macenko" + tag: {**V3, "stain_transfer": 0.3, **seed}
                 for tag, seed in SEEDS})

# without tight_crop: red cells stay around every training cell, a ruler for the nucleus's size (a small lymphocyte's
# nucleus is larger against a red cell than an erythroblast's), which tecom's lymphocytes (read as erythroblasts) show
VARIANTS.update({"v3 without tight_crop" + tag: {**V3, "augment_drop": ["scale", "tight_crop"], **seed}
                 for tag, seed in SEEDS})
# local contrast equalisation at input (CLAHE of lightness, `clahe`), training and prediction alike: a blurred,
# low-contrast camera's nucleus and cytoplasm come out with the contrast a sharp one shows
VARIANTS.update({"v3 + CLAHE input 0.01" + tag: {**V3, "clahe": 0.01, **seed}
                 for tag, seed in SEEDS})
# domain-adversarial training (DANN, `domain_cells` / `domain_weight`, leukodx.train.domain): the 372 unlabelled BCCD white
# cells ride along (a quarter of the samples) and a gradient-reversed lab classifier on the pooled features pushes the
# backbone towards features in which PBC and BCCD cells look alike
VARIANTS.update({f"v3 + domain-adversarial BCCD white cells w {w:g}" + tag: {**V3, "domain_cells": "bccd_smears",
                                                                           "domain_weight": w, **seed}
                 for w in (1.0, 0.3) for tag, seed in SEEDS})

# early layers kept at their ImageNet weights and BatchNorm statistics for the whole run (`frozen_layers`): the
# low-level filters stay the general ones rather than PBC's camera and stain
FROZEN = {"stem and blocks 0-2": ["conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2"],
          "stem and blocks 0-4": ["conv_stem", "bn1", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4"]}
VARIANTS.update({f"v3 + {name} frozen" + tag: {**V3, "frozen_layers": layers, **seed}
                 for name, layers in FROZEN.items() for tag, seed in SEEDS})
# LP-FT (Kumar et al. 2022): the classifier starts as a logistic regression on the pretrained features (`probe_init`)
VARIANTS.update({f"v3 + linear-probe start (LP-FT C {c:g})" + tag: {**V3, "probe_init": c, **seed}
                 for c in (1.0, 0.01) for tag, seed in SEEDS})
# Fourier amplitude mix (FACT, Xu et al. 2021; `amplitude_mix`): a training image keeps its phase (shapes) and label,
# its amplitude spectrum (colour, contrast, texture energy, sharpness) is mixed with another image's
VARIANTS.update({f"v3 + Fourier amplitude mix p {p:g}" + tag: {**V3, "amplitude_mix": p, **seed}
                 for p in (0.5,) for tag, seed in SEEDS})
# softer targets: label smoothing (`label_smoothing`), reported to help calibration; does it change what transfers?
VARIANTS.update({"v3 + label smoothing 0.1" + tag: {**V3, "label_smoothing": 0.1, **seed} for tag, seed in SEEDS})
# MixUp / CutMix (torchvision) on half the batches (`mixup_cutmix`): images and labels mixed between cells
VARIANTS.update({"v3 + MixUp or CutMix p 0.5" + tag: {**V3, "mixup_cutmix": 0.5, **seed} for tag, seed in SEEDS})
# sharpness-aware minimisation (SAM, Foret et al. 2021; `sam_rho`): flat minima, reported to transfer better to unseen
# domains (Cha et al. 2021); twice the compute per step
VARIANTS.update({f"v3 + sharpness-aware minimisation rho {r:g}" + tag: {**V3, "sam_rho": r, **seed}
                 for r in (0.05, 0.2) for tag, seed in SEEDS})


def slug(name: str) -> str:
    return name.replace(" ", "_").replace("(", "").replace(")", "")


def score(name: str, args) -> dict:
    run_dir = ROOT / "runs" / "augment_ablation" / slug(name)
    done = run_dir / "ablation_scores.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = {"data": "pbc", "model": "efficientnet_lite0", "pretrained": True, "image_size": args.size,
           "epochs": args.epochs, "freeze_epochs": 1, "batch_size": 32, "lr": 1e-3, "max_images_per_class": args.per_class,
           "seed": args.seed, "bootstrap": 200, "threads": args.threads, "early_stopping_patience": 0}
    m = common.run("augment_ablation", slug(name), **{**cfg, **VARIANTS[name]})
    bundle = ModelBundle.load(run_dir / "model.pt")
    index, split = load_dataset("pbc"), Split.load(run_dir / "split.json")
    va = split.indices(index, "val")
    rows = shift_rows(bundle, index, va, split.groups_of(index, va),
                      ["none", "grayscale"], "pbc val", n_boot=500)
    ext, _ = external_rows(bundle, load_dataset("wbc_external"), n_boot=500)
    out = {"variant": name, "config": VARIANTS[name], "train_minutes": m.get("wall_minutes"),
           "rows": rows + ext}
    done.write_text(json.dumps(out, indent=1))
    print(f"{name}: " + ", ".join(f"{r['set']}/{r['shift']} {r['accuracy']:.3f}" for r in out["rows"]), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shard", default="0/1", help="K/N: run every N-th variant starting at K")
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--collect", action="store_true", help="write the tables from finished runs only")
    args = ap.parse_args()
    k, n = map(int, args.shard.split("/"))
    names = args.only.split(",") if args.only else list(VARIANTS)
    if not args.collect:
        for name in names[k::n]:
            score(name, args)
        if args.only or n > 1:
            return
    done = {name: ROOT / "runs" / "augment_ablation" / slug(name) / "ablation_scores.json" for name in VARIANTS}
    # rows whose run folder is gone (a fresh checkout) are kept from the committed table
    table = ROOT / "results" / "augment_ablation.json"
    kept = {r["variant"]: r for r in json.loads(table.read_text())} if table.is_file() else {}
    results = [json.loads(f.read_text()) if f.is_file() else kept[name] for name, f in done.items()
               if f.is_file() or name in kept]
    missing = [name for name, f in done.items() if not f.is_file() and name not in kept]
    cols = [("pbc val", "none"), ("pbc val", "grayscale"), ("wbc_external/tecom", "none"),
            ("wbc_external/cellavision_blog", "none")]
    lines = ["# Augmentation ablation (issue 13): which ingredient removes which shortcut", "",
             (f"- EfficientNet-Lite0 with offline ImageNet weights, fine-tuned on PBC 8 types: {args.size} px, "
             f"{args.per_class} training images per class, {args.epochs} epochs (1 frozen), seed {args.seed}, "
             "2 CPU cores. A reduced budget: compare rows with each other, not with the shipped model."),
             ("- pbc val: validation side of the grouped split (seed 0), 95% CI by bootstrap over groups. "
             "wbc_external: other labs, zero-shot, five shared classes, 95% CI by bootstrap over images."),
             ("- Rows named v2 were run after the robust preset gained `tight_crop` and cell-centring began to "
              "pad with the background colour; the other rows are from before (robust = all ingredients but tight_crop)."),
             ("- Rows named v3 start from the shipped WBC v3 recipe (the v2 row centred at 2.5 diameters) and change "
              "one thing: MixStyle in the first three stages (p 0.5, `mixstyle`), the EfficientNet-Lite2 backbone, 128 or 64 px "
              "input, stain transfer, white-balanced input (each image divided by its background colour, "
              "`white_balance`), training blur up to 3 px (`blur_sigma`; v3 has 1.5) or random convolutions "
              "(RandConv, Xu et al. 2021, `random_conv`: a random 1-5 px colour filter blended with the image), or an exponential "
              "moving average of the weights (`ema_decay`, Lightning's WeightAveraging; weight averaging is reported to help "
              "domain generalisation, Arpit et al. 2022). "
              "`v3 re-run with current code` repeats the v3 row with today's code: its distance from the first v3 row is "
              "the run-to-run noise. Those rows and the EMA row ran beside other jobs on the same 2 cores, so their minutes are not comparable. "
              "`random tone curves` raise each colour channel to its own random power (`tone_curves`: probability; gamma "
              "log-uniform in 0.5-2): dark and pale parts change hue by different amounts, which a global hue turn does not do. "
              "Rows marked (seed 1) use seed 1 for both the split and the training: compare them with each other only."),
             ("- `consistency loss 12` rows: each training image comes as two independent draws of the augmentation, "
              "and the loss adds 12 x the Jensen-Shannon divergence of the two answers to their cross-entropy (AugMix's "
              "consistency term, Hendrycks et al. 2020; `consistency`): the same epochs, so twice the images per step."),
             ("- The last rows change what the network sees (issue 13's lymphocyte question): `stain_free` renders each "
              "centred cell as its nucleus mask (red) and its green-light absorption stretched per image (green, blue), "
              "with the colour ingredients dropped; `nucleus_only` paints everything beyond 0.1 nucleus diameters of the "
              "nucleus with the background colour; the last row does both. Per-class recalls are in the JSON file."),
             ("- `red-green cell finder` rows centre the cell on the nucleus found darkest in red and green light together "
              "(`cell_darkness: red_green`) instead of green alone, where dark red cells can win (results/cell_finder.md)."),
             ("- `Gaussian low-pass input` rows blur every image after centring and resizing, at training and at "
              "prediction alike (`gaussian_sigma`, in pixels of the network's input), so that a sharp lab's cells and a "
              "blurred lab's look alike; the training blur and low-resolution augmentation stay on top. Their baseline is "
              "`v3 re-run on 2026-12-06`, made with the same code on the same machine (the 1 px seed-0 row ran beside two other "
              "jobs: its minutes are not comparable)."),
             ("- `stain transfer to BCCD white cells` rows Reinhard- or Macenko-normalise a share p of training images to "
              "one of 64 white cells of the BCCD smear fields (`stain_refs: bccd_smears`; a third lab, unlabelled, never in "
              "wbc_external) instead of to other PBC images: real other-lab stains with no labels. Same baseline as the "
              "low-pass rows; the p 0.3 rows ran beside another job (their minutes are not comparable)."),
             ("- Stain transfer rows before 2026-12-06 (`v3 + stain transfer p 0.3`, the BCCD rows) fitted half their "
              "references with torchstain's Macenko, which inverted some nuclei and tinted backgrounds "
              "(results/macenko_check.md); `with leukodx Macenko` rows repeat `v3 + stain transfer p 0.3` with "
              "leukodx.transforms.stain.Macenko, against the same baseline (seed 0 ran beside another job)."),
             ("- `v3 without tight_crop` rows (2026-12-07) drop the ingredient that paints all but a centred square with the "
              "background colour, so red cells stay around every training cell as a ruler for the nucleus's size; same "
              "baseline as the low-pass rows (`v3 re-run on 2026-12-06`)."),
             ("- `v3 + CLAHE input 0.01` rows (2026-12-07) equalise each input's lightness locally (CIELAB L, scikit-image's "
              "CLAHE, clip limit 0.01; `clahe`), at training and prediction alike; same baseline."),
             ("- `domain-adversarial BCCD white cells w W` rows (2026-12-07; `domain_cells: bccd_smears`, `domain_weight: W`, "
              "DANN, Ganin et al. 2016): the 372 unlabelled BCCD white cells replace a quarter of the training samples "
              "(no class loss) and a lab classifier on the pooled features, behind a gradient-reversal layer ramped 0 -> 1, "
              "pushes the backbone towards features in which PBC and BCCD cells look alike; same baseline as the low-pass rows."),
             ("- `stem and blocks 0-N frozen` rows (2026-12-07; `frozen_layers`): those layers keep their ImageNet weights and "
              "batch-norm statistics for the whole run, the rest fine-tunes as in v3; same baseline as the low-pass rows."),
             ("- `linear-probe start (LP-FT C c)` rows (2026-12-07; `probe_init: c`, Kumar et al. 2022): before fine-tuning, the "
              "classifier is set to a class-balanced logistic regression (inverse L2 strength C) on the pretrained network's pooled features of the "
              "training images (not augmented); everything else as in v3; same baseline as the low-pass rows."),
             ("- `Fourier amplitude mix p P` rows (2026-12-07; `amplitude_mix: P`, FACT, Xu et al. 2021): with probability P "
              "a training image keeps its Fourier phase and label while its amplitude spectrum becomes (1 - l) times its own "
              "plus l times another batch image's, l ~ U(0, 1), per colour channel; same baseline as the low-pass rows."),
             ("- `label smoothing 0.1` rows (2026-12-07; `label_smoothing: 0.1`) and `MixUp or CutMix p 0.5` rows "
              "(`mixup_cutmix: 0.5`: half the training batches mixed by torchvision's MixUp or CutMix, one of the two at "
              "random, the labels mixed alike); same baseline as the low-pass rows."),
             ("- `sharpness-aware minimisation rho R` rows (2026-12-07; `sam_rho: R`, Foret et al. 2021): each step applies the "
              "gradient taken at the weights moved R along their own normalised gradient; twice the compute per step (their "
              "minutes also ran beside other jobs); same baseline as the low-pass rows."),
             "- These numbers chose the shipped model's augmentation: wbc_external influenced that choice.",
             (f"- Command: `python benchmarks/augment_ablation.py --size {args.size} --epochs {args.epochs} "
             f"--per-class {args.per_class}`"), "",
             "| variant | " + " | ".join(f"{s} {sh}" for s, sh in cols) + " | mean external | minutes |",
             "|---|" + "---|" * (len(cols) + 2)]
    for res in results:
        by = {(r["set"], r["shift"]): r for r in res["rows"]}
        cells = [f"{by[c]['accuracy']:.3f} [{by[c]['ci95'][0]:.3f}, {by[c]['ci95'][1]:.3f}]" for c in cols]
        mean_ext = (by[cols[2]]["accuracy"] + by[cols[3]]["accuracy"]) / 2
        res["mean_external"] = mean_ext
        lines.append(f"| {res['variant']} | " + " | ".join(cells) + f" | {mean_ext:.3f} | {res['train_minutes']} |")
    if missing:
        lines += ["", "NOT RUN YET (no CPU time left in the session that made this file): " + "; ".join(missing)]
    (ROOT / "results" / "augment_ablation.json").write_text(json.dumps(results, indent=1))
    (ROOT / "results" / "augment_ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
