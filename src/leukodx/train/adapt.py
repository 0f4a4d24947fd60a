"""`leukodx adapt`: a model + a small labelled folder from a new lab -> a new model file.

Steps (chosen by measurement, benchmarks/adapt.py): optionally re-estimate batch-norm statistics on
the lab's images; optionally let the head also see an earlier block (`--tap-stage`, models/stage_tap.py);
refit the linear head on frozen features with a prior towards the original head;
fit the temperature on out-of-fold predictions; optionally fine-tune every weight on the lab's cells
(`head+finetune`); add the lab's cells to the reference features so its images stop counting as
unfamiliar (after fine-tuning or tapping the features have moved, so the lab's cells become the whole reference);
where the source has a no-white-cell probe, refit it on the lab's cells against their painted-out copies.
The original file is never touched; the new file's info and card name the adaptation data.
"""
from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from leukodx.data.class_map import map_classes
from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.errors import ConfigError, LeukodxError
from leukodx.heads.adapt import PriorLinearHead, adapt_batchnorm, finetune_network, self_train
from leukodx.heads.expected import expected_mask
from leukodx.heads.familiarity import knn_distance
from leukodx.heads.temperature import TemperatureScaler
from leukodx.models.artifact import ModelBundle
from leukodx.models.inference import logits_for
from leukodx.models.registry import linear_classifier
from leukodx.models.stage_tap import StageTap
from leukodx.train.referral import fit_cell_probe_on
from leukodx.transforms.preprocess import PreprocessConfig, normalize
from leukodx.transforms.views import dihedral_views

MODES = ("head", "bn+head", "head+finetune")
TAP_STAGE = 5  # --tap-stage auto: block 5 of an EfficientNet; picked on wbc_external (results/adapt.md)
FINETUNE = {"steps": 120, "lr": 3e-4}  # head+finetune: picked on 2 scratch draws per wbc_external lab; results/adapt.md

# the refit lowers every class it is shown no cells of (results/adapt.md, "unadapted classes")
WITHOUT_CELLS = ("Classes without adaptation cells: {}. The refit lowers them on every cell it is shown, so this lab's "
                 "cells of those classes will seldom be answered as such; give adapt a few cells of every class the lab sees.")
KEPT = "Classes the lab sees but gave no cells for, left as the source model has them: {}."
OUTSIDE_LAB = "Not among the lab's classes (--classes), so lowered on every cell it is shown: {}."


def class_lines(report: dict) -> list[str]:
    """What adapt did with the classes given no cells, in the words the card and the CLI both use."""
    return [message.format(", ".join(report[key])) for key, message in
            (("classes_without_cells", WITHOUT_CELLS), ("kept_classes", KEPT), ("outside_lab_classes", OUTSIDE_LAB))
            if report.get(key)]


def _classifier(model: torch.nn.Module) -> torch.nn.Linear:
    head = linear_classifier(model)
    if head is None:
        raise LeukodxError("adapt needs a model whose classifier is one linear layer")
    return head


def adapt_bundle(bundle: ModelBundle, images: torch.Tensor, labels: np.ndarray, mode: str = "head",
                 prior: float = 1e-3, seed: int = 0, views: int = 8,
                 unlabelled: torch.Tensor | None = None, tap_stage: int | None = None,
                 lab_classes: str | list[str] | None = None) -> tuple[ModelBundle, dict]:
    """uint8 images (N, 3, S, S) with labels in the bundle's class order -> adapted copy + what was done.
    `views` (1-8): the head is fitted on this many quarter turns / mirror images of each cell.
    `unlabelled`: more of the lab's cells, without labels: the head is then self-trained on them
    (leukodx.heads.adapt.self_train; the temperature still comes from the labelled cells alone).
    `tap_stage`: the new head also sees that block's pooled output (leukodx.models.stage_tap),
    standardised on the lab's cells, its weights starting at zero; the lab's cells become the whole
    unfamiliar-image reference (the features changed).
    `lab_classes` ('a,b' or a list): the classes this lab's cells can be; those among them given no cells keep the
    source head's rows (others given no cells are lowered on every cell, so they stay off the lab's cells)."""
    if mode not in MODES:
        raise ConfigError(f"adapt mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 1 <= views <= 8:
        raise ConfigError(f"adapt views must be 1-8, got {views!r}")
    if bundle.tree_head is not None:
        raise LeukodxError("adapt covers softmax heads; this model has an XGBoost head")
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise LeukodxError("adapt needs labelled cells of at least two classes")
    new = copy.deepcopy(bundle)
    pre = PreprocessConfig(**new.preprocess)
    counts = np.bincount(labels, minlength=len(new.classes))
    lab = expected_mask(lab_classes, new.classes)
    keep = tuple(int(c) for c in np.flatnonzero(lab & (counts == 0))) if lab is not None else ()
    n_bn = 0
    if mode == "bn+head":
        n_bn = adapt_batchnorm(new.model, (normalize(images[i:i + 32], pre.mean, pre.std) for i in range(0, len(images), 32)))
    tapped = tap_stage is not None
    if tapped:
        _tap(new, tap_stage, images, views)
    per_view = [logits_for(new.model, v, pre.mean, pre.std, pre_logits=True) for v in dihedral_views(images, views)]
    # the features the adapted model will see at prediction (averaged over the model's own views)
    # (the same views in the same order, so the per-view features already hold them when enough were taken)
    feats = np.mean(per_view[:new.views], 0) if len(per_view) >= new.views else \
        logits_for(new.model, images, pre.mean, pre.std, pre_logits=True, views=new.views)

    def stacked(idx):  # every view of the cells idx, with their labels
        return np.concatenate([f[idx] for f in per_view]), np.tile(labels[idx], len(per_view))

    lin = _classifier(new.model)
    w0, b0 = lin.weight.detach().numpy().copy(), lin.bias.detach().numpy().copy()
    fit = PriorLinearHead(w0, b0, prior, keep=keep).fit
    if unlabelled is not None and len(unlabelled):
        u_views = [logits_for(new.model, v, pre.mean, pre.std, pre_logits=True) for v in dihedral_views(unlabelled, views)]
        head, n_pseudo = self_train(fit, per_view, labels, u_views)
    else:
        head, n_pseudo = fit(*stacked(np.arange(len(labels)))), 0
    # temperature from out-of-fold logits: each cell scored by a head that saw none of its views
    folds = int(min(5, counts[counts > 0].min()))
    temperature, oof_acc = 1.0, float("nan")
    if folds >= 2:
        from sklearn.model_selection import StratifiedKFold
        oof = np.zeros((len(labels), len(w0)), np.float32)
        for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(feats, labels):
            oof[te] = PriorLinearHead(w0, b0, prior, keep=keep).fit(*stacked(tr)).decision_function(feats[te])
        temperature = TemperatureScaler().fit(oof, labels).temperature_
        oof_acc = float((oof.argmax(1) == labels).mean())
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(head.coef_))
        lin.bias.copy_(torch.from_numpy(head.intercept_))
    new.temperature = temperature  # head+finetune keeps the head stage's out-of-fold temperature
    finetuned = mode == "head+finetune"
    if finetuned:
        finetune_network(new.model, normalize(images, pre.mean, pre.std), labels, seed=seed, **FINETUNE)
        per_view = [logits_for(new.model, v, pre.mean, pre.std, pre_logits=True) for v in dihedral_views(images, views)]
        feats = logits_for(new.model, images, pre.mean, pre.std, pre_logits=True, views=new.views)
    threshold0 = new.unfamiliar_threshold
    # the cell probe learnt the source lab's cells: a new lab's cells, familiar once in the reference, would
    # be flagged by it (a scratch check on WBC v7: 29% of tecom's cells); adapt_model refits it on the lab's
    # cells (refit_cell_probe), which need their files
    dropped_probe, new.cell_probe = new.cell_probe is not None, None
    if new.reference is not None:  # a model that averages its views has one feature row per cell
        _add_to_reference(new, per_view if new.views == 1 else [feats], len(labels), replace=finetuned or tapped)
    report = {"mode": mode, "prior": prior, "views": views, "n_images": len(labels),
              "per_class": {new.classes[c]: int(n) for c, n in enumerate(counts) if n},
              # lowered: warned about where the lab named no classes; where it did, they are outside its classes
              "classes_without_cells": [c for i, c in enumerate(new.classes) if not counts[i] and lab is None],
              "kept_classes": [new.classes[i] for i in keep],
              "outside_lab_classes": [c for i, c in enumerate(new.classes) if lab is not None and not lab[i] and not counts[i]],
              "batchnorm_layers_updated": n_bn, "finetune": FINETUNE if finetuned else None, "tap_stage": tap_stage,
              "temperature": temperature,
              "unfamiliar_threshold": [float(threshold0), float(new.unfamiliar_threshold)],
              "out_of_fold_accuracy": oof_acc, "out_of_fold_folds": folds,
              "unlabelled": 0 if unlabelled is None else len(unlabelled), "pseudo_labelled": n_pseudo,
              "cell_probe_dropped": dropped_probe}
    return new, report


def auto_tap_stage(bundle: ModelBundle, mode: str = "head") -> int | None:
    """`--tap-stage auto`: TAP_STAGE for an EfficientNet not tapped yet, else None (the head alone); None for
    `head+finetune` too, which moves every block itself (the two together were not measured)."""
    blocks = getattr(bundle.model, "blocks", None)
    return TAP_STAGE if mode != "head+finetune" and blocks is not None and len(blocks) > TAP_STAGE + 1 else None


def _tap(bundle: ModelBundle, stage: int, images: torch.Tensor, views: int) -> None:
    """Wrap the bundle's network in a StageTap: the earlier stage's pooled features are standardised on
    the lab's cells (every view) and enter the head with zero weights, so the refit starts from the
    source head's answers."""
    if isinstance(bundle.model, StageTap):
        raise LeukodxError("this model already has a tapped stage; adapt it without --tap-stage")
    if not hasattr(bundle.model, "blocks"):
        raise LeukodxError(f"--tap-stage needs an EfficientNet-style model (blocks of stages); {bundle.arch} has none")
    old = _classifier(bundle.model)
    model = StageTap(bundle.model, stage, old.out_features).eval()
    pre = PreprocessConfig(**bundle.preprocess)
    raw = np.concatenate([logits_for(model, v, pre.mean, pre.std, pre_logits=True)[:, :model.tap_channels]
                          for v in dihedral_views(images, views)])
    with torch.no_grad():
        model.tap_mean.copy_(torch.from_numpy(raw.mean(0)))
        model.tap_std.copy_(torch.from_numpy(raw.std(0) + 1e-6))
        model.classifier.weight.zero_()
        model.classifier.weight[:, model.tap_channels:] = old.weight
        model.classifier.bias.copy_(old.bias)
    bundle.model = model
    bundle.model_kwargs = {**bundle.model_kwargs, "tap_stage": stage}


def _add_to_reference(bundle: ModelBundle, per_view: list[np.ndarray], n: int, replace: bool = False) -> None:
    """Every view of the lab's cells joins the unfamiliar-image reference; the threshold rises, where
    needed, to the same quantile of the lab's own cells scored without their own views (cross-fitted),
    so the lab's next cells are not unfamiliar merely because few of its cells are in the reference.
    `replace` (the network itself changed): the lab's cells become the whole reference and set the threshold."""
    unit = torch.nn.functional.normalize(torch.from_numpy(np.concatenate(per_view)).float(), dim=1)
    old = unit[:0] if replace else bundle.reference.float()
    ref = torch.cat([old, unit])
    ref_groups = np.concatenate([np.full(len(old), -1), np.tile(np.arange(n), len(per_view))])
    cross = knn_distance(per_view[0], ref.numpy(), bundle.knn_k, np.arange(n), ref_groups)
    rate = bundle.info.get("referral", {}).get("unfamiliar_rate", 0.02)
    floor = -np.inf if replace else bundle.unfamiliar_threshold
    bundle.unfamiliar_threshold = max(floor, float(np.quantile(cross, 1 - rate)))
    bundle.reference = ref


def refit_cell_probe(bundle: ModelBundle, source: ModelBundle, records, pre) -> dict:
    """An adapted model's own no-white-cell probe (leukodx.heads.cell_probe), where its source had one: fitted
    on the lab's cells (`records`, their files; label -1 for unlabelled ones) against the same files with their
    cells painted out, as training fits it on validation images (leukodx.train.referral), flagging the same share of cells.
    Its threshold comes out of fold by slide; cells all of one slide or case (the web app's reviewed cells)
    are grouped by image instead, so a lab's first case still gets a probe (unlabelled cells name no slide)."""
    share = source.info.get("referral", {}).get("cell_probe", {}).get("max_flagged", 0.005)
    named = {r.group for r in records} - {None}
    grouped_by = "slide" if len(named) > 1 else "image; the cells share one slide" if named else "image"
    if len(named) == 1:
        records = [replace(r, group=None) for r in records]
    labelled = sum(r.label >= 0 for r in records)
    source = f"lab's {labelled} labelled cells" + (f" and {len(records) - labelled} unlabelled ones"
                                                   if len(records) > labelled else "")
    report = fit_cell_probe_on(bundle, records, pre, share, source=source)
    return {**report, "grouped_by": grouped_by}


def adapt_model(model_path: str | Path, index: DatasetIndex, out: str | Path, mode: str = "head",
                add_classes: bool = False, seed: int = 0, progress: bool = False,
                unlabelled: list[Path] | None = None, tap_stage: int | str | None = "auto",
                cell_probe: bool = True, lab_classes: str | None = None) -> dict:
    """Load, map the folder's classes onto the model's, adapt, save to `out` with a card beside it.
    `tap_stage`: a block index, 'auto' (auto_tap_stage; the default, as the CLI and the web app) or None (the head alone).
    `cell_probe`: where the source model has a no-white-cell probe, refit it on the lab's cells
    (refit_cell_probe); False leaves the adapted model without one.
    `unlabelled`: image files of more of the lab's cells, for self-training (files that do not decode or
    fail the image checks are skipped). `lab_classes`: as in adapt_bundle."""
    from leukodx.data.torch_dataset import ImageDataset
    from leukodx.transforms.preprocess import Preprocess

    src = Path(model_path)
    src_file = src / "model.pt" if src.is_dir() else src
    out = Path(out)
    if out.resolve() == src_file.resolve():
        raise LeukodxError("adapt never overwrites the original model: give a new --out file")
    if out.exists():
        raise LeukodxError(f"{out}: already exists; pick a new --out")
    bundle = ModelBundle.load(src_file)
    unknown = [c for c in index.classes if c.lower() not in {k.lower() for k in bundle.classes}]
    if unknown and not add_classes:
        raise LeukodxError(f"classes the model does not know: {', '.join(unknown)}; remove those folders, "
                           "or pass --add-classes to add them to the model")
    if unknown:
        bundle = _with_classes(bundle, unknown)
    mapped, _ = map_classes(index, bundle.classes)
    pre = Preprocess(PreprocessConfig(**bundle.preprocess))
    ds = ImageDataset(mapped, pre, progress=progress)
    if len(ds) == 0:
        raise LeukodxError(f"{index.name}: no readable images to adapt on")
    t0 = time.perf_counter()
    u_images, u_paths = _readable(unlabelled, pre) if unlabelled else (None, [])
    if tap_stage == "auto":
        tap_stage = auto_tap_stage(bundle, mode)
    new, report = adapt_bundle(bundle, ds.images, ds.labels.numpy(), mode, seed=seed, unlabelled=u_images,
                               tap_stage=tap_stage, lab_classes=lab_classes)
    if report["cell_probe_dropped"] and cell_probe:  # the unlabelled cells too: 40 cells cannot place a 0.5% threshold
        report["cell_probe"] = refit_cell_probe(new, bundle, ds.records + [ImageRecord(str(p), -1) for p in u_paths], pre)
    files = sorted(mapped.key(r) for r in ds.records)
    report.update({"source_model": str(src_file), "source_sha256": hashlib.sha256(src_file.read_bytes()).hexdigest(),
                   "data": str(index.root or index.name), "added_classes": unknown, "unreadable_files": ds.bad,
                   "data_files_sha256": hashlib.sha256("\n".join(files).encode()).hexdigest(),
                   "seconds": round(time.perf_counter() - t0, 1)})
    new.info = {**new.info, "adapted": report}
    card, tmp = out.with_suffix(".md"), out.with_suffix(".md.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(adapt_card(new, report))  # the card first: an interrupt leaves no model without its card
    tmp.replace(card)
    new.save(out)  # atomic (ModelBundle.save)
    return {**report, "model": str(out), "card": str(card)}


def _readable(paths: list[Path], pre) -> tuple[torch.Tensor, list[Path]]:
    """The files that decode and pass the image checks (a blank or a non-cell must not be pseudo-labelled):
    their images and their paths."""
    from leukodx.data.images import load_image
    from leukodx.errors import BadImageError
    from leukodx.heads.image_checks import image_problem

    out, kept = [], []
    for p in paths:
        try:
            a = pre.array(load_image(p))
        except BadImageError:
            continue
        if image_problem(a) is None:
            out.append(torch.from_numpy(a).permute(2, 0, 1))
            kept.append(Path(p))
    size = pre.cfg.image_size
    return (torch.stack(out) if out else torch.zeros((0, 3, size, size), dtype=torch.uint8)), kept


def _with_classes(bundle: ModelBundle, names: list[str]) -> ModelBundle:
    """A copy whose classifier has extra rows for new classes (zero weights, low bias: the refit
    learns them); the known classes keep their rows."""
    new = copy.deepcopy(bundle)
    old = _classifier(new.model)
    n = len(new.classes) + len(names)
    if hasattr(new.model, "reset_classifier"):  # timm models
        new.model.reset_classifier(n)
    else:  # leukodx.models.base.TimmStyle
        new.model.head = torch.nn.Linear(old.in_features, n)
    lin = _classifier(new.model)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(float(old.bias.min()) - 2.0)
        lin.weight[:old.out_features] = old.weight
        lin.bias[:old.out_features] = old.bias
    new.classes = list(new.classes) + list(names)
    return new


def adapt_card(bundle: ModelBundle, report: dict) -> str:
    cls = ", ".join(f"{k} {v}" for k, v in report["per_class"].items())
    return "\n".join([
        f"# Adapted model: {bundle.arch} ({', '.join(bundle.classes)})", "",
        f"- Source model: `{report['source_model']}` (sha256 {report['source_sha256'][:16]}...), unchanged.",
        (f"- Adaptation data: `{report['data']}`: {report['n_images']} cells ({cls}); file list sha256 "
        f"{report['data_files_sha256'][:16]}..."),
        (f"- What was refit: {'batch-norm statistics and ' if report['mode'] == 'bn+head' else ''}the linear head on "
        f"frozen features of {report['views']} quarter-turn / mirror views of each cell"
        + (f", with block {tap}'s pooled features beside the last stage's (standardised on these cells; the "
           "unfamiliar-image reference is now the lab's cells alone)" if (tap := report.get("tap_stage")) is not None
           else "") + f" (prior {report['prior']} "
        f"towards the source head); temperature {report['temperature']:.3f} "
        f"from {report['out_of_fold_folds']}-fold out-of-fold predictions" + (
            f"; then every weight fine-tuned on the cells ({ft['steps']} AdamW steps from lr {ft['lr']:g}, "
            "batch-norm statistics frozen; the unfamiliar-image reference is now the lab's cells alone)"
            if (ft := report.get("finetune")) else "") + (
            f"; every view of the lab's cells added to the unfamiliar-image reference, its threshold "
            f"{report['unfamiliar_threshold'][0]:.4f} -> {report['unfamiliar_threshold'][1]:.4f} (the lab's cells, "
            "each scored without its own views)." if math.isfinite(report["unfamiliar_threshold"][1]) else ".")),
        *([(f"- Self-training: {report['pseudo_labelled']} of {report['unlabelled']} unlabelled cells of the lab joined "
            "the head's fit with the label it gave them (view-averaged probability >= 0.95, a class the labelled cells "
            "show, and the label that spreading over the lab's own cells gives it; 3 rounds).")] if report.get("unlabelled") else []),
        (f"- Out-of-fold accuracy on the adaptation cells: {report['out_of_fold_accuracy']:.3f} "
        f"(a small-sample estimate; score the model on more of this lab's cells with `leukodx evaluate`)."),
        *([f"- Classes added: {', '.join(report['added_classes'])}"] if report["added_classes"] else []),
        *[f"- {line}" for line in class_lines(report)],
        *([_probe_line(report)] if report.get("cell_probe_dropped") else []),
        "- Source model info (training data, split, metrics) is kept under `info` in the model file.", ""]) + "\n"


def _probe_line(report: dict) -> str:
    probe = report.get("cell_probe") or {}
    if "fitted_on" in probe:
        return (f"- No-white-cell probe (`not_a_cell` from features): refitted on the {probe['fitted_on']} (the source "
                f"model's learnt the source lab's cells); out of fold (grouped by {probe.get('grouped_by', 'slide')}) "
                "it flags "
                f"{probe['flagged_with_cell_out_of_fold']:.1%} of those with a cell and "
                f"{probe['flagged_without_cell_out_of_fold']:.1%} of those without.")
    return ("- The source model's no-white-cell probe (`not_a_cell` from features) is not carried over: it learnt the "
            "source lab's cells and would refer many of this lab's" + (f"; no new one was fitted ({probe['skipped']})"
                                                                        if "skipped" in probe else "") +
            ". Fields without a white cell are left to the image checks and the unfamiliar-image distance.")
