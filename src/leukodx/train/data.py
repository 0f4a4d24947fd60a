"""One training run's images: dataset -> grouped split -> train / val / test sets and their loaders
(a Lightning DataModule). Augmentation is given to the train set only."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from leukodx.config import TrainConfig
from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split, make_split
from leukodx.data.torch_dataset import ImageDataset
from leukodx.errors import LeukodxError
from leukodx.transforms.augment import TwoViews
from leukodx.transforms.cell_paint import paint_out_cells, recentred
from leukodx.transforms.preprocess import Preprocess


def run_split(cfg: TrainConfig, index, run_dir: Path, progress: bool = True) -> Split:
    """cfg.split_file, else the run's own split.json (a resumed run keeps its split), else a new
    grouped split. Saved to RUN/split.json."""
    path = run_dir / "split.json"
    if cfg.split_file:
        split = Split.load(cfg.split_file)
    elif path.exists():
        split = Split.load(path)
    else:
        split = make_split(index, cfg.val_frac, cfg.test_frac, cfg.seed, cfg.use_hashes, progress=progress)
    split.save(path)
    return split


def limit_per_class(index, idx: list[int], n: int, seed: int) -> list[int]:
    """At most n indices per class (n <= 0: all), drawn with `seed`."""
    if n <= 0:
        return idx
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(index.classes)):
        members = [i for i in idx if index.records[i].label == c]
        out += sorted(rng.permutation(members)[:n].tolist())
    return sorted(out)


def with_synthetic(index, tr_idx: list[int], cfg: TrainConfig):
    """The training side, plus (or, for train-on-synthetic, replaced by) generated images from the
    `synthetic` manifest: `synthetic_ratio` generated images per real training image, classes balanced."""
    real = index.subset(tr_idx)
    if not cfg.synthetic:
        return real
    syn = load_dataset(cfg.synthetic)
    extra = [c for c in syn.classes if c not in index.classes]
    if extra:
        raise LeukodxError(f"synthetic set has classes the data lacks: {', '.join(extra)}")
    n = len(tr_idx) if cfg.synthetic_mode == "only" else round(cfg.synthetic_ratio * len(tr_idx))
    rng = np.random.default_rng(cfg.seed)
    by_class = {c: [r for r in syn.records if syn.classes[r.label] == c] for c in syn.classes}
    picked = []
    for c, recs in by_class.items():
        take = min(len(recs), n // max(1, len(by_class)))
        picked += [replace(recs[i], label=index.classes.index(c), synthetic=True)
                   for i in rng.permutation(len(recs))[:take]]
    base = [] if cfg.synthetic_mode == "only" else list(real.records)
    return replace(real, records=base + picked)


NO_CLASS = -1  # the label of a training image with its cells painted out: the loss asks for a uniform answer


class CellsPaintedOut(Dataset):
    """The training set where, with probability p each, an image comes with its stained cells painted
    out (label NO_CLASS) or with the same paint beside the cells (its own label), before augmentation:
    the model learns to answer only from the cells (cfg.paint_out_cells; leukodx.transforms.cell_paint).
    With cell-centred input (`recentre`: its nucleus diameters) every other painted-out copy is centred
    again, on what is left, as prediction would centre a field with no white cell in it."""

    def __init__(self, ds: ImageDataset, p: float, seed: int, recentre: float = 0.0, darkness: str = "green"):
        self.ds, self.p, self.rng = ds, p, np.random.default_rng(seed)
        pairs = [paint_out_cells(x.permute(1, 2, 0).numpy(), seed=i) for i, x in enumerate(ds.images)]
        if recentre:
            pairs = [(recentred(a, recentre, darkness) if i % 2 else a, b) for i, (a, b) in enumerate(pairs)]
        self.out = torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a, _ in pairs])
        self.control = torch.stack([torch.from_numpy(b).permute(2, 0, 1) for _, b in pairs])

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        u, y = self.rng.random(), self.ds.labels[i]
        x = self.out[i] if u < self.p else self.control[i] if u < 2 * self.p else self.ds.images[i]
        y = torch.tensor(NO_CLASS) if u < self.p else y
        return (self.ds.augment(x) if self.ds.augment is not None else x), y


class CellDataModule(pl.LightningDataModule):
    def __init__(self, cfg: TrainConfig, index, split: Split, pre: Preprocess, progress: bool = True):
        super().__init__()
        self.cfg, self.index, self.split, self.pre, self.progress = cfg, index, split, pre, progress
        self.train_idx = limit_per_class(index, split.indices(index, "train"), cfg.max_images_per_class, cfg.seed)
        self.val_idx, self.test_idx = split.indices(index, "val"), split.indices(index, "test")
        self.train_ds = self.val_ds = self._test_ds = self._painted = self._domain = None
        self.load_seconds = 0.0

    def setup(self, stage: str | None = None) -> None:
        if self.train_ds is not None:
            return
        cfg, t = self.cfg, time.perf_counter()
        augment = TwoViews(cfg.train_augment()) if cfg.consistency > 0 else cfg.train_augment()
        self.train_ds = ImageDataset(with_synthetic(self.index, self.train_idx, cfg), self.pre,
                                     augment, cfg.threads, self.progress)
        self.val_ds = ImageDataset(self.index.subset(self.val_idx), self.pre, None, cfg.threads, self.progress)
        self.load_seconds = time.perf_counter() - t
        if len(self.train_ds) == 0 or len(self.val_ds) == 0:
            raise LeukodxError("no readable images on the train or val side")

    @property
    def unreadable(self) -> list:
        return self.train_ds.bad + self.val_ds.bad

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.train_ds.labels, minlength=len(self.index.classes)).float()

    def loss_weights(self) -> torch.Tensor | None:
        """Inverse-frequency class weights (cfg.class_weights), else None."""
        counts = self.class_counts()
        return counts.sum() / (len(counts) * counts.clamp(min=1)) if self.cfg.class_weights else None

    def train_dataloader(self) -> DataLoader:
        cfg, ds = self.cfg, self.train_ds
        sampler = None
        if cfg.balanced_sampling:
            w = (1.0 / self.class_counts().clamp(min=1))[ds.labels]
            sampler = WeightedRandomSampler(w.double(), len(w), generator=torch.Generator().manual_seed(cfg.seed))
        if cfg.paint_out_cells > 0:
            if self._painted is None:
                self._painted = CellsPaintedOut(ds, cfg.paint_out_cells, cfg.seed, cfg.cell_centre,
                                                cfg.cell_darkness)
            ds = self._painted
        if cfg.domain_cells:
            if self._domain is None:
                from leukodx.train.domain import WithDomainCells, domain_cell_images
                self._domain = domain_cell_images(cfg.domain_cells, self.pre, cfg.seed)
            ds = WithDomainCells(ds, self._domain, self.train_ds.augment, cfg.seed)
        return DataLoader(ds, cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                          drop_last=len(ds) > cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed),
                          num_workers=cfg.workers, persistent_workers=cfg.workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_ds, 64)

    def test_set(self) -> ImageDataset:
        """The test side, decoded once, without augmentation."""
        if self._test_ds is None:
            self._test_ds = ImageDataset(self.index.subset(self.test_idx), self.pre, None, self.cfg.threads, False)
        return self._test_ds

    def train_groups(self) -> list[str]:
        """The split group of each loaded training image (generated images form one group)."""
        return ["synthetic" if getattr(r, "synthetic", False) else self.split.groups[self.index.key(r)]
                for r in self.train_ds.records]

    def test_groups(self) -> list[str]:
        return self.split.groups_of(self.index, self.test_idx)
