"""Torch dataset over a DatasetIndex: images decoded and preprocessed once, kept in memory as uint8."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import Dataset

from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.data.images import load_image
from leukodx.errors import BadImageError


def read_record(rec: ImageRecord):
    img = load_image(rec.path)
    return img.crop(rec.box) if rec.box is not None else img


class ImageDataset(Dataset):
    """Yields (uint8 image tensor after augmentation, label). Unreadable files are dropped and
    listed in `.bad` so a run can report them instead of dying."""

    def __init__(self, index: DatasetIndex, preprocess, augment=None, threads: int = 2, progress: bool = False):
        self.index, self.preprocess, self.augment = index, preprocess, augment
        self.bad: list[str] = []

        def work(rec):
            try:
                return preprocess(read_record(rec))
            except BadImageError as e:
                return str(e)

        with ThreadPoolExecutor(max(1, threads)) as pool:
            it = pool.map(work, index.records)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, total=len(index.records), desc=f"loading {index.name}", unit="img", leave=False)
            results = list(it)
        keep = [i for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
        self.bad = [r for r in results if isinstance(r, str)]
        self.images = torch.stack([results[i] for i in keep]) if keep else torch.empty(0, 3, 1, 1, dtype=torch.uint8)
        self.labels = torch.tensor([index.records[i].label for i in keep], dtype=torch.long)
        self.records = [index.records[i] for i in keep]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i]
        if self.augment is not None:
            x = self.augment(x)
        return x, self.labels[i]
