"""`leukodx train-detector`: smear fields -> grouped split by field -> Lightning fit -> detector file.

A run folder holds: config.yaml, environment.json, split.json, checkpoints/, logs/metrics.csv, detector.pt,
test/metrics.json (leukodx.evaluate.detection) and model_card.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from leukodx.config import DetectorConfig
from leukodx.data.images import load_image
from leukodx.data.smears import KINDS, SmearField, load_smear_fields, smear_root, split_fields
from leukodx.errors import LeukodxError
from leukodx.train.environment import save_environment
from leukodx.train.schedule import warmup_cosine


class LowResolution:
    """A field shrunk by a random factor (1.5-4x) and enlarged back: a lower-resolution camera, or a
    field at lower magnification after the smear pipeline brought it to training scale."""

    def __init__(self, p: float, factors=(1.5, 4.0)):
        self.p, self.factors = p, factors

    def __call__(self, img):
        import torch.nn.functional as F

        if self.p <= 0 or torch.rand(()) >= self.p:
            return img
        k = float(torch.empty(()).uniform_(*self.factors))
        h, w = img.shape[-2:]
        small = F.interpolate(img[None].float(), size=(max(8, round(h / k)), max(8, round(w / k))), mode="bilinear",
                              antialias=True)
        return F.interpolate(small, size=(h, w), mode="bilinear")[0].round().clamp(0, 255).to(img.dtype)


def field_transform(scale_jitter: float, colour_jitter: bool, size: tuple[int, int], low_resolution: float = 0.0):
    """Train-side augmentation of a field and its boxes (torchvision v2 moves boxes with the pixels)."""
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    steps = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if low_resolution > 0:
        steps.append(v2.Lambda(lambda im: tv_tensors.wrap(LowResolution(low_resolution)(im), like=im), tv_tensors.Image))
    if scale_jitter > 0:
        steps.append(v2.ScaleJitter(size, (1 - scale_jitter, 1 + scale_jitter), antialias=True))  # size = (W, H)
    if colour_jitter:
        steps += [v2.RandomApply([v2.ColorJitter(0.25, 0.25, 0.3, 0.05)], p=0.8), v2.RandomGrayscale(0.1)]
    return v2.Compose(steps + [v2.SanitizeBoundingBoxes(min_size=4)])


class FieldDataset(Dataset):
    """(float image (3, H, W) in [0, 1], target {boxes, labels}) per field; labels 1.. = KINDS."""

    def __init__(self, fields: list[SmearField], transform=None):
        self.fields, self.transform = fields, transform

    def __len__(self) -> int:
        return len(self.fields)

    def __getitem__(self, i):
        from torchvision import tv_tensors

        f = self.fields[i]
        img = torch.from_numpy(np.asarray(load_image(f.path), np.uint8).copy()).permute(2, 0, 1)
        h, w = img.shape[1:]
        target = {"boxes": tv_tensors.BoundingBoxes(torch.from_numpy(f.boxes).clamp(min=0), format="XYXY",
                                                    canvas_size=(h, w)),
                  "labels": torch.tensor([KINDS.index(k) + 1 for k in f.kinds], dtype=torch.int64)}
        if self.transform is not None:
            img, target = self.transform(tv_tensors.Image(img), target)
        return img.as_subclass(torch.Tensor).float().div(255), {k: v.as_subclass(torch.Tensor) for k, v in target.items()}


def _collate(batch):
    return tuple(zip(*batch))


def _module(model, cfg: DetectorConfig):
    import lightning.pytorch as pl
    from torchmetrics.detection import MeanAveragePrecision

    class DetectorModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model
            self.map = MeanAveragePrecision(iou_type="bbox", class_metrics=True)

        def training_step(self, batch, _):
            images, targets = batch
            losses = self.model(list(images), list(targets))
            loss = sum(losses.values())
            self.log("train_loss", loss, prog_bar=True, batch_size=len(images))
            return loss

        def validation_step(self, batch, _):
            images, targets = batch
            self.map.update(self.model(list(images)), list(targets))

        def on_validation_epoch_end(self):
            res = self.map.compute()
            self.log("val_map50", res["map_50"], prog_bar=True)
            self.log("val_map", res["map"])
            self.map.reset()

        def configure_optimizers(self):
            params = [p for p in self.model.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
            sched = warmup_cosine(opt, cfg.warmup_steps, cfg.max_steps)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return DetectorModule()


def train_detector(cfg: DetectorConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Fit, choose the score threshold on the val fields, evaluate on the test fields; returns test metrics."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

    from leukodx.detect.detector import Detector, create_detector
    from leukodx.evaluate.detection import choose_thresholds, evaluate_detector
    from leukodx.train.history import csv_logger

    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise LeukodxError(f"{run_dir} exists and is not empty; pick a new folder or pass --resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.save(run_dir / "config.yaml")
    pl.seed_everything(cfg.seed, workers=True)
    torch.set_num_threads(cfg.threads)
    save_environment(run_dir)
    root = smear_root(cfg.data)
    fields = load_smear_fields(root)
    sides, protocol = split_fields(fields, root, cfg.seed, cfg.val_frac, cfg.test_frac)
    names = {s: [Path(fields[i].path).name for i in idx] for s, idx in sides.items()}
    (run_dir / "split.json").write_text(json.dumps({"protocol": protocol, "sides": names}, indent=1))
    train_f, val_f, test_f = ([fields[i] for i in sides[s]] for s in ("train", "val", "test"))

    size = train_f[0].size  # (width, height) of the training fields
    tf = field_transform(cfg.scale_jitter, cfg.colour_jitter, size, cfg.low_resolution)
    g = torch.Generator().manual_seed(cfg.seed)
    train_dl = DataLoader(FieldDataset(train_f, tf), cfg.batch_size, shuffle=True, drop_last=True,
                          collate_fn=_collate, generator=g)
    val_dl = DataLoader(FieldDataset(val_f), 4, collate_fn=_collate)
    module = _module(create_detector(pretrained=cfg.pretrained), cfg)
    ckpt = ModelCheckpoint(run_dir / "checkpoints", "best", monitor="val_map50", mode="max")
    last = ModelCheckpoint(run_dir / "checkpoints", "last", save_top_k=1, enable_version_counter=False)
    gpu = torch.cuda.is_available()
    precision = cfg.precision if cfg.precision != "auto" else ("16-mixed" if gpu else "32")
    trainer = pl.Trainer(max_steps=cfg.max_steps, accelerator=cfg.accelerator, devices=1, precision=precision,
                         callbacks=[ckpt, last] + ([TQDMProgressBar(refresh_rate=5)] if progress else []),
                         logger=csv_logger(run_dir, resume), enable_progress_bar=progress,
                         enable_model_summary=False, log_every_n_steps=5, num_sanity_val_steps=0)
    t0 = time.perf_counter()
    trainer.fit(module, train_dl, val_dl, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt") if resume else None)
    if trainer.interrupted:
        raise LeukodxError(f"training interrupted; checkpoints kept. Resume with: leukodx train-detector --resume {run_dir}")
    train_s = time.perf_counter() - t0
    best = ckpt.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    det = Detector(module.model.cpu().eval())
    det.rbc_diameter = float(np.median([max(b[2] - b[0], b[3] - b[1]) for f in train_f
                                        for b, k in zip(f.boxes, f.kinds) if k == "rbc"]))
    det.tile = size
    det.score_thresholds = choose_thresholds(det, val_f)
    det.info = {"data": str(root.name), "split": protocol, "fields": {s: len(v) for s, v in sides.items()},
                "config": cfg.to_dict(), "train_seconds": round(train_s, 1),
                "backbone": "EfficientNet-Lite0, offline ImageNet weights" if cfg.pretrained else "EfficientNet-Lite0, from scratch"}
    det.save(run_dir / "detector.pt")
    metrics = evaluate_detector(det, test_f)
    metrics["protocol"] = {"split": protocol, "test_fields": len(test_f)}
    (run_dir / "test").mkdir(exist_ok=True)
    (run_dir / "test" / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics

