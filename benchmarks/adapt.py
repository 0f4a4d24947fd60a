"""Few-shot adaptation to other labs (issue 14): on each wbc_external lab, repeated random k-shot
draws (k cells per class, where the class has more than k), adapt the shipped WBC model with each
method, score on the rest of that lab. Writes results/adapt.{json,md}; with --methods, only those rows are
re-measured and the file's other rows are kept.
    .venv/bin/python benchmarks/adapt.py [--model src/leukodx/shipped/wbc_type.pt] [--draws 10]
    .venv/bin/python benchmarks/adapt.py --methods "head+finetune, 8 views" --shots 10 --draws 5
    .venv/bin/python benchmarks/adapt.py --methods "head, 8 views" --draws 10 --five-part   # + rows limited to five classes
    .venv/bin/python benchmarks/adapt.py --methods "head, 8 views, self-training" --shots 5,10,20 --draws 10
    .venv/bin/python benchmarks/adapt.py --methods "head + block-5 features, 8 views" \
        "head + block-5 features, 8 views, self-training" --shots 5,10,20 --draws 10
    .venv/bin/python benchmarks/adapt.py --methods "head, 8 views" --shots 10 --draws 10 --cell-probe
        # + rows with the no-white-cell probe refitted on the k-shot cells, and the lab's other cells painted out
"""
import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from leukodx.data.class_map import map_classes
from leukodx.data.recipes import lab_of, load_dataset
from leukodx.data.torch_dataset import ImageDataset
from leukodx.evaluate.evaluate_run import bundle_outputs
from leukodx.evaluate.robustness import shifted_copies
from leukodx.evaluate.selective import selective_summary
from leukodx.heads.expected import FIVE_PART, expected_mask, restrict
from leukodx.models.artifact import ModelBundle
from leukodx.train.adapt import FINETUNE, adapt_bundle, refit_cell_probe
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="src/leukodx/shipped/wbc_type.pt")
ap.add_argument("--draws", type=int, default=10)
ap.add_argument("--shots", default="5,10,20")
LIMITED = "+ --classes five-part"
PROBE = "+ lab's cell probe"
NAMED = "+ lab's five classes named"
SELF = "head, 8 views, self-training"
TAP, TAP_SELF = "head + block-5 features, 8 views", "head + block-5 features, 8 views, self-training"
METHODS = {"head": ("head", 1, None), "bn+head": ("bn+head", 1, None), "head, 8 views": ("head", 8, None),
           SELF: ("head", 8, None), "head+finetune, 8 views": ("head+finetune", 8, None),
           TAP: ("head", 8, 5), TAP_SELF: ("head", 8, 5)}  # row name -> (adapt mode, views, tap_stage)
ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
ap.add_argument("--five-part", action="store_true",
                help=f"also score each adapted model with its answers limited to {FIVE_PART} (rows '... {LIMITED}')")
ap.add_argument("--cell-probe", action="store_true",
                help=f"also score the lab's other cells painted out of their files, and add rows '... {PROBE}' where "
                     "the no-white-cell probe is refitted on the k-shot cells (as `leukodx adapt` does)")
ap.add_argument("--lab-classes", action="store_true",
                help=f"adapt with the lab's classes named ({FIVE_PART}; `leukodx adapt --classes`): those given no cells "
                     f"keep the shipped head's rows (rows '... {NAMED}')")
ap.add_argument("--out", default="results/adapt")
ap.add_argument("--render", action="store_true", help="only rewrite the .md from the .json")
a = ap.parse_args()
out = Path(a.out)


def cell(r, m):
    v = r.get(m)
    if v is None:
        return "-"
    return f"{v:.3f}" if not isinstance(v, list) else f"{v[0]:.3f} ± {v[1]:.3f}"


def write_md(res: dict) -> None:
    lines = ["# Few-shot adaptation to other labs (wbc_external)", "",
             (f"- Command: `.venv/bin/python benchmarks/adapt.py --draws {res['draws']}` (rows with other draw counts: "
             f"`--methods NAME --shots K --draws N`, see the draws column); model `{res['model']}` "
             f"(sha256 {res['model_sha256_16']}...)"), f"- {res['protocol']}; {res['classes']}.",
             ("- Methods: `head` = linear head refit on frozen features with a prior towards the shipped head; "
             "`bn+head` = batch-norm statistics re-estimated on the k-shot images first; `8 views` = the head "
             "fitted on the 8 quarter turns / mirror images of each k-shot cell; `head+finetune` = that head, then "
             f"every weight fine-tuned on the k-shot cells ({FINETUNE['steps']} AdamW steps from lr {FINETUNE['lr']:g}, "
             "cosine, batch-norm "
             "statistics frozen, a random view each step; the lab's cells become the whole unfamiliar-image "
             "reference); `self-training` = the 8-view head, then self-trained on the lab's other cells without their "
             "labels (each round, a cell whose view-averaged probability is >= 0.95 for a class the k-shot cells show "
             "joins the fit with that label, in rows made since 2026-12-07 only where label spreading over the lab's cells "
             "(sklearn's LabelSpreading, 7 neighbours) gives it the same label; 3 rounds): transductive, those are the cells it is scored on, as when a "
             "lab adapts on one case and reads that case; `head + block-5 features` = the head also sees block 5's "
             "pooled features (`--tap-stage 5`, leukodx.models.stage_tap), standardised on the k-shot cells, weights "
             "from zero, the lab's cells the whole unfamiliar-image reference; block 5 was picked in a scratch "
             "probe on these two labs (blocks 4-6, plain logistic regression), so those rows are optimistic. Temperature from out-of-fold "
             "predictions; every view of the lab's cells joins the unfamiliar-image reference, whose threshold rises "
             "where needed to the 98% quantile of the lab's cells scored without their own views (cross-fitted)."),
             "- accuracy on kept / referred: after the adapted model's own referral (reasons as in `leukodx predict`).",
             (f"- `{LIMITED}` (`--five-part`): the same adapted models, their answers limited to {FIVE_PART} as "
              "`leukodx predict --classes` does (a cell with most of its probability on other classes is referred as "
              "unexpected_class); both labs hold exactly these classes, which a lab counting a differential of "
              "normal blood can say in advance."),
             ("- classes adapted: classes with more than k cells. Where it is fewer than the lab's classes (k = 20 on "
             "cellavision_blog), the other classes get no cells and the test side is mostly those classes: "
             "the drop there is the protocol, not the method."),
             (f"- `{PROBE}` (`--cell-probe`): the adapted model's no-white-cell probe refitted on the k-shot cells (with "
              "self-training, and in rows made since 2026-12-07, the lab's other cells too) against "
              "their files with the cells painted out, as `leukodx adapt` does (adapted rows without it: the model has none; zero-shot rows: the shipped model "
              "with its own probe). "
              "`painted out: referred / not_a_cell`: the lab's other cells painted out of their files (shift "
              "`cells_out`, a field without its white cell), the share referred and the share referred as `not_a_cell`."),
             (f"- `{NAMED}` (`--lab-classes`): adapted with the lab's classes named (`leukodx adapt --classes "
              f"{FIVE_PART}`): a named class given no cells keeps the shipped head's row instead of being lowered; the "
              "others given none (erythroblast, ig, platelet) are lowered as before."),
             ("- `unadapted classes`: the test cells of the lab's classes that had too few cells to draw k (tecom's one "
              "basophil; cellavision_blog's three basophils, and at k = 20 its other small classes), right after adapting "
              "and, in brackets, right by the shipped model on the same cells (rows made before 2026-12-07: -)."),
             f"- {res['hardware']}.", "",
             ("| lab | method | k per class | classes adapted | n test | draws | accuracy | referred | accuracy on kept | "
              "error AUROC | painted out: referred | painted out: not_a_cell | unadapted classes: accuracy (zero-shot) |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['lab']} | {r['method']} | {r['k']} | {r.get('classes_adapted', '-')} | {r['n_test']} | "
                     f"{r['draws']} | "
                     f"{cell(r, 'accuracy')} | {cell(r, 'referred')} | {cell(r, 'accuracy_on_kept')} | "
                     f"{cell(r, 'auroc_errors')} | {cell(r, 'painted_referred')} | {cell(r, 'painted_not_a_cell')} | "
                     + (f"{cell(r, 'unadapted_accuracy')} ({cell(r, 'unadapted_zero_shot')})" if 'unadapted_accuracy' in r else "-")
                     + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if a.render:
    write_md(json.loads(out.with_suffix(".json").read_text()))
    raise SystemExit(0)
torch.set_num_threads(2)
bundle = ModelBundle.load(a.model)
ext, cmap = map_classes(load_dataset("wbc_external"), bundle.classes)
pre = Preprocess(PreprocessConfig(**bundle.preprocess))


def score(b, images, y, limit=False, unadapted=None):
    """`unadapted`: a mask of the cells whose class got no adaptation cells; their accuracy is reported too."""
    _, probs, dist = bundle_outputs(b, images)
    share = None
    if limit:  # the answer limited to a five-part differential, as `predict --classes` does
        probs, share = restrict(probs, expected_mask(FIVE_PART, b.classes))
    sel = selective_summary(probs, y, dist, b.referral, images.permute(0, 2, 3, 1).numpy(), expected_share=share)
    right = probs.argmax(1) == y
    out = {"accuracy": float(right.mean()), "referred": sel["referred"],
           "accuracy_on_kept": sel["accuracy_on_kept"], "auroc_errors": sel["auroc_errors"]}
    if unadapted is not None and unadapted.any():
        out["unadapted_accuracy"] = float(right[unadapted].mean())
    return out


def painted(b, images):
    """The share referred, and referred as not_a_cell, of cells painted out of their files."""
    _, probs, dist = bundle_outputs(b, images)
    sel = selective_summary(probs, np.zeros(len(probs), int), dist, b.referral, images.permute(0, 2, 3, 1).numpy())
    return {"painted_referred": sel["referred"], "painted_not_a_cell": sel["reasons"].get("not_a_cell", 0) / len(probs)}


rows, t0 = [], time.time()
for lab in sorted({lab_of(ext, r) for r in ext.records}):
    ds = ImageDataset(ext.subset([i for i, r in enumerate(ext.records) if lab_of(ext, r) == lab]), pre)
    x, y = ds.images, ds.labels.numpy()
    x_out = next(shifted_copies(ds.records, pre, ["cells_out"]))[1] if a.cell_probe else None
    zero_right = bundle_outputs(bundle, x)[1].argmax(1) == y  # the shipped model's answers, for the unadapted cells
    limits = [False, True] if a.five_part else [False]
    variants = [(probe, lim) for probe in ([False, True] if a.cell_probe else [False]) for lim in limits]
    for lim in limits:
        rows.append({"lab": lab, "method": "zero-shot" + (f" {LIMITED}" if lim else ""), "k": 0, "n_test": len(y),
                     **score(bundle, x, y, lim), **(painted(bundle, x_out) if a.cell_probe else {}), "draws": 1})
    for k in [int(s) for s in a.shots.split(",")]:
        for name in a.methods:
            method, views, tap = METHODS[name]
            res = {v: [] for v in variants}
            for draw in range(a.draws):
                rng = np.random.default_rng(1000 * k + draw)
                pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in np.unique(y)
                                       if (y == c).sum() > k])
                rest = np.setdiff1d(np.arange(len(y)), pick)
                unadapted = ~np.isin(y[rest], y[pick])  # cells of classes with too few cells to draw k
                unlabelled = x[rest] if name in (SELF, TAP_SELF) else None  # transductive: the cells it is then scored on
                new, _ = adapt_bundle(bundle, x[pick], y[pick], method, seed=draw, views=views, unlabelled=unlabelled,
                                      tap_stage=tap, lab_classes=FIVE_PART if a.lab_classes else None)
                models = {False: new}
                if a.cell_probe:
                    models[True] = copy.deepcopy(new)
                    probe_cells = np.concatenate([pick, rest]) if unlabelled is not None else pick  # as adapt_model
                    refit_cell_probe(models[True], bundle, [ds.records[i] for i in probe_cells], pre)
                for probe, lim in variants:
                    before = {"unadapted_zero_shot": float(zero_right[rest][unadapted].mean())} if unadapted.any() else {}
                    res[probe, lim].append({**score(models[probe], x[rest], y[rest], lim, unadapted), **before,
                                            **(painted(models[probe], x_out[rest]) if a.cell_probe else {})})
            for (probe, lim), got in res.items():
                agg = {m: [float(np.nanmean([r.get(m, np.nan) for r in got])), float(np.nanstd([r.get(m, np.nan) for r in got]))]
                       for m in got[0]}
                rows.append({"lab": lab, "method": name + (f" {NAMED}" if a.lab_classes else "")
                             + (f" {PROBE}" if probe else "") + (f" {LIMITED}" if lim else ""),
                             "k": k,
                             "n_test": int(len(y) - len(pick)), **agg, "draws": a.draws,
                             "classes_adapted": int(len(pick) // k)})
                print(lab, rows[-1]["method"], k, {m: round(v[0], 3) for m, v in agg.items()},
                      f"{time.time() - t0:.0f}s", flush=True)

meta = {"model": a.model, "model_sha256_16": __import__("hashlib").sha256(Path(a.model).read_bytes()).hexdigest()[:16],
        "classes": cmap.describe(), "draws": a.draws, "hardware": "2 CPU cores, no GPU",
        "protocol": "per lab: k cells per class drawn at random (classes with more than k cells), adapted, "
                    "scored on all other cells of that lab; mean and sd over draws"}
if out.with_suffix(".json").is_file():  # rows not re-measured now are kept from the file
    done = {(r["lab"], r["method"], r["k"]) for r in rows}
    old = json.loads(out.with_suffix(".json").read_text())
    if old["model_sha256_16"] == meta["model_sha256_16"]:
        rows += [r for r in old["rows"] if (r["lab"], r["method"], r["k"]) not in done]
        meta["draws"] = old["draws"] if len(a.methods) < len(METHODS) else a.draws
order = {m: i for i, m in enumerate(["zero-shot", *METHODS])}
rows.sort(key=lambda r: (r["lab"], r["k"], order.get(r["method"].removesuffix(f" {LIMITED}").removesuffix(f" {PROBE}")
                                                    .removesuffix(f" {NAMED}"), 99),
                         NAMED in r["method"], PROBE in r["method"], r["method"].endswith(LIMITED)))
res = {**meta, "rows": rows}
out.with_suffix(".json").write_text(json.dumps(res, indent=1))
write_md(res)
