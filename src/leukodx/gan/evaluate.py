"""Quality report of a GAN run: per class and overall, real = the run's own train side (what the
GAN saw), held-out = its validation side (for the memorisation check). Writes RUN/quality.json and
RUN/closest_pairs.png (each synthetic image beside its nearest training image). `real_reference`
gives the same measures for real validation images against the train side: the best a GAN could do."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from leukodx.data.recipes import load_dataset
from leukodx.data.splits import Split
from leukodx.data.torch_dataset import ImageDataset
from leukodx.gan.quality import Lite0Features, memorisation, quality
from leukodx.gan.run import generate_images
from leukodx.transforms.preprocess import Preprocess, PreprocessConfig


def real_images(run: Path, side: str, per_class: int | None = None, seed: int = 0) -> tuple[dict, list[str]]:
    cfg = yaml.safe_load((run / "gan.yaml").read_text())
    index = load_dataset(cfg["data"])
    idx = Split.load(run / "split.json").indices(index, side)
    ds = ImageDataset(index.subset(idx), Preprocess(PreprocessConfig(cfg["size"])), progress=False)
    imgs, labels = ds.images.permute(0, 2, 3, 1).numpy(), ds.labels.numpy()
    rng = np.random.default_rng(seed)
    out = {}
    for k, c in enumerate(index.classes):
        a = imgs[labels == k]
        out[c] = a[rng.permutation(len(a))[:per_class]] if per_class else a
    return out, index.classes


def evaluate_gan(gan_dir: str | Path, n_per_class: int = 200) -> dict:
    run, start = Path(gan_dir), time.perf_counter()
    train, classes = real_images(run, "train", n_per_class)
    held, _ = real_images(run, "val", n_per_class)
    fake = generate_images(run, n_per_class)
    feats = Lite0Features()
    res = {"per_class": {}, "kind": yaml.safe_load((run / "gan.yaml").read_text())["kind"]}
    pairs = []
    for c in classes:
        res["per_class"][c] = {**quality(train[c], fake[c], feats),
                               "memorisation": memorisation(train[c], fake[c], held[c], feats)}
        pairs += [(fake[c][i], train[c][j]) for i, j, _ in res["per_class"][c]["memorisation"]["closest_pairs"][:2]]
    def every(d):
        return np.concatenate([d[c] for c in classes])

    res["overall"] = quality(every(train), every(fake), feats)
    res["real_reference"] = quality(every(train), every(held), feats)  # the floor: real val vs real train
    res["seconds"] = round(time.perf_counter() - start, 1)
    (run / "quality.json").write_text(json.dumps(res, indent=1))
    if pairs:
        h, w = pairs[0][0].shape[:2]
        sheet = Image.new("RGB", (2 * w, h * len(pairs)), "white")
        for i, (f, t) in enumerate(pairs):
            sheet.paste(Image.fromarray(f), (0, i * h))
            sheet.paste(Image.fromarray(t), (w, i * h))
        sheet.save(run / "closest_pairs.png")
    return res
