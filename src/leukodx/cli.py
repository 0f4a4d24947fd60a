"""The `leukodx` command. Thin: parse options, call the package, print. Errors are one line."""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from leukodx.errors import LeukodxError
from leukodx.predict.shipped import resolve_model


def cmd_data(a) -> int:
    from leukodx.data import recipes

    if a.action == "list":
        for name in recipes.recipe_names():
            dl = recipes.DOWNLOADS.get(name, {})
            print(f"{name:16s} {'download: ' + dl['url'] if 'url' in dl else dl.get('manual', '')}")
        return 0
    if a.action == "download":
        from leukodx.data.download import download_dataset
        print(download_dataset(a.target, a.dest, url=a.url))
        return 0
    if a.action == "synth":
        from leukodx.data.synthetic import generate
        idx = generate(a.target, a.n, a.size, a.seed)
        print(f"wrote {len(idx)} SYNTHETIC images and manifest.csv to {a.target}")
        return 0
    from leukodx.data.splits import Split, make_split, split_summary

    index = recipes.load_dataset(a.target)
    if a.action == "split":
        split = make_split(index, a.val, a.test, a.seed, progress=True)
        split.save(a.out)
        print(json.dumps(split_summary(index, split), indent=1))
        print(f"split saved to {a.out}")
        return 0
    from leukodx.data.audit import audit, format_audit

    split = Split.load(a.split) if a.split else (make_split(index, a.val, a.test, a.seed) if a.check_split else None)
    rep = audit(index, split, a.near, progress=True)
    print(format_audit(rep))
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 1 if "split" in rep and not rep["split"]["ok"] else 0


def cmd_train(a) -> int:
    from leukodx.config import TrainConfig
    from leukodx.train.run import train

    if a.resume:
        cfg = TrainConfig.load(Path(a.resume) / "config.yaml")
        run_dir = Path(a.resume)
    else:
        over = {k: getattr(a, k) for k in ("data", "model", "epochs", "batch_size", "lr", "image_size", "augment",
                                           "seed", "split_file", "freeze_epochs", "max_images_per_class", "optimizer",
                                           "max_steps", "warmup_steps")}
        if a.no_pretrained:
            over["pretrained"] = False
        cfg = TrainConfig.load(a.config, **over) if a.config else \
            TrainConfig.from_dict({k: v for k, v in over.items() if v is not None})
        run_dir = Path(a.out)
    s = train(cfg, run_dir, resume=bool(a.resume))
    ci = s["accuracy_ci95"]
    print(f"test accuracy {s['accuracy']:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "") +
          f" on {s['n_test']} grouped-split test images; colour baseline {s['baseline']['accuracy']:.4f}")
    print(f"model: {run_dir / 'model.pt'}  report: {run_dir / 'test' / 'report.html'}")
    for b in s["unreadable_files"]:
        print(f"skipped: {b}")
    return 0


def cmd_train_detector(a) -> int:
    from leukodx.config import DetectorConfig
    from leukodx.train.detector import train_detector

    run_dir = Path(a.resume or a.out)
    cfg = DetectorConfig.load(run_dir / "config.yaml" if a.resume else a.config,
                              **({} if a.resume else {"data": a.data, "max_steps": a.max_steps, "seed": a.seed}))
    m = train_detector(cfg, run_dir, resume=bool(a.resume))
    for kind, r in m["per_kind"].items():
        print(f"{kind:9s} AP@0.5 {r['ap50']:.3f}  AP@[.5:.95] {r['ap']:.3f}  recall {r['recall']:.3f}  "
              f"precision {r['precision']:.3f} at score {m['score_thresholds'][kind]}")
    print(f"on {m['fields']} test fields (grouped split); detector: {run_dir / 'detector.pt'}")
    return 0


def cmd_smear(a) -> int:
    from leukodx.detect.detector import Detector
    from leukodx.detect.outputs import write_case
    from leukodx.detect.smear import SmearAnalyzer
    from leukodx.heads.expected import expected_mask, expected_names
    from leukodx.predict.predictor import Predictor, collect_images

    files, skipped = collect_images(a.target)
    det_path, model_path = resolve_model(a.detector), resolve_model(a.model)
    predictor = Predictor.load(model_path, backend=a.backend)
    expected = expected_mask(a.classes, predictor.classes)
    analyzer = SmearAnalyzer(Detector.load(det_path), predictor, a.pixels_per_um, expected)
    root = Path(a.target) if Path(a.target).is_dir() else Path(a.target).parent
    names = [str(f.relative_to(root)) for f in files]
    case = analyzer.analyse(files, names)
    case.errors += skipped
    d = write_case(case, a.out, analyzer.predictor.bundle.classes, dict(zip(names, files)),
                   {"wbc_model": str(model_path), "detector": str(det_path),
                    "expected_classes": expected_names(expected, predictor.classes)})
    print(f"{d['fields']} field(s): {d['white_cells_detected']} white cells ({d['white_cells_referred']} referred), "
          f"{sum(f['rbc'] for f in d['per_field'].values())} red cells, "
          f"{sum(f['platelet'] for f in d['per_field'].values())} platelets; scale: {d['scale_note']}")
    for c, t in d["per_type"].items():
        if t["count"]:
            print(f"  {c:13s} {t['count']:4d}  {t['percent']:5.1f}%  (95% CI {t['percent_ci95'][0]:.1f}-{t['percent_ci95'][1]:.1f})")
    for key in ("low_count_flag", "lab_shift_flag"):
        if d.get(key):
            print("warning: " + d[key])
    for e in case.errors:
        print(f"skipped: {e['path']}: {e['error']}")
    print(f"wrote {Path(a.out) / 'report.html'}, differential.json, detections.csv, detections_coco.json, fields/")
    return 0


def cmd_evaluate(a) -> int:
    from leukodx.data.recipes import load_dataset
    from leukodx.data.splits import Split
    from leukodx.detect.detector import is_detector_file
    from leukodx.evaluate.evaluate_run import evaluate_bundle
    from leukodx.models.artifact import ModelBundle

    src = resolve_model(a.model)
    if is_detector_file(src):
        return _evaluate_detector(a, src)
    bundle = ModelBundle.load(src)
    run_dir = src if src.is_dir() else src.parent
    data = a.data or bundle.info.get("data_spec") or _run_data(run_dir)
    index = load_dataset(data)
    out = Path(a.out or run_dir / f"eval_{a.side}")
    extra = {"model": str(src)}
    if list(index.classes) != list(bundle.classes):
        if not a.all_images:
            raise LeukodxError(f"data classes {index.classes} differ from the model's {bundle.classes}; "
                               "for a set from another lab use --all-images (classes are then mapped by name)")
        from leukodx.data.class_map import map_classes
        index, cmap = map_classes(index, bundle.classes)
        extra["classes"] = cmap.describe()
        print(extra["classes"])
    if a.all_images:
        if a.shifts or a.external:
            raise LeukodxError("--shifts / --external evaluate the run's test split; leave out --all-images")
        idx, groups, extra["split"] = list(range(len(index))), None, "all images (no split)"
    else:
        split_file = a.split or run_dir / "split.json"
        split = Split.load(split_file)
        idx = split.indices(index, a.side)
        groups = split.groups_of(index, idx)
        extra["split"] = f"{split.protocol.get('method')} ({split_file}), side {a.side}"
    if a.shifts or a.external:
        from leukodx.evaluate.robustness import evaluate_robustness, robustness_table
        from leukodx.transforms.shifts import parse_shifts
        ext = load_dataset(a.external) if a.external else None
        res = evaluate_robustness(bundle, index, split, parse_shifts(a.shifts) if a.shifts else ["none"], out, ext,
                                  n_boot=a.bootstrap)
        print("\n".join(robustness_table(res["rows"])))
        print(f"written: {out / 'robustness.md'}")
        return 0
    m = evaluate_bundle(bundle, index, idx, groups, out, f"{bundle.arch} on {index.name}", extra, a.bootstrap)
    ci = m.get("ci95", {}).get("accuracy")
    print(f"accuracy {m['accuracy']:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "") +
          f", macro-F1 {m['macro_f1']:.4f}, MCC {m['mcc']:.4f} on {m['n']} images")
    print(f"report: {out / 'report.html'}")
    return 0


def _evaluate_detector(a, src: Path) -> int:
    from leukodx.detect.detector import Detector
    from leukodx.evaluate.detection import evaluate_detector_on

    m = evaluate_detector_on(Detector.load(src), a.data, a.side, a.all_images, min(a.bootstrap, 200))
    out = Path(a.out or src.parent / f"eval_{a.side}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(m, indent=1))
    for kind, r in m["per_kind"].items():
        ap50 = "-" if r["ap50"] is None else f"{r['ap50']:.3f}"
        print(f"{kind:9s} AP@0.5 {ap50}  recall {r['recall']:.3f}  precision {r['precision']:.3f}  "
              f"count error/field {r['count_abs_error_per_field']:.2f}")
    print(f"{m['fields']} fields, {m['split']}, score thresholds {m['score_thresholds']}; written: {out / 'metrics.json'}")
    return 0


def _run_data(run_dir: Path) -> str:
    cfg = run_dir / "config.yaml"
    if not cfg.is_file():
        raise LeukodxError("give --data: the model is not inside a run folder with config.yaml")
    from leukodx.config import TrainConfig
    return TrainConfig.load(cfg).data


def cmd_predict(a) -> int:
    from leukodx.heads.expected import expected_mask
    from leukodx.heads.referral import lab_shift_flag
    from leukodx.predict.results import collect_images, write_predictions

    if a.backend == "onnx" and (a.model in ("all", "wbc") or a.model.endswith(".onnx")):
        from leukodx.predict.lean import OnnxPredictor  # no torch: the small-footprint path
        predictor = OnnxPredictor(resolve_model(a.model, ".onnx"))
        if a.explain:
            raise LeukodxError("--explain needs the PyTorch model: use --backend torch")
    else:
        from leukodx.predict.predictor import Predictor
        if str(a.model).endswith(".onnx"):
            raise LeukodxError("an .onnx model runs with --backend onnx")
        predictor = Predictor.load(resolve_model(a.model), backend=a.backend)
    expected = expected_mask(a.classes, predictor.classes)
    paths, skipped = collect_images(a.target)
    journal = None
    if a.out:  # finished rows survive a kill; a re-run skips them
        import hashlib

        from leukodx.predict.results import Journal
        model_file = resolve_model(a.model, ".onnx" if hasattr(predictor, "session") else ".pt")
        model_file = model_file / "model.pt" if model_file.is_dir() else model_file
        run_id = hashlib.sha256(model_file.read_bytes()).hexdigest() + (f" limited to {a.classes}" if a.classes else "")
        journal = Journal(a.out, run_id)  # another model or class limit starts afresh
        paths = [p for p in paths if str(p) not in journal.done]
    preds, errors = predictor.predict_paths(paths, progress=len(paths) > 1 and not a.quiet,
                                            on_row=journal.add if journal else None, expected=expected)
    if journal:
        preds, errors = journal.preds + preds, journal.errors + errors
    errors += skipped
    if a.explain:
        from leukodx.data.walk import derived_name
        from leukodx.explain import Explainer
        from leukodx.explain.render import save_explanations
        ex = Explainer(predictor.bundle)
        for i, p in enumerate(preds):
            save_explanations(ex.explain(p.path, a.methods.split(",")), a.explain, derived_name(i, p.path))
        print(f"explanations ({a.methods}) -> {a.explain}", file=sys.stderr)
    if a.outline:
        from leukodx.predict.outline import write_outlines
        rows = write_outlines(preds, a.outline, keep_cytoplasm=predictor.bundle.preprocess.get("keep_cytoplasm", False))
        (Path(a.outline) / "outlines.json").write_text(json.dumps(rows, indent=1))
        print(f"masks and outlined images -> {a.outline}", file=sys.stderr)
    flag = lab_shift_flag([p.refer_reason for p in preds])
    warnings = [flag] if flag else []
    if a.out:
        write_predictions(preds, errors, a.out, a.format, warnings)
        journal.finish()
        reasons = Counter(p.refer_reason or "low_confidence" for p in preds if p.refer)
        referred = f"{sum(reasons.values())} referred" + (" (" + ", ".join(
            f"{n} {r.replace('_', ' ')}" for r, n in reasons.most_common()) + ")" if reasons else "")
        print(f"{len(preds)} predictions, {referred}, {len(errors)} unusable or skipped files -> {a.out}")
    elif a.format == "csv":
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            print(write_predictions(preds, errors, Path(d) / "p.csv", "csv").read_text(), end="")
    else:
        print(json.dumps({"predictions": [p.to_dict() for p in preds], "errors": errors, "warnings": warnings}, indent=1))
    for e in errors:
        print(f"skipped {e['path']}: {e['error']}", file=sys.stderr)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0 if preds or not errors else 1


def cmd_explain(a) -> int:
    from leukodx.data.walk import derived_name
    from leukodx.errors import BadImageError
    from leukodx.explain import Explainer
    from leukodx.explain.render import save_explanations
    from leukodx.models.artifact import ModelBundle
    from leukodx.predict.results import collect_images

    ex = Explainer(ModelBundle.load(resolve_model(a.model)), layer=a.layer)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    rows, failed = [], 0
    paths, skipped = collect_images(a.target)
    for e in skipped:
        print(f"{e['path']}: {e['error']}", file=sys.stderr)
    for i, path in enumerate(paths):
        try:
            es = ex.explain(path, methods, a.target_class)
        except BadImageError as e:
            print(f"skipped {path}: {e.problem}", file=sys.stderr)
            failed += 1
            continue
        files = save_explanations(es, a.out, derived_name(i, path))
        if a.feature_maps:
            from leukodx.explain.feature_maps import feature_maps, feature_sheet
            from leukodx.heads.gray_fallback import GRAY_NOTE
            sheet = Path(a.out) / f"{derived_name(i, path)}_feature_maps.png"
            title = GRAY_NOTE if es[0].grayscale_copy else ""
            feature_sheet(feature_maps(ex.model, ex.input_of(es[0])), title=title).save(sheet)  # what was read
            files["feature_maps"] = str(sheet)
        rows.append({"path": str(path), "label": es[0].label, "probability": round(es[0].probability, 6),
                     "grayscale_copy": es[0].grayscale_copy,
                     "seconds": {e.method: round(e.seconds, 3) for e in es}, "files": files})
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / "explanations.json").write_text(json.dumps(rows, indent=1))
    print(f"{len(rows)} images explained ({', '.join(methods)}) -> {a.out}")
    return 0 if rows or not failed else 1


def cmd_gan(a) -> int:
    from leukodx.gan.run import train_gan

    if a.action == "train":
        out = train_gan(a.data, a.kind, a.out, a.size, a.epochs, a.batch_size, a.seed, a.resume, not a.quiet,
                        a.max_images_per_class, width=a.width, diffaugment=a.diffaugment)
        print(f"generator(s) -> {out}; sample grids under {Path(a.out)}/*/samples/")
        return 0
    from leukodx.gan.evaluate import evaluate_gan
    res = evaluate_gan(a.out, a.n)
    print(json.dumps(res, indent=1))
    return 0


def cmd_synthesize(a) -> int:
    from leukodx.gan.run import synthesize

    print(f"synthetic set (every image marked synthetic) -> {synthesize(a.gan, a.out, a.n_per_class, a.seed)}")
    return 0


def cmd_export(a) -> int:
    from leukodx.detect.detector import Detector, is_detector_file
    from leukodx.detect.onnx_runtime import export_detector_onnx
    from leukodx.models.artifact import ModelBundle
    from leukodx.predict.onnx_export import export_onnx

    src = resolve_model(a.model)
    if is_detector_file(src):
        print(export_detector_onnx(Detector.load(src), a.out))
    else:
        print(export_onnx(ModelBundle.load(src), a.out))
    return 0


def _tap_stage(text: str) -> int | str | None:
    if text == "none":
        return None
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a block number or 'auto', got {text!r}") from None


def cmd_adapt(a) -> int:
    from leukodx.data.recipes import load_dataset
    from leukodx.train.adapt import adapt_model

    unlabelled = None
    if a.unlabelled:
        from leukodx.data.images import is_image_file
        from leukodx.predict.results import collect_images
        unlabelled = [f for f in collect_images(a.unlabelled)[0] if is_image_file(f)]
    r = adapt_model(resolve_model(a.model), load_dataset(a.data), a.out, a.mode, a.add_classes, a.seed, not a.quiet,
                    unlabelled, a.tap_stage, not a.no_cell_probe, a.classes)
    print(f"adapted on {r['n_images']} cells ({', '.join(f'{k} {v}' for k, v in r['per_class'].items())}); "
          f"out-of-fold accuracy {r['out_of_fold_accuracy']:.3f}; temperature {r['temperature']:.3f}"
          + (f"; self-trained on {r['pseudo_labelled']} of {r['unlabelled']} unlabelled cells" if r["unlabelled"] else ""))
    from leukodx.train.adapt import class_lines
    for line in class_lines(r):  # the card's lines, in the same words
        print(line)
    if "cell_probe" in r:
        probe = r["cell_probe"]
        print(f"no-white-cell probe: skipped ({probe['skipped']})" if "skipped" in probe else
              f"no-white-cell probe refitted on these cells (out of fold: flags {probe['flagged_with_cell_out_of_fold']:.1%} "
              f"of cells, {probe['flagged_without_cell_out_of_fold']:.1%} of their painted-out copies)")
    print(f"model: {r['model']}\ncard: {r['card']}")
    return 0


def _data_dir(a) -> Path:
    import os
    if a.data_dir:
        return Path(a.data_dir)
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "leukodx"


def serve_models(specs: list[str]) -> dict[str, Path]:
    """['NAME=PATH', ...] -> {name: model file}, each checked to load now rather than at the first upload."""
    from leukodx.predict.predictor import Predictor
    from leukodx.serve.models import check_name

    out = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not path:
            raise LeukodxError(f"--model {spec!r}: give NAME=PATH")
        file = resolve_model(path)
        out[check_name(name)] = file / "model.pt" if file.is_dir() else file
        Predictor.load(out[name])
    return out


def cmd_serve(a) -> int:
    import os

    from leukodx.serve.storage import Store

    token = a.token or os.environ.get("LEUKODX_TOKEN")
    data_dir = _data_dir(a)
    if a.host not in ("127.0.0.1", "localhost", "::1") and not token and not Store(data_dir, a.db_url).has_users():
        raise LeukodxError(f"refusing to serve on {a.host} without accounts: add users with `leukodx users add` "
                           "or give --token / LEUKODX_TOKEN (the default 127.0.0.1 needs neither)")
    models = serve_models(a.model)
    import uvicorn

    from leukodx.serve.app import create_app
    print(f"leukodx: serving http://{a.host}:{a.port}/ (API docs /docs); data in {data_dir}", file=sys.stderr)
    uvicorn.run(create_app(data_dir, a.db_url, token, models), host=a.host, port=a.port, log_level="warning")
    return 0


def cmd_users(a) -> int:
    import getpass

    from leukodx.serve.storage import Store

    password = sys.stdin.readline().rstrip("\n") if a.password_stdin else getpass.getpass(f"password for {a.name}: ")
    try:
        token = Store(_data_dir(a), a.db_url).add_user(a.name, a.role, password)
    except ValueError as e:
        raise LeukodxError(str(e)) from None
    print(f"user {a.name} ({a.role}) added; API token (shown once): {token}")
    return 0


def cmd_demo(a) -> int:
    from leukodx.demo import run_demo

    s = run_demo(a.out, a.data, a.epochs)
    ci = s["accuracy_ci95"]
    print(f"demo done: test accuracy {s['accuracy']:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else "") +
          f" on {s['n_test']} images ({'SYNTHETIC data' if a.data is None else a.data})")
    print(f"report: {s['report']}\npredictions: {s['demo_predictions']}")
    return 0


def cmd_models(a) -> int:
    from leukodx.models import list_models
    print("\n".join(list_models()))
    print("(plus any timm model name)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leukodx", description="Explainable leukemia diagnosis from blood-smear images.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="inspect, split, audit, generate or download data sets")
    d.add_argument("action", choices=["audit", "split", "list", "synth", "download"],
                   help="audit: duplicates, counts, sizes, leaks; split: write a grouped split file; list: known "
                        "recipes; synth: write synthetic demo images; download: fetch a public set")
    d.add_argument("target", nargs="?", default="",
                   help="data set (recipe name, recipe:PATH, folder or CSV), or output folder for synth, or name for download")
    d.add_argument("--split", help="audit: check this split file for leaks")
    d.add_argument("--check-split", action="store_true", help="audit: make a fresh grouped split and check it")
    d.add_argument("--out", default="split.json", help="split: where to write the split file")
    d.add_argument("--val", type=float, default=0.15, help="split: validation share (default 0.15)")
    d.add_argument("--test", type=float, default=0.2, help="split: test share (default 0.2)")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--near", type=int, default=6, help="audit: dHash-256 distance counted as near duplicate")
    d.add_argument("--json", help="audit: also write the full report as JSON here")
    d.add_argument("--n", type=int, default=60, help="synth: images per class")
    d.add_argument("--size", type=int, default=96, help="synth: image size in pixels")
    d.add_argument("--dest", default="datasets", help="download: folder to unpack into")
    d.add_argument("--url", help="download: alternative address (mirror or file://)")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a model with a grouped split, then evaluate it on the test side")
    t.add_argument("--data", help="recipe name (e.g. taleqani_all), recipe:PATH, class-per-folder tree or CSV manifest")
    t.add_argument("--model", help="model name (see `leukodx models`), default efficientnet_lite0")
    t.add_argument("--config", help="YAML file with any TrainConfig keys; command-line options override it")
    t.add_argument("--out", default="runs/latest", help="run folder for config, split, checkpoints, model and report")
    t.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    t.add_argument("--epochs", type=int, help="maximum epochs")
    t.add_argument("--max-steps", type=int, help="a budget in optimiser steps instead of epochs")
    t.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up before the cosine decay")
    t.add_argument("--batch-size", type=int, help="images per batch")
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--optimizer", help="adam, adamw or sgd")
    t.add_argument("--image-size", type=int, help="input size in pixels (square)")
    t.add_argument("--augment", help="none, seed, ddrnet, thesis, autoaugment, randaugment, trivialaugment, "
                                     "robust (against stain, background and scale shortcuts; augment_drop in a "
                                     "config leaves ingredients out)")
    t.add_argument("--freeze-epochs", type=int, help="epochs that train only the classifier first")
    t.add_argument("--max-images-per-class", type=int, help="quick runs: cap training images per class")
    t.add_argument("--seed", type=int, help="random seed for split and training")
    t.add_argument("--split-file", help="reuse this split file instead of making one")
    t.add_argument("--no-pretrained", action="store_true", help="train from scratch (no ImageNet weights)")
    t.set_defaults(func=cmd_train)

    td = sub.add_parser("train-detector", help="train the smear-field detector (WBC / RBC / platelet boxes)")
    td.add_argument("--config", default="configs/bccd_detector.yaml", help="YAML with DetectorConfig keys")
    td.add_argument("--data", help="VOC folder (Annotations/ + JPEGImages/), default from the config")
    td.add_argument("--out", default="runs/detector", help="run folder")
    td.add_argument("--resume", metavar="RUN", help="continue an interrupted run from its last checkpoint")
    td.add_argument("--max-steps", type=int, help="optimiser steps")
    td.add_argument("--seed", type=int, help="random seed for split and training")
    td.set_defaults(func=cmd_train_detector)

    sm = sub.add_parser("smear", help="whole smear fields: find every white cell, type it, differential count")
    sm.add_argument("target", help="a field image or a folder of fields (one case)")
    sm.add_argument("--out", required=True, help="folder for report.html, differential.json, detections.csv/COCO, fields/")
    sm.add_argument("--detector", default="smear", help="detector file ('smear' = shipped)")
    sm.add_argument("--model", default="wbc", help="WBC-type model file or run folder ('wbc' = shipped)")
    sm.add_argument("--pixels-per-um", type=float, help="the camera's scale, if known (else measured from red cells)")
    sm.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="WBC model runtime")
    sm.add_argument("--classes", help="white-cell classes the answers are limited to (comma list, as in predict)")
    sm.set_defaults(func=cmd_smear)

    e = sub.add_parser("evaluate", help="metrics with 95%% CIs, calibration and an HTML report for a model")
    e.add_argument("model", help="run folder, model or detector file ('all' / 'wbc' / 'smear' = shipped)")
    e.add_argument("--data", help="data set to evaluate on (default: the run's own)")
    e.add_argument("--split", help="split file (default: the run's split.json)")
    e.add_argument("--side", default="test", choices=["train", "val", "test"], help="which side of the split")
    e.add_argument("--all-images", action="store_true", help="evaluate on every image of --data (an external set)")
    e.add_argument("--out", help="output folder for metrics.json and report.html")
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    e.add_argument("--shifts", help="robustness: 'all' or comma-separated shifts (grayscale, stain_reinhard, "
                                    "stain_macenko, hed_S, blur_S, lowres_N, jpeg_Q, scale_F) on the test split")
    e.add_argument("--external", help="robustness: also score a labelled set from other labs (e.g. wbc_external), "
                                      "classes mapped by name; classes the model lacks are left out and said so")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="class, probability and refer flag for an image or a folder")
    pr.add_argument("target", help="image file or folder (searched recursively)")
    pr.add_argument("--model", default="all", help="model file or run folder; 'all' (ALL severity) or 'wbc' (WBC "
                                                   "type) = the shipped models")
    pr.add_argument("--out", help="write results here (.json or .csv); default: print JSON")
    pr.add_argument("--format", choices=["json", "csv"], help="output format (default from --out suffix, else json)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.add_argument("--backend", default="torch", choices=["torch", "onnx"], help="run with PyTorch or ONNX Runtime")
    pr.add_argument("--explain", metavar="DIR", help="also write explanation overlays, raw maps and panels here")
    pr.add_argument("--methods", default="layercam", help="methods for --explain (comma list; see `leukodx explain`)")
    pr.add_argument("--classes", help="only these classes can be the answer (comma list, e.g. a five-part differential: "
                                      "basophil,eosinophil,lymphocyte,monocyte,neutrophil); a cell that looks most like "
                                      "another class is referred as unexpected_class")
    pr.add_argument("--outline", metavar="DIR", help="also write each image's cell mask and the image with the "
                                                     "detected cell outlined (classic pipeline output)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("explain", help="where the model looks: CAM family, IG, SHAP, LIME, attention rollout")
    ex.add_argument("target", help="image file or folder")
    ex.add_argument("--model", default="all", help="model file or run folder; 'all' or 'wbc' = shipped models")
    ex.add_argument("--methods", default="layercam", help="comma list of: gradcam, gradcam++, scorecam, eigencam, "
                                                         "layercam, ig, shap, lime, rollout")
    ex.add_argument("--layer", help="target layer name for CAM methods (default: the output of forward_features; "
                                   "for layercam the stage twice as fine)")
    ex.add_argument("--target-class", type=int, help="class index to explain (default: the predicted class)")
    ex.add_argument("--feature-maps", action="store_true", help="also save each stage's first feature maps "
                                                                 "(DDRNet paper, Figure 7)")
    ex.add_argument("--out", default="explanations", help="output folder (overlay PNGs, raw .npy maps, panels)")
    ex.set_defaults(func=cmd_explain)

    g = sub.add_parser("gan", help="train a DCGAN / WGAN-GP / cGAN on the train side, or judge one")
    g.add_argument("action", choices=["train", "quality"], help="train: fit generator(s); quality: FID-Lite0, KID, "
                                                                "IS, SSIM, precision/recall, memorisation")
    g.add_argument("--data", default="taleqani_all", help="data set (recipe name, folder or CSV)")
    g.add_argument("--kind", default="dcgan", choices=["dcgan", "wgan_gp", "cgan"])
    g.add_argument("--out", required=True, help="GAN run folder")
    g.add_argument("--size", type=int, default=64, help="image side (64 default; 224 as in the thesis)")
    g.add_argument("--epochs", type=int, default=50)
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--width", type=int, default=64, help="channels of the outermost conv layers (64 = usual DCGAN; "
                                                         "32 is 4x cheaper on CPU)")
    g.add_argument("--diffaugment", action="store_true", help="translate + cut out every discriminator input, real and "
                                                              "fake (DiffAugment; helps with a few hundred images)")
    g.add_argument("--max-images-per-class", type=int, default=0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--resume", action="store_true", help="continue from the run's last checkpoints")
    g.add_argument("--n", type=int, default=200, help="quality: generated images per class")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_gan)

    sy = sub.add_parser("synthesize", help="write a class-balanced synthetic set with a manifest marking it synthetic")
    sy.add_argument("gan", help="GAN run folder (or its generator.pt)")
    sy.add_argument("--out", required=True, help="output folder (class folders + manifest.csv)")
    sy.add_argument("--n-per-class", type=int, default=500)
    sy.add_argument("--seed", type=int, default=0)
    sy.set_defaults(func=cmd_synthesize)

    dm = sub.add_parser("demo", help="run the whole path on built-in synthetic data (or --data) in a few minutes")
    dm.add_argument("--data", help="run on this real data set instead (recipe name, folder or CSV)")
    dm.add_argument("--out", default="demo_out", help="output folder")
    dm.add_argument("--epochs", type=int, default=6, help="training epochs")
    dm.set_defaults(func=cmd_demo)

    ex = sub.add_parser("export", help="export a model to ONNX for deployment")
    ex.add_argument("model", help="model file or run folder ('all' / 'wbc' = shipped models)")
    ex.add_argument("--out", default="model.onnx", help="ONNX file to write")
    ex.set_defaults(func=cmd_export)

    ad = sub.add_parser("adapt", help="adapt a model to a new lab with a few labelled cells per class (writes a new file)")
    ad.add_argument("model", help="model file or run folder ('all' / 'wbc' = shipped models); never modified")
    ad.add_argument("data", help="the lab's labelled cells: a folder of class folders, a CSV manifest or a recipe")
    ad.add_argument("--out", required=True, help="new model file to write (.pt); a card .md is written beside it")
    ad.add_argument("--mode", default="head", choices=["head", "bn+head", "head+finetune"],
                    help="head: refit the linear head on frozen features of each cell and its 7 quarter-turn / mirror "
                         "copies (default); bn+head: first re-estimate batch-norm statistics on the lab's images; "
                         "head+finetune: then fine-tune every weight on the cells (minutes on a CPU); "
                         "results/adapt.md compares them")
    ad.add_argument("--add-classes", action="store_true", help="add the folder's classes the model does not know")
    ad.add_argument("--unlabelled", help="a folder of more of the lab's cells without labels: the head is self-trained "
                                         "on those it is sure of and whose look-alikes in the lab agree "
                                         "(results/adapt.md)")
    ad.add_argument("--tap-stage", type=_tap_stage, default="auto",
                    help="EfficientNet models: the new head also sees this block's pooled features (mid-level texture "
                         "and outline); 'auto' (default, as the web app) = 5 where the model has it and is not tapped "
                         "yet; 'none' = the head alone (results/adapt.md)")
    ad.add_argument("--classes", help="the classes this lab's cells can be (comma list, as in predict); those given no "
                                      "cells keep the source model's head, the rest given none are lowered (results/adapt.md)")
    ad.add_argument("--no-cell-probe", action="store_true", help="do not refit the source model's no-white-cell probe "
                                                                   "on the lab's cells (the adapted model then has none)")
    ad.add_argument("--seed", type=int, default=0)
    ad.add_argument("--quiet", action="store_true")
    ad.set_defaults(func=cmd_adapt)

    sv = sub.add_parser("serve", help="web app and REST API for lab staff (upload, review, reports)")
    sv.add_argument("--host", default="127.0.0.1", help="address to bind (beyond localhost needs --token)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--data-dir", help="uploads and database (default ~/.local/share/leukodx)")
    sv.add_argument("--db-url", help="SQLAlchemy database URL (default: SQLite in --data-dir), e.g. postgresql://...")
    sv.add_argument("--token", help="access token required by the API and pages (or LEUKODX_TOKEN)")
    sv.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="offer another model file under NAME (repeatable; e.g. one made by `leukodx adapt`)")
    sv.set_defaults(func=cmd_serve)

    us = sub.add_parser("users", help="web app accounts: add a reviewer or a viewer")
    us.add_argument("action", choices=["add"])
    us.add_argument("name")
    us.add_argument("--role", default="reviewer", choices=["reviewer", "viewer"])
    us.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    us.add_argument("--data-dir", help="the web app's data folder (default ~/.local/share/leukodx)")
    us.add_argument("--db-url", help="SQLAlchemy database URL, as for serve")
    us.set_defaults(func=cmd_users)

    m = sub.add_parser("models", help="list model names")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LeukodxError as e:
        print(f"leukodx: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("leukodx: interrupted; files written so far are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
