"""`leukodx gan train` and `leukodx synthesize`.

Training uses only the train side of the same grouped split the classifiers use (seed 0), so no
test image ever shapes a generator. Unconditional GANs (DCGAN, WGAN-GP) train one generator per
class, the cGAN one for all classes. A run folder holds gan.yaml, split.json, per-model
checkpoints/ (resumable), samples/epoch_NNN.png grids and generator.pt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from leukodx.data.dataset import DatasetIndex, ImageRecord, write_manifest
from leukodx.errors import LeukodxError
from leukodx.gan.models import KINDS, Generator


def _grid(images: torch.Tensor, cols: int) -> Image.Image:
    from torchvision.utils import make_grid

    g = make_grid((images.clamp(-1, 1) + 1) / 2, nrow=cols, padding=1)
    return Image.fromarray((g.permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def _sample_grid_callback():
    from lightning.pytorch.callbacks import Callback

    class SampleGrids(Callback):
        """After each epoch: a grid from fixed latents (4 per class) -> FOLDER/samples/epoch_NNN.png."""

        def __init__(self, folder: Path):
            self.folder = folder

        def on_train_epoch_end(self, trainer, m):
            (self.folder / "samples").mkdir(parents=True, exist_ok=True)
            m.G.eval()
            with torch.no_grad():
                z, y = m.fixed_z.to(m.device), m.fixed_y.to(m.device)
                imgs = m.G(z, y if m.cond else None).cpu()
            m.G.train()
            _grid(imgs, 4).save(self.folder / "samples" / f"epoch_{trainer.current_epoch:03d}.png")

    return SampleGrids


def train_gan(data: str, kind: str, out: str | Path, size: int = 64, epochs: int = 50, batch_size: int = 64,
              seed: int = 0, resume: bool = False, progress: bool = True, max_images_per_class: int = 0,
              index: DatasetIndex | None = None, width: int = 64, diffaugment: bool = False) -> Path:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader
    from torchvision.transforms import v2

    from leukodx.data.recipes import load_dataset
    from leukodx.data.splits import Split, make_split
    from leukodx.data.torch_dataset import ImageDataset
    from leukodx.gan.models import base_side
    from leukodx.gan.module import GANModule
    from leukodx.train.environment import save_environment
    from leukodx.train.history import csv_logger
    from leukodx.transforms.preprocess import Preprocess, PreprocessConfig

    if kind not in KINDS:
        raise LeukodxError(f"unknown GAN kind '{kind}'; choose one of {', '.join(KINDS)}")
    base_side(size)
    out = Path(out)
    if (out / "generator.pt").exists() and not resume:
        raise LeukodxError(f"{out}: a finished GAN run is already there; pick a new --out")
    out.mkdir(parents=True, exist_ok=True)
    save_environment(out)
    index = index if index is not None else load_dataset(data)
    split_path = out / "split.json"
    split = Split.load(split_path) if split_path.exists() else make_split(index, 0.15, 0.2, seed)
    split.save(split_path)
    (out / "gan.yaml").write_text(yaml.safe_dump({"data": data, "kind": kind, "size": size, "epochs": epochs,
                                                  "batch_size": batch_size, "seed": seed, "classes": index.classes,
                                                  "max_images_per_class": max_images_per_class, "width": width,
                                                  "diffaugment": diffaugment}))
    train_idx = split.indices(index, "train")
    pre = Preprocess(PreprocessConfig(size))
    cond = KINDS[kind].conditional
    SampleGrids = _sample_grid_callback()
    groups = [("all", train_idx)] if cond else [(c, [i for i in train_idx if index.records[i].label == k])
                                                 for k, c in enumerate(index.classes)]
    state = {}
    for name, idx in groups:
        if max_images_per_class:
            rng = np.random.default_rng(seed)
            idx = [i for k in range(len(index.classes)) for i in
                   list(rng.permutation([j for j in idx if index.records[j].label == k]))[:max_images_per_class]]
        pl.seed_everything(seed, verbose=False)
        ds = ImageDataset(index.subset(idx), pre, v2.RandomHorizontalFlip(), progress=progress)
        module = GANModule(kind, size, len(index.classes), width=width, diffaugment=diffaugment)
        sub = out / name

        ckpt = ModelCheckpoint(sub / "checkpoints", save_last=True, save_top_k=0)
        trainer = pl.Trainer(max_epochs=epochs, callbacks=[ckpt, SampleGrids(sub)], logger=csv_logger(sub, resume),
                             enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=5)
        last = sub / "checkpoints" / "last.ckpt"
        trainer.fit(module, DataLoader(ds, batch_size, shuffle=True, drop_last=len(ds) > batch_size),
                    ckpt_path=str(last) if resume and last.exists() else None)
        if trainer.interrupted:
            raise LeukodxError(f"GAN training interrupted; resume with: leukodx gan train --resume --out {out}")
        state[name] = {k: v.detach().cpu() for k, v in module.G.state_dict().items()}
    payload = {"format": "leukodx-gan/1", "kind": kind, "size": size, "classes": index.classes, "width": width,
               "generators": state}
    torch.save(payload, out / "generator.pt")
    return out / "generator.pt"


def load_generators(gan_dir: str | Path) -> tuple[dict, dict[str, Generator]]:
    p = Path(gan_dir)
    p = p / "generator.pt" if p.is_dir() else p
    if not p.is_file():
        raise LeukodxError(f"{p}: no trained generator (run `leukodx gan train` first)")
    d = torch.load(p, map_location="cpu", weights_only=True)
    if d.get("format") != "leukodx-gan/1":
        raise LeukodxError(f"{p}: not a leukodx GAN file")
    latent, cond = KINDS[d["kind"]].latent, KINDS[d["kind"]].conditional
    gens = {}
    for name, sd in d["generators"].items():
        g = Generator(d["size"], latent, len(d["classes"]) if cond else 0, d.get("width", 64))
        g.load_state_dict(sd)
        gens[name] = g.eval()
    return d, gens


@torch.no_grad()
def generate_images(gan_dir, n_per_class: int, seed: int = 0, loaded: tuple | None = None) -> dict[str, np.ndarray]:
    """class -> (n, H, W, 3) uint8 generated images; `loaded` = load_generators(gan_dir) if already done."""
    d, gens = loaded or load_generators(gan_dir)
    torch.manual_seed(seed)
    out = {}
    for k, c in enumerate(d["classes"]):
        g = gens.get("all") or gens[c]
        z = torch.randn(n_per_class, g.latent)
        x = g(z, torch.full((n_per_class,), k)) if g.num_classes else g(z)
        out[c] = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return out


def synthesize(gan_dir, out_dir: str | Path, n_per_class: int, seed: int = 0) -> Path:
    """Class-balanced synthetic set: out_dir/<class>/*.png and manifest.csv with synthetic = 1.
    Killed at any point, it leaves no half-written PNG and no manifest listing another run's files:
    the old manifest goes first, each PNG is written then renamed, the new manifest comes last."""
    out_dir = Path(out_dir)
    (out_dir / "manifest.csv").unlink(missing_ok=True)
    recs = []
    loaded = load_generators(gan_dir)
    d, classes = loaded[0], loaded[0]["classes"]
    for c, imgs in generate_images(gan_dir, n_per_class, seed, loaded).items():
        (out_dir / c).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(imgs):
            p = out_dir / c / f"{d['kind']}_{c}_{i:05d}.png"
            tmp = p.with_name(p.name + ".tmp")
            Image.fromarray(im).save(tmp, "PNG")
            tmp.replace(p)
            recs.append(ImageRecord(str(p.resolve()), classes.index(c), group=f"synthetic/{d['kind']}", synthetic=True))
    return write_manifest(DatasetIndex(f"synthetic_{d['kind']}", str(out_dir.resolve()), classes, recs),
                          out_dir / "manifest.csv")
