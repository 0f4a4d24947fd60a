"""The seed papers' tables (issue 17) under one CPU protocol, every run trained to convergence.

Protocol (2 CPU cores, every model from scratch, no pretrained weights):
- data: the full train side of the grouped split (seed 0, the same split file for every run of a table);
  val side for the learning-rate sweep and the best checkpoint; test side for the table.
- --size px (64), batch 32, cross-entropy weighted by inverse class frequency (the training default,
  `class_weights`), AdamW (weight decay 0.05), linear warm-up over 100 steps, then cosine to 0
  over --steps optimiser steps (2000; a row may name its own budget, e.g. the classic CNN's 6000-step
  rows); validation 10 times a run; best checkpoint by val accuracy.
- learning-rate sweep per model: --sweep-steps (400) steps at each of --lrs, seed 0; the highest best
  val accuracy picks the rate. Then one run per --seeds (0 1 2) at that rate.
- each row: test accuracy mean +- sd over seeds with each seed's 95% CI (bootstrap over groups), macro F1,
  the smallest per-class recall (collapse check: >= 0.5 wanted), accuracy of the same models on the
  test side in grayscale, and the colour-histogram baseline on the same split.
Augmentation is each paper's own preset (corners filled with the image's border colour).

  python benchmarks/seed_networks.py --tables thesis_pbc4 ddrnet_pbc4 --models resnet18 ddrnet
  python benchmarks/seed_networks.py --tables ddrnet_ablation_pbc4 --rows "DDRNet conv" --seeds 0 --lrs 0.003
  python benchmarks/seed_networks.py --table-only          # tables from the runs already made
  python benchmarks/seed_networks.py --tables classic_pbc --sweep-only   # each row's rate, before its seeds

Runs are cached under runs/seed_networks/ keyed by config and code (common.run); --table-only reads
finished runs whatever code made them and lists each run's key and code version. runs/ is not committed: seeds whose
runs are not in this checkout are kept from the committed results file and merged with the new ones (same
learning rate, steps and test size only). A row with no runs anywhere says "not run".
The papers' own protocol (224 px, their epochs and optimisers) is `--size 224 --steps N` on a GPU (benchmarks/
gpu_protocol.sh runs DDRNet and the ResNets that way, with the CUDA tests first): its runs and results files carry
the size (results/TABLE_224px.md), beside the CPU tables, never merged with them.
"""
import argparse
import csv
import json
import statistics
from pathlib import Path

import common
import torch
import yaml

from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split, make_split
from leukodx.evaluate.robustness import shift_rows
from leukodx.models.artifact import ModelBundle
from leukodx.models.ddrnet import VARIANTS

ROOT = common.ROOT
RUNS = ROOT / "runs" / "seed_networks"
SWEEP_LRS, STEPS = [3e-4, 1e-3, 3e-3], 2000  # the protocol's learning-rate grid and default step budget
# the runs leave class_weights at the training default; the tables say which loss that is
LOSS = ("cross-entropy weighted by inverse class frequency" if common.TrainConfig().class_weights
        else "unweighted cross-entropy")
CPU_SIZE = 64  # the CPU protocol's input size; another --size (the papers' 224 px on a GPU) gets its own run
size = CPU_SIZE  # names and results files (`..._px224_seed0`, results/TABLE_224px.md), so it never mixes with these
CLASSIC = {"mask_background": True, "gaussian_sigma": 1.0, "grayscale": True}  # Sudhakar et al. preprocessing
COLOUR_CLASSIC = {"mask_background": True, "keep_cytoplasm": True, "gaussian_sigma": 1.0}  # the same in colour, whole-cell mask
COLOUR_MASK_ONLY = {k: v for k, v in COLOUR_CLASSIC.items() if k != "gaussian_sigma"}  # the filter's ablation

# table -> (data, augment preset, preprocessing, rows: (label, model, model_kwargs[, steps[, training]]));
# a row's own step budget replaces --steps, its training settings (e.g. ema_decay) join the config; both
# are part of its run names
TABLES = {
    "ddrnet_pbc4": ("pbc4", "ddrnet", {}, [("DDRNet (full)", "ddrnet", {}), ("ResNet-18", "resnet18", {}),
                                          ("ResNet-50", "resnet50", {}), ("ResNet-101", "resnet101", {})]),
    "ddrnet_ablation_pbc4": ("pbc4", "ddrnet", {}, [(f"DDRNet {v}", "ddrnet", {} if v == "full" else {"variant": v})
                                                     for v in VARIANTS]),
    "ddrnet_ablation_taleqani": ("taleqani_all", "ddrnet", {}, [(f"DDRNet {v}", "ddrnet", {} if v == "full" else
                                                                 {"variant": v}) for v in VARIANTS]),
    "ddrnet_taleqani": ("taleqani_all", "ddrnet", {}, [("DDRNet (full)", "ddrnet", {}), ("ResNet-18", "resnet18", {}),
                                                       ("ResNet-50", "resnet50", {}), ("ResNet-101", "resnet101", {})]),
    "classic_pbc": ("pbc", "seed", CLASSIC, [("Conv2D CNN", "classic_cnn", {}), ("ResNet-34", "resnet34", {}),
                                             ("DenseNet-169", "densenet169", {}),
                                             ("Conv2D CNN, 6000 steps", "classic_cnn", {}, 6000),
                                             ("Conv2D CNN + BatchNorm before the dense layer, 6000 steps", "classic_cnn",
                                              {"batchnorm": True}, 6000),
                                             # the mask's part: the whole white cell kept, or no mask at all
                                             ("Conv2D CNN + BatchNorm before the dense layer, 6000 steps, whole-cell mask",
                                              "classic_cnn", {"batchnorm": True}, 6000, {"keep_cytoplasm": True}),
                                             ("Conv2D CNN + BatchNorm before the dense layer, 6000 steps, no mask",
                                              "classic_cnn", {"batchnorm": True}, 6000, {"mask_background": False}),
                                             ("Conv2D CNN, 6000 steps, whole-cell mask", "classic_cnn", {}, 6000,
                                              {"keep_cytoplasm": True}),
                                             ("ResNet-34, whole-cell mask", "resnet34", {}, None,
                                              {"keep_cytoplasm": True}),
                                             ("DenseNet-169, whole-cell mask", "densenet169", {}, None,
                                              {"keep_cytoplasm": True}),
                                             # its weakest class (seed 2: 0.477) with the Conv2D rows' longer budget
                                             ("ResNet-34, whole-cell mask, 6000 steps", "resnet34", {}, 6000,
                                              {"keep_cytoplasm": True}),
                                             # the budget that lifted ResNet-34 over the bar (2,000 steps: 0.469)
                                             ("DenseNet-169, whole-cell mask, 6000 steps", "densenet169", {}, 6000,
                                              {"keep_cytoplasm": True})]),
    "classic_taleqani_all": ("taleqani_all", "seed", CLASSIC, [("Conv2D CNN", "classic_cnn", {}),
                                                               ("ResNet-34", "resnet34", {}),
                                                               ("DenseNet-169", "densenet169", {}),
                                                               ("Conv2D CNN, 6000 steps", "classic_cnn", {}, 6000),
                                                               # its Benign recall (0.15-0.36) at the longer budget
                                                               ("ResNet-34, 6000 steps", "resnet34", {}, 6000)]),
    "classic_pbc_colour": ("pbc", "seed", {}, [("Conv2D CNN, colour input, no masking or blur", "classic_cnn", {}),
                                               ("Conv2D CNN + BatchNorm before the dense layer, colour input",
                                                "classic_cnn", {"batchnorm": True}),
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "6000 steps"), "classic_cnn", {"batchnorm": True}, 6000),
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "10000 steps"), "classic_cnn", {"batchnorm": True}, 10000),
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "6000 steps, weight EMA 0.999"), "classic_cnn", {"batchnorm": True},
                                                6000, {"ema_decay": 0.999}),
                                               # the classic filter and mask kept in colour (no grayscale step)
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "6000 steps, Gaussian filter and whole-cell mask"), "classic_cnn",
                                                {"batchnorm": True}, 6000,
                                                COLOUR_CLASSIC),
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "6000 steps, Gaussian filter and Otsu mask"), "classic_cnn",
                                                {"batchnorm": True}, 6000, {"mask_background": True, "gaussian_sigma": 1.0}),
                                               # the filter's part: the whole-cell mask alone
                                               (("Conv2D CNN + BatchNorm before the dense layer, colour input, "
                                                 "6000 steps, whole-cell mask, no filter"), "classic_cnn",
                                                {"batchnorm": True}, 6000, COLOUR_MASK_ONLY),
                                               ("Conv2D CNN, colour input, 6000 steps, Gaussian filter and whole-cell mask",
                                                "classic_cnn", {}, 6000,
                                                COLOUR_CLASSIC),
                                               # the same ablation for the paper's network
                                               ("Conv2D CNN, colour input, 6000 steps, whole-cell mask, no filter",
                                                "classic_cnn", {}, 6000, COLOUR_MASK_ONLY)]),
    "thesis_pbc4": ("pbc4", "thesis", {}, [("CNN", "thesis_cnn", {}), ("ViT", "thesis_vit", {}),
                                           ("Hybrid CNN-ViT", "hybrid_cnn_vit", {})]),
}
TITLES = {
    "ddrnet_pbc4": "DDRNet vs ResNets, PBC 4 WBC types (paper Tables 4-5 form)",
    "ddrnet_ablation_pbc4": "DDRNet ablation, PBC 4 WBC types (paper Table 6 form)",
    "ddrnet_taleqani": "DDRNet vs ResNets on taleqani_all (4 ALL classes)",
    "ddrnet_ablation_taleqani": "DDRNet ablation, taleqani_all (4 ALL classes; paper Table 6 form)",
    "classic_pbc": "Classic CNN pipeline, PBC 8 WBC types (Sudhakar et al. form)",
    "classic_taleqani_all": "Classic CNN pipeline, taleqani_all (Sudhakar et al. form)",
    "classic_pbc_colour": "Controls: the classic Conv2D CNN on PBC 8 types on colour input (the filter and mask "
                          "only where a row says so), and with a normalisation layer",
    "thesis_pbc4": "Thesis CNN / ViT / hybrid, PBC 4 WBC types",
}


def split_file(data: str) -> str:
    path = RUNS / "splits" / f"{data}.json"
    if not path.is_file():
        make_split(load_dataset(data), 0.15, 0.2, 0, True).save(path)
    return str(path)


def config(table: str, model: str, kwargs: dict, lr: float, seed: int, steps: int, args, train=None) -> dict:
    data, augment, pre, _ = TABLES[table]
    return {"data": data, "model": model, "pretrained": False, "model_kwargs": kwargs, "image_size": args.size,
            "max_steps": steps, "warmup_steps": min(100, steps // 5), "optimizer": "adamw", "lr": lr,
            "weight_decay": 0.05, "scheduler": "cosine", "batch_size": 32, "freeze_epochs": 0, "augment": augment,
            "monitor": "val_acc", "early_stopping_patience": 0, "seed": seed, "split_file": split_file(data),
            "bootstrap": 500, "threads": args.threads, "workers": args.workers, **pre, **(train or {})}


def run_name(table: str, model: str, kwargs: dict, tag: str, steps: int | None = None, train=None) -> str:
    """Runs of a row with its own step budget or training settings carry them (`..._steps6000_ema0.999_seed0`);
    sweeps carry the training settings (they may change the input, e.g. keep_cytoplasm), never the budget."""
    data, _, pre, _ = TABLES[table]
    return "_".join([model, *[str(v) for v in kwargs.values()], data, *(["classic"] if pre else []),
                     *([f"steps{steps}"] if steps else []), *(f"{k.split('_')[0]}{v:g}" for k, v in (train or {}).items()),
                     *([f"px{size}"] if size != CPU_SIZE else []), tag])


def results_stem(table: str) -> Path:
    return ROOT / "results" / (table if size == CPU_SIZE else f"{table}_{size}px")


def hardware() -> str:
    return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "2 CPU cores, no GPU"


def rows_of(table: str) -> list[tuple[str, str, dict, int | None, dict | None]]:
    return [(label, model, kw, *(rest + [None] * (2 - len(rest)))) for label, model, kw, *rest in TABLES[table][3]]


def best_val_acc(name: str) -> float:
    rows = list(csv.DictReader((RUNS / name / "logs" / "metrics.csv").open()))
    return max(float(r["val_acc"]) for r in rows if r.get("val_acc"))


def grayscale_accuracy(name: str) -> float:
    """Accuracy of a finished run on its test side converted to grayscale (cached beside the run)."""
    out = RUNS / name / "test" / "grayscale.json"
    if not out.is_file():
        cfg = json.loads((RUNS / name / "test" / "metrics.json").read_text())
        index = load_dataset(cfg["data"])
        split = Split.load(RUNS / name / "split.json")
        te = split.indices(index, "test")
        groups = split.groups_of(index, te)
        bundle = ModelBundle.load(RUNS / name)
        bundle.model.to("cuda" if torch.cuda.is_available() else "cpu")
        row = shift_rows(bundle, index, te, groups, ["grayscale"], "test", n_boot=200)[0]
        out.write_text(json.dumps({"accuracy": row["accuracy"], "ci95": row["ci95"]}))
    return json.loads(out.read_text())["accuracy"]


def sweep_file(table: str, model: str, kwargs: dict, train=None) -> Path:
    return RUNS / f"{run_name(table, model, kwargs, 'sweep', train=train)}.json"


def sweep(table: str, model: str, kwargs: dict, args, train=None) -> float:
    if len(args.lrs) == 1:
        return args.lrs[0]
    scores = {}
    for lr in args.lrs:
        name = run_name(table, model, kwargs, f"sweep_lr{lr:g}", train=train)
        common.run("seed_networks", name, **config(table, model, kwargs, lr, 0, args.sweep_steps, args, train))
        scores[lr] = best_val_acc(name)
    best = max(scores, key=scores.get)
    sweep_file(table, model, kwargs, train).write_text(
        json.dumps({"val_acc": {f"{k:g}": v for k, v in scores.items()}, "chosen_lr": best, "steps": args.sweep_steps}))
    return best


def finished(pattern: str) -> list[str]:
    return sorted(p.parents[1].name for p in RUNS.glob(f"{pattern}/test/metrics.json")
                  if not p.parents[1].name.endswith(".stale"))


def seed_record(name: str) -> dict:
    m = json.loads((RUNS / name / "test" / "metrics.json").read_text())
    recall = m["per_class"]["recall_sensitivity"]
    return {"run": name, "accuracy": m["accuracy"], "ci95": m["ci95"]["accuracy"], "macro_f1": m["macro_f1"],
            "min_class_recall": min(recall), "weakest_class": m["classes"][recall.index(min(recall))],
            "grayscale": grayscale_accuracy(name),
            "minutes": m["wall_minutes"], "run_key": m.get("run_key", "?")[:12],
            "code_version": m.get("code_version", "?")[:12],  # runs before 2026-12-07 did not record it
            "environment": environment_of(name).get("key", "?"), "resumed": m.get("resumed", False)}


def environment_of(name: str) -> dict:
    """A run's RUN/environment.json ({} for runs made before runs recorded it)."""
    f = RUNS / name / "environment.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def committed_environments() -> dict:
    """key -> environment, from every committed seed table (a row may take its seeds from another table)."""
    envs = {}
    for t in TABLES:
        f = results_stem(t).with_suffix(".json")
        if f.is_file():
            envs |= json.loads(f.read_text()).get("environments", {})
    return envs


def environments(results, committed: dict) -> dict:
    """key -> environment (RUN/environment.json less its key) for every environment that made seeds of this
    table: read from this checkout's runs, else kept from the committed results files."""
    envs = {}
    for _, row in results:
        for r in row.get("per_seed", []):
            key = r.get("environment", "?")
            if key != "?" and key not in envs:
                env = {k: v for k, v in environment_of(r["run"]).items() if k != "key"} or committed.get(key)
                envs[key] = env
    return envs


def environment_lines(results, envs: dict) -> list[str]:
    """One line per environment that made seeds of this table: the machine, the libraries' versions and the
    runs it made; seeds made before runs recorded it have none."""
    lines = []
    for key, env in sorted(envs.items()):
        names = sorted(r["run"] for _, row in results for r in row.get("per_seed", []) if r.get("environment") == key)
        what = (f"{env['cpu']} ({env['cpu_capability']}), {env['torch_threads']} torch threads; torch "
                f"{env['packages']['torch']}, lightning {env['packages']['lightning']}, numpy {env['packages']['numpy']}, "
                f"pillow {env['packages']['pillow']}" if env else "not recorded in this checkout")
        lines.append(f"- Environment {key}: {what}; made {', '.join(names)}.")
    return lines


def row_for(table: str, model: str, kwargs: dict, steps: int | None = None, train=None) -> dict:
    """The row from this checkout's finished runs: row fields plus one record per seed."""
    names = finished(run_name(table, model, kwargs, "seed*", steps, train))
    if not names:
        return {"status": "not run"}
    m0 = json.loads((RUNS / names[0] / "test" / "metrics.json").read_text())
    swept = sweep_file(table, model, kwargs, train)
    return {"status": "done", "n": m0["n"], "baseline_accuracy": m0["colour_histogram_baseline_accuracy"],
            "steps": m0.get("steps_run"), "sweep": json.loads(swept.read_text()) if swept.is_file() else None,
            "lr": yaml.safe_load((RUNS / names[0] / "config.yaml").read_text())["lr"],
            "per_seed": [seed_record(n) for n in names]}


def committed_seeds(row: dict) -> list[dict]:
    """A committed row's seed records. Rows written before records were kept give each seed its own
    accuracy and CI and the row's mean for the rest, so means and minima over a merge stay exact."""
    if "per_seed" in row:
        return row["per_seed"]
    return [{"run": run, "accuracy": acc, "ci95": ci, "macro_f1": row["macro_f1_mean"],
             "min_class_recall": row["min_class_recall"], "grayscale": row["grayscale_accuracy_mean"],
             "minutes": row["train_minutes_mean"], "run_key": "+".join(row.get("run_keys", row.get("code_keys", ["?"]))),
             "from_row_mean": ["macro_f1", "min_class_recall", "grayscale", "minutes"]}
            for run, acc, ci in zip(row["runs"], row["accuracy_per_seed"], row["ci95_per_seed"])]


def merge(local: dict, committed: dict | None) -> tuple[dict, list[str]]:
    """Local runs plus the committed seeds whose runs are not in this checkout (same learning rate, step
    budget and test set size only). Returns the row and the committed runs it kept."""
    if not committed or committed.get("status") != "done":
        return local, []
    if local["status"] != "done":
        return committed | {"per_seed": committed_seeds(committed)}, committed["runs"]
    protocol = ("lr", "steps", "n")  # seeds merge only when trained and tested alike
    theirs, ours = ([float(r.get(k, local[k])) for k in protocol] for r in (committed, local))
    if theirs != ours:
        print(f"committed seeds dropped: their {protocol} {theirs}, this checkout's {ours}", flush=True)
        return local, []
    local_runs = {r["run"] for r in local["per_seed"]}
    kept = [r for r in committed_seeds(committed) if r["run"] not in local_runs]
    per_seed = sorted(local["per_seed"] + kept, key=lambda r: r["run"])
    sweep = local["sweep"] or committed.get("sweep")  # a sweep file not in this checkout is kept from the results file
    return local | {"per_seed": per_seed, "sweep": sweep}, [r["run"] for r in kept]


def summarise(row: dict) -> dict:
    if row["status"] != "done":
        return row
    s = row["per_seed"]
    acc = [r["accuracy"] for r in s]
    return row | {"seeds": len(s), "accuracy_mean": statistics.mean(acc),
                  "accuracy_sd": statistics.stdev(acc) if len(acc) > 1 else 0.0, "accuracy_per_seed": acc,
                  "ci95_per_seed": [r["ci95"] for r in s], "macro_f1_mean": statistics.mean(r["macro_f1"] for r in s),
                  "min_class_recall": min(r["min_class_recall"] for r in s),
                  # the class at that minimum, where its seed's run was read (older records lack it)
                  "weakest_class": min(s, key=lambda r: r["min_class_recall"]).get("weakest_class"),
                  "grayscale_accuracy_mean": statistics.mean(r["grayscale"] for r in s),
                  "train_minutes_mean": statistics.mean(r["minutes"] for r in s),
                  # run keys hash config and seed with the code, so they always differ by seed; the code
                  # versions alone say whether the training code changed between seeds ("?": not recorded)
                  "run_keys": sorted({r["run_key"] for r in s}),
                  "code_versions": sorted({r.get("code_version", "?") for r in s}), "runs": [r["run"] for r in s]}


def fmt(r: dict) -> str:
    if r["status"] != "done":
        return "| " + " | ".join(["not run"] + ["-"] * 8) + " |"
    ci = "; ".join(f"[{a:.3f}, {b:.3f}]" for a, b in r["ci95_per_seed"])
    rate = float(r.get("lr", (r.get("sweep") or {}).get("chosen_lr")))  # older results files lack "lr"
    pick = r["sweep"] and float(r["sweep"]["chosen_lr"])  # the sweep's rate, or None where none was run
    lr = f"{rate:g}" + ("" if pick == rate else f" (fixed; sweep: {pick:g})" if pick else " (fixed)")
    return (f"| {r['accuracy_mean']:.4f} ± {r['accuracy_sd']:.4f} ({r['seeds']} seed{'s' if r['seeds'] > 1 else ''}) | {ci} | {r['macro_f1_mean']:.4f} | "
            f"{r['min_class_recall']:.3f}{f' ({w})' if (w := r.get('weakest_class')) else ''} | {r['grayscale_accuracy_mean']:.4f} | {r['baseline_accuracy']:.4f} | {lr} | "
            f"{r['steps']} | {r['train_minutes_mean']:.1f} |")


def committed_row(table: str, label: str, model: str, kwargs: dict, steps: int | None, train=None) -> dict | None:
    """The committed row for `label`, or another table's committed row trained by the same runs (same
    data, augmentation, preprocessing, model and step budget: the ablation's full model), whichever
    holds more seeds."""
    def rows(t):
        f = results_stem(t).with_suffix(".json")
        return {r["name"]: r for r in json.loads(f.read_text())["rows"]} if f.is_file() else {}
    found = [rows(table).get(label)]
    for other in TABLES:
        if other != table and TABLES[other][:3] == TABLES[table][:3]:
            theirs = rows(other)
            found += [theirs.get(label2) for label2, m2, kw2, steps2, train2 in rows_of(other)
                      if (m2, kw2, steps2, train2) == (model, kwargs, steps, train)]
    found = [r for r in found if r and r.get("status") == "done"]
    return max(found, key=lambda r: len(r.get("runs", [])), default=None)


def shared_sweeps(table: str, results: list) -> list:
    """A row whose seeds ran at a given rate takes the sweep of a row that shares its sweep (the same model,
    settings and input: sweeps never carry the step budget), so its lr column says what the sweep picked."""
    keys = [sweep_file(table, m, kw, train).name for _, m, kw, _, train in rows_of(table)]
    found = {}
    for key, (_, r) in zip(keys, results):
        if r.get("sweep"):
            found.setdefault(key, r["sweep"])
    return [(label, r | {"sweep": found[key]} if r["status"] == "done" and not r.get("sweep") and key in found else r)
            for key, (label, r) in zip(keys, results)]


def write_table(table: str, args) -> None:
    data, augment, pre, _ = TABLES[table]
    out = results_stem(table)
    # runs/ is not committed: seeds whose runs are not in this checkout come from the committed files
    results, kept = [], []
    for label, m, kw, steps, train in rows_of(table):
        row, from_file = merge(row_for(table, m, kw, steps, train), committed_row(table, label, m, kw, steps, train))
        results.append((label, summarise(row)))
        kept += [f"{label} {run.rsplit('_', 1)[-1]}" for run in from_file]
    results = shared_sweeps(table, results)
    n = next((r["n"] for _, r in results if r["status"] == "done"), "-")
    envs = environments(results, committed_environments())
    head = ("| model | test accuracy mean ± sd | 95% CI per seed | macro F1 | min class recall | grayscale test "
            "accuracy | colour baseline | lr (sweep) | steps | train min/run |")
    md = [f"# {TITLES[table]}", "",
          f"- Data {data}; grouped split seed 0 (split file runs/seed_networks/splits/{data}.json); test n = {n}.",
          f"- {'CPU protocol' if size == CPU_SIZE else 'Protocol'}: {args.size} px, from scratch, {LOSS}, AdamW wd 0.05, batch 32, "
          f"warm-up 100 steps + cosine, "
          f"best checkpoint by val accuracy; lr chosen per model by a {args.sweep_steps}-step sweep over "
          f"{', '.join(f'{r:g}' for r in SWEEP_LRS)} on the val side (column lr: 'fixed' where a row's seeds "
          f"ran at a rate its sweep did not pick, with the sweep's pick where it was run); augmentation preset '{augment}'"
          + (f"; preprocessing {pre}" if pre else "") + ".",
          f"- Hardware: {hardware()}. Command: `python benchmarks/seed_networks.py --tables {table}"
          + ("" if size == CPU_SIZE else f" --size {size}") + "`.",
          *environment_lines(results, envs),
          *([f"- Seeds kept from committed results files (their runs are not in this checkout; a row shared with another table takes its seeds from there too): {', '.join(kept)}."]
            if kept else []),
          ("- min class recall: the lowest recall of any class in any seed (>= 0.5 wanted), with that class's name where "
          "its seed's run was read (seeds kept from older results files did not record it)."),
          "", head, "|" + "---|" * 10]
    md += [f"| {label} " + fmt(r) for label, r in results]
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    # the table's protocol; each row's own steps, lr and seeds are in its record (not the last command's arguments)
    protocol = {"size": args.size, "sweep_steps": args.sweep_steps, "sweep_lrs": SWEEP_LRS, "default_steps": STEPS, "batch_size": 32, "augment": augment, "preprocessing": pre}
    out.with_suffix(".json").write_text(json.dumps({"title": TITLES[table], "protocol": protocol, "environments": envs,
                                                    "rows": [{"name": k, **r} for k, r in results]}, indent=1))
    print(f"wrote {out.with_suffix('.md')}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", nargs="*", choices=list(TABLES), default=list(TABLES))
    ap.add_argument("--models", nargs="*", help="only these registry names (default: every row)")
    ap.add_argument("--rows", nargs="*", help="only rows whose label is one of these (e.g. 'DDRNet conv')")
    ap.add_argument("--size", type=int, default=CPU_SIZE)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--sweep-steps", type=int, default=400)
    ap.add_argument("--lrs", type=float, nargs="+", default=SWEEP_LRS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2, help="torch threads per run (the CPU protocol: 2)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader processes augmenting batches (GPU runs)")
    ap.add_argument("--table-only", action="store_true", help="write tables from finished runs, train nothing")
    ap.add_argument("--sweep-only", action="store_true", help="run each row's learning-rate sweep, train no seeds")
    args = ap.parse_args()
    global size
    size = args.size
    for table in args.tables:
        for label, model, kw, steps, train in rows_of(table):
            if args.table_only or (args.models and model not in args.models) or (args.rows and label not in args.rows):
                continue
            lr = sweep(table, model, kw, args, train)
            for seed in [] if args.sweep_only else args.seeds:
                common.run("seed_networks", run_name(table, model, kw, f"seed{seed}", steps, train),
                           **config(table, model, kw, lr, seed, steps or args.steps, args, train))
        write_table(table, args)


if __name__ == "__main__":
    main()
