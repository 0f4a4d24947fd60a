"""A weight soup (Wortsman et al. 2022): one model whose weights are the uniform average of model files
fine-tuned from the same pretrained network on the same split, optionally with its batch-norm statistics
re-estimated on the training side (training augmentation on; the averaged running statistics do not belong
to the averaged weights). Writes a run folder that benchmarks/val_shifts.py and `leukodx evaluate` read:
OUT/model.pt (the first file's temperature, thresholds and reference features: refit them with
`benchmarks/refit_referral.py OUT --views 1` before using its calibration or its referral), OUT/config.yaml,
OUT/split.json and OUT/train_summary.json (the model card's colour baseline and training time) from --run;
OUT/soup.json names the ingredients (the model card says so). Candidates and their rules:
configs/soups/*.md. `--towards-pretrained A` instead moves one model's backbone a share A of the way back to the
pretrained weights it was fine-tuned from (WiSE-FT, Wortsman et al. 2022; its head is kept).
  python benchmarks/weight_soup.py runs/all_soup2 src/leukodx/shipped/all_severity.pt runs/all_severity_tone/model.pt \
      --run runs/all_severity_tone --config configs/all_severity.yaml [--bn-refit]
  python benchmarks/weight_soup.py runs/wbc_wise_0.2 src/leukodx/shipped/wbc_type.pt --towards-pretrained 0.2 \
      --run runs/wbc_type_v7 --bn-refit
"""
import argparse
import json
import shutil
from pathlib import Path

import torch

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.errors import LeukodxError
from leukodx.models.artifact import ModelBundle
from leukodx.models.registry import create_model
from leukodx.train.data import CellDataModule
from leukodx.train.module import ClassifierModule
from leukodx.train.run import preprocess_for


def average(bundles: list[ModelBundle]) -> dict:
    """The uniform average of the networks' floating-point weights and buffers (counters from the first)."""
    states = [b.model.state_dict() for b in bundles]
    if any(s.keys() != states[0].keys() for s in states):
        raise LeukodxError("the model files are not the same architecture")
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}


def towards_pretrained(bundle: ModelBundle, alpha: float) -> dict:
    """(1 - alpha) x the network's weights + alpha x the pretrained weights of its architecture, for every
    floating-point tensor but the classifier's (the pretrained network has no head for these classes)."""
    if not 0 <= alpha <= 1:
        raise LeukodxError(f"--towards-pretrained must be in [0, 1], got {alpha}")
    head = {id(p) for p in bundle.model.get_classifier().parameters()}
    skip = {k for k, p in bundle.model.named_parameters() if id(p) in head}
    pre = create_model(bundle.arch, len(bundle.classes), pretrained=True, **bundle.model_kwargs).state_dict()
    out = {}
    for k, v in bundle.model.state_dict().items():
        mix = v.is_floating_point() and k not in skip and k in pre and pre[k].shape == v.shape
        out[k] = ((1 - alpha) * v.float() + alpha * pre[k].float()).to(v.dtype) if mix else v
    return out


def refit_batch_norm(bundle: ModelBundle, cfg: TrainConfig, split: Split) -> int:
    """Running statistics of every batch-norm layer recomputed over one pass of the training loader
    (cumulative average, weights untouched). Returns the number of batches."""
    index = load_dataset(cfg.data)
    data = CellDataModule(cfg, index, split, preprocess_for(cfg, bundle.model), False)
    data.setup()
    module = ClassifierModule(bundle.model, len(index.classes), data.pre.cfg.mean, data.pre.cfg.std)
    for m in bundle.model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    torch.manual_seed(cfg.seed)
    n = 0
    with torch.no_grad():
        for x, _ in data.train_dataloader():
            module(x.flatten(0, 1) if x.ndim == 5 else x)  # a `consistency` run's loader gives pairs of views
            n += 1
    bundle.model.eval()
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="run folder to write")
    ap.add_argument("models", nargs="+", help="model files (the first gives thresholds and metadata)")
    ap.add_argument("--run", required=True, help="a run folder of one ingredient: its split.json and config.yaml")
    ap.add_argument("--config", help="config for --bn-refit's training loader (default: the run's)")
    ap.add_argument("--bn-refit", action="store_true", help="re-estimate batch-norm statistics on the training side")
    ap.add_argument("--towards-pretrained", type=float, metavar="A",
                    help="one model: move its backbone a share A towards its pretrained weights (WiSE-FT)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    wise = a.towards_pretrained is not None
    if len(a.models) < 2 and not wise or len(a.models) > 1 and wise:
        ap.error("give at least two model files, or one with --towards-pretrained")
    bundles = [ModelBundle.load(p) for p in a.models]
    soup = bundles[0]
    soup.model.load_state_dict(towards_pretrained(soup, a.towards_pretrained) if wise else average(bundles))
    run, out = Path(a.run), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in ("split.json", "config.yaml", "train_summary.json"):  # the summary: the split's colour baseline for the card
        if (run / f).is_file():
            shutil.copy(run / f, out / f)
    soup.info = dict(soup.info, soup={"models": a.models, "bn_refit": a.bn_refit,
                                      **({"towards_pretrained": a.towards_pretrained} if wise else {})})
    if a.bn_refit:
        n = refit_batch_norm(soup, TrainConfig.load(a.config or run / "config.yaml"), Split.load(run / "split.json"))
        soup.info["soup"]["bn_refit_batches"] = n
    soup.save(out / "model.pt")
    (out / "soup.json").write_text(json.dumps(soup.info["soup"], indent=1))  # the model card names the ingredients
    print("wrote", out / "model.pt")


if __name__ == "__main__":
    main()
