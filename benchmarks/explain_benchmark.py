"""Explanation benchmark for the shipped models (issue 6): seconds per image per method, deletion /
insertion AUC, the model-randomisation sanity check, and the shortcut audit (attribution on the
cell vs background vs the bottom-right scale-bar corner). Images come from each model's own grouped
test split (seed 0, as in configs/NAME.yaml). Writes results/explain_NAME.{json,md}.
Run on an otherwise idle machine: the timings are wall-clock on 2 CPU cores. `--audit-only` redoes
the shortcut audit alone (Grad-CAM, no timings) and keeps the committed method table; `--audit-ig`
adds the same audit with integrated gradients, pixel-level, free of Grad-CAM's feature-map grid;
`--audit-layercam LAYER` adds it with LayerCAM at a finer layer (e.g. blocks.4, Lite0's 10 x 10 map at
160 px), with that map's deletion / insertion AUC on the first 24 images. The model cards show the audit
of the app's explanation (LayerCAM at its default layer) where measured, then Grad-CAM's; `--cards`
rewrites that section from the committed results file alone.
  python benchmarks/explain_benchmark.py all_severity [wbc_type] [--audit-only | --audit-ig | --audit-layercam LAYER | --cards]
"""
import json
import sys
import time

import common
import numpy as np
import torch

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import make_split
from leukodx.evaluate.model_card import add_audit
from leukodx.explain import Explainer
from leukodx.explain.audit import attribution_shares, summarise
from leukodx.explain.faithfulness import deletion_insertion, randomised_copy, rank_similarity
from leukodx.explain.targets import finer_stage
from leukodx.models.artifact import ModelBundle
from leukodx.predict.shipped import shipped_model

FAST = ("gradcam", "gradcam++", "eigencam", "layercam")
SLOW = ("ig", "shap", "lime")  # Score-CAM: one forward pass per channel (1280 for Lite0), too slow on CPU
N_FAST, N_SLOW, N_AUDIT = 24, 4, 200


def test_images(name: str, per_class: int, seed: int = 1) -> list:
    cfg = TrainConfig.load(common.ROOT / "configs" / f"{name}.yaml")
    index = load_dataset(cfg.data)
    split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes)
    te = split.indices(index, "test")
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(index.classes)):
        idx = [i for i in te if index.records[i].label == c]
        out += [index.records[i] for i in rng.choice(idx, min(per_class, len(idx)), replace=False)]
    return [out[i] for i in rng.permutation(len(out))]  # classes mixed, so the first images cover all


def shipped_bundle(name: str) -> ModelBundle:
    return ModelBundle.load(shipped_model({"all_severity": "all", "wbc_type": "wbc"}[name]))


def cam_grid(model: torch.nn.Module, layer: str | None, x: torch.Tensor) -> int:
    """Side of the feature map a CAM method reads: the named layer's, else forward_features'."""
    seen = []
    target = model.get_submodule(layer) if layer else None
    hook = target.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1])) if target else None
    with torch.no_grad():
        out = model.forward_features(x)
    if hook:
        hook.remove()
    return seen[0] if seen else out.shape[-1]


def main(name: str, audit_only: bool = False, audit_method: str = "gradcam", layer: str | None = None) -> None:
    torch.set_num_threads(2)
    bundle = shipped_bundle(name)
    ex = Explainer(bundle, layer=layer)  # `layer` only with --audit-layercam, which runs that method alone
    key = audit_method if layer is None else f"{audit_method}@{layer}"
    faithful = {"deletion_auc": [], "insertion_auc": []}
    k = len(bundle.classes)
    recs = test_images(name, max(1, N_AUDIT // k))
    per_method = {m: {"seconds": [], "deletion_auc": [], "insertion_auc": [], "sanity_rank_corr": []}
                  for m in FAST + SLOW}
    rand = Explainer(ModelBundle(randomised_copy(bundle.model, 0.25), bundle.arch, bundle.classes, bundle.preprocess))
    audit_rows = []
    for i, r in enumerate(recs):
        methods = (audit_method,) if audit_only else FAST + SLOW if i < N_SLOW else FAST if i < N_FAST else ("gradcam",)
        es = ex.explain(r.path, methods)
        u8, x = ex.prepare(r.path)  # colour: the audit finds the stained cells by their colour
        for e in es:
            if not audit_only and (i < N_FAST or e.method in SLOW):
                pm = per_method[e.method]
                pm["seconds"].append(e.seconds)
                xe = ex.input_of(e)  # the input explained (gray copy?)
                di = deletion_insertion(bundle.probabilities, xe, e.map, e.target)
                pm["deletion_auc"].append(di["deletion_auc"])
                pm["insertion_auc"].append(di["insertion_auc"])
                if e.method not in ("shap", "lime"):  # randomised re-runs of the cheap methods only
                    pm["sanity_rank_corr"].append(rank_similarity(e.map, rand.map(e.method, xe, e.target, e.image)))
            if e.method == audit_method:
                grid = cam_grid(bundle.model, layer, x) if audit_method != "ig" else None  # IG is pixel-level
                if audit_only and layer and i < N_FAST:
                    xe = ex.input_of(e)
                    di = deletion_insertion(bundle.probabilities, xe, e.map, e.target)
                    faithful["deletion_auc"].append(di["deletion_auc"])
                    faithful["insertion_auc"].append(di["insertion_auc"])
                audit_rows.append({"label": bundle.classes[r.label], "predicted": e.label,
                                   **attribution_shares(u8, e.map, grid)})
    audit = summarise(audit_rows)
    out = common.ROOT / "results" / f"explain_{name}"
    if audit_only:
        res = json.loads(out.with_suffix(".json").read_text())
        if res["weights_sha256"] != bundle.weights_sha256():
            raise SystemExit(f"{out}.json was made by other weights: run without --audit-only")
        res[f"audit_{key}"] = audit
        if layer:
            res[f"audit_{key}"]["faithfulness"] = {"n_images": len(faithful["deletion_auc"]),
                                                   **{k: round(float(np.mean(v)), 4) for k, v in faithful.items()}}
    else:
        table = {m: {"n_images": len(v["seconds"]),
                     **{k2: round(float(np.mean(v[k2])), 4) if v[k2] else None for k2 in v}}
                 for m, v in per_method.items()}
        res = {"model": name, "weights_sha256": bundle.weights_sha256(), "hardware": "2 CPU cores, no GPU",
               "samples": {"shap": 200, "lime": 200, "ig_steps": 32, "superpixels": 40}, "methods": table,
               "audit_gradcam": audit,
               "protocol": "images from the model's grouped test split (seed 0); deletion/insertion: 20 steps, pixels "
                           "replaced by / revealed on a blurred copy; sanity: Spearman rank correlation of the map "
                           "before and after re-drawing the top 25% of parameter tensors (lower = more sensitive to "
                           "weights)"}
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(render(name, res))
    write_cards(name, res, bundle)
    print(out.with_suffix(".md").read_text())


def write_cards(name: str, res: dict, bundle: ModelBundle) -> None:
    """The model cards' audit section: the app's explanation (LayerCAM at its default layer) first where
    it was audited, then Grad-CAM."""
    layer = finer_stage(bundle.model, bundle.preprocess["image_size"])
    audits, about = {}, ""
    if (key := "audit_layercam" + (f"@{layer}" if layer else "")) in res:
        audits["LayerCAM"] = res[key]
        about = f": {'at ' + layer + ', ' if layer else ''}the explanation the app shows"
    audits["Grad-CAM"] = res["audit_gradcam"]
    for card in (common.ROOT / "results" / f"{name}_model_card.md", common.ROOT / "src" / "leukodx" / "shipped" / f"{name}.md"):
        if card.is_file():
            add_audit(card, audits, f"results/explain_{name}.json", about)


def cards_only(name: str) -> None:
    """--cards: rewrite the model cards' audit section from the committed results file, nothing re-run."""
    bundle = shipped_bundle(name)
    res = json.loads((common.ROOT / "results" / f"explain_{name}.json").read_text())
    if res["weights_sha256"] != bundle.weights_sha256():
        raise SystemExit(f"results/explain_{name}.json was made by other weights: run the benchmark")
    write_cards(name, res, bundle)


def render(name: str, res: dict) -> str:
    md = [f"# Explanations of the shipped {name} model", "", f"- {res['protocol']}",
          "- SHAP = KernelSHAP and LIME (ridge surrogate) over 40 SLIC superpixels, 200 samples each; IG 32 steps.", "",
          ("| method | images | s / image | deletion AUC (lower better) | insertion AUC (higher better) | "
          "sanity rank corr |"), "|---|---|---|---|---|---|"]
    for m, v in res["methods"].items():
        md.append(f"| {m} | {v['n_images']} | {v['seconds']} | {v['deletion_auc']} | {v['insertion_auc']} | "
                  f"{v['sanity_rank_corr']} |")
    titles = {"gradcam": "Grad-CAM", "ig": "integrated gradients, pixel-level"}
    for k in [k for k in res if k.startswith("audit_")]:
        method = k.removeprefix("audit_")
        md += audit_table(res[k], titles.get(method, method.replace("@", " at layer ")))
    return "\n".join(md) + "\n"


def audit_table(audit: dict, title: str) -> list[str]:
    md = ["", f"## Shortcut audit ({title}, {audit['all']['n']} test images)", "",
          ("- cell = the largest dark blob (one nucleus); stained cells = every purple-stained object (white cells, "
           "blasts; red cells left out; `leukodx.transforms.cell_finder.stained_cells`); background = outside both. "
           "Ratio = share / area (1 = no preference). Ceiling: the stained share of a map that is the stained-cell "
           "mask seen at the CAM's feature-map resolution, the most such a map can give them."), "",
          ("| class | n | cell share (area) | stained cells share (area) | stained ceiling | background share (area) | "
           "corner share (area) |"), "|---|---|---|---|---|---|---|"]
    for c, v in audit.items():
        if c == "faithfulness":
            continue
        md.append(f"| {c} | {v['n']} | {v['cell_share']} ({v['cell_area']}) | {v['stained_share']} "
                  f"({v['stained_area']}) | {v.get('ceiling_share', '-')} | {v['background_share']} "
                  f"({v['background_area']}) | {v['corner_share']} ({v['corner_area']}) |")
    if "faithfulness" in audit:
        f = audit["faithfulness"]
        md += ["", (f"- This map's deletion AUC {f['deletion_auc']} (lower better), insertion AUC {f['insertion_auc']} "
                    f"(higher better), on the first {f['n_images']} of these images (the method table's protocol).")]
    return md


if __name__ == "__main__":
    t = time.perf_counter()
    names = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and sys.argv[i - 1] != "--audit-layercam"]
    for n in names or ["all_severity"]:
        if "--cards" in sys.argv:
            cards_only(n)
            continue
        ig = "--audit-ig" in sys.argv
        lc = sys.argv[sys.argv.index("--audit-layercam") + 1] if "--audit-layercam" in sys.argv else None
        main(n, audit_only="--audit-only" in sys.argv or ig or bool(lc),
             audit_method="ig" if ig else "layercam" if lc else "gradcam", layer=lc)
    print(f"{time.perf_counter() - t:.0f} s")
