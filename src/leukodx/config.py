"""Run configuration as data: a dataclass, validated, saved as YAML beside every run."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

from leukodx.errors import ConfigError
from leukodx.transforms.augment import PRESETS, build_augment
from leukodx.transforms.shifts import parse_shifts


def model_kwargs_problem(kw) -> str | None:
    """model_kwargs must map names to plain values (numbers, text, true/false, or lists of them)."""
    scalars = (bool, int, float, str, type(None))
    if not isinstance(kw, dict) or not all(isinstance(k, str) and k.isidentifier() for k in kw):
        return "must be a mapping of names to values"
    for k, v in kw.items():
        if not (isinstance(v, scalars) or (isinstance(v, (list, tuple)) and all(isinstance(x, scalars) for x in v))):
            return f"'{k}' has a value of type {type(v).__name__}"
    return None


class YamlConfig:
    """Dataclass configs that save to / load from YAML and refuse unknown keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path, **overrides):
        try:
            d = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: config is not UTF-8 text") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: config must be a mapping of key: value")
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)


@dataclass
class TrainConfig(YamlConfig):
    data: str = "demo"                   # recipe name, recipe:PATH, folder tree or CSV manifest
    model: str = "efficientnet_lite0"    # any name create_model knows
    pretrained: bool = True
    model_kwargs: dict = field(default_factory=dict)
    head: str = "softmax"                # softmax | xgboost (stage 2 over pooled features, in RUN/xgboost)
    image_size: int = 224
    gaussian_sigma: float = 0.0
    grayscale: bool = False
    mask_background: bool = False        # whiten pixels outside the Otsu cell mask
    keep_cytoplasm: bool = False         # with mask_background: the mask is the whole white cell, not Otsu's darkest pixels
    cell_centre: float = 0.0             # >0: centre the white cell, crop this many nucleus diameters around it
    cell_darkness: str = "green"         # cell_centre finds the nucleus darkest in green | red_green light
    mask_corner: bool = False            # cover a burned-in scale-bar label (bottom-right corner)
    white_balance: bool = False          # divide each image by its background colour (neutral background)
    stained_only: bool = False           # whiten all but the stained cells (fields of many cells: ALL)
    # ablation only (results/augment_ablation.md): the image checks then see the rendered input
    stain_free: bool = False             # nucleus mask + stretched darkness instead of colours
    nucleus_only: bool = False           # paint all but the nucleus with the background colour
    clahe: float = 0.0                   # >0: local contrast equalisation of lightness, this clip limit (ablation)
    augment: str = "seed"
    augment_drop: list = field(default_factory=list)  # robust ingredients to leave out (ablation)
    mixstyle: float = 0.0                # >0: MixStyle probability in the first 3 stages (training only)
    stain_transfer: float = 0.0          # >0 (augment: robust): probability of stain-normalising to another training image
    stain_refs: str = ""                 # with stain_transfer: a smear-field set (e.g. bccd_smears) whose white cells,
                                         # unlabelled, are the stain references instead of training images
    blur_sigma: float = 1.5              # augment: robust: strongest training blur, pixels at input size
    random_conv: float = 0.0             # >0 (augment: robust): probability of a random convolution (RandConv)
    tone_curves: float = 0.0             # >0 (augment: robust): probability of random per-channel gamma curves
    amplitude_mix: float = 0.0           # >0: probability per training image of a Fourier amplitude mix with another
                                         # image of the batch, phase and label kept (FACT; train.amplitude_mix)
    paint_out_cells: float = 0.0         # >0: share of training images shown with their stained cells painted out,
                                         # target: no class (uniform); as many again with the paint beside the cells
    mixup_cutmix: float = 0.0            # >0: share of training batches mixed by MixUp or CutMix (torchvision), labels alike
    consistency: float = 0.0             # >0: weight of a Jensen-Shannon consistency loss between two augmented
                                         # views of each training image (AugMix's term; twice the compute per step)
    domain_cells: str = ""               # a smear-field set (e.g. bccd_smears) whose white cells, unlabelled, are
                                         # another lab for domain-adversarial training (leukodx.train.domain)
    domain_weight: float = 0.0           # >0 (with domain_cells): weight of that domain loss
    sam_rho: float = 0.0                 # >0: sharpness-aware minimisation with this radius (train.sam; twice the
                                         # compute per step; not with 16-mixed precision)
    ema_decay: float = 0.0               # >0: validate, checkpoint and ship an exponential moving average of the weights
    epochs: int = 10
    max_steps: int = 0                   # >0: a budget in optimiser steps instead of epochs (validated 10x per run)
    warmup_steps: int = 0                # linear warm-up before the cosine decay
    freeze_epochs: int = 1               # first epochs train the classifier only
    probe_init: float = 0.0              # > 0: start the classifier from a logistic regression on the pretrained
                                         # features, this its C (LP-FT, Kumar et al. 2022; train.finetune.probe_init)
    frozen_layers: list = field(default_factory=list)  # module names (e.g. conv_stem, blocks.0) kept pretrained for the
                                         # whole run, weights and BatchNorm statistics (leukodx.train.finetune)
    batch_size: int = 32
    optimizer: str = "adamw"             # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"            # cosine (after warm-up, per step) | constant | plateau
    plateau_factor: float = 0.2
    class_weights: bool = True           # inverse-frequency loss weights
    balanced_sampling: bool = False      # or: sample classes equally
    label_smoothing: float = 0.0
    early_stopping_patience: int = 5
    monitor: str = "val_loss"            # val_loss | val_acc | val_auc
    seed: int = 0
    val_frac: float = 0.15
    test_frac: float = 0.2
    split_file: str | None = None        # reuse a saved split
    use_hashes: bool = True              # duplicate groups from image hashes
    precision: str = "auto"              # auto = 16-mixed on GPU, 32 on CPU
    accelerator: str = "auto"
    devices: int | str = "auto"
    threads: int = 2
    workers: int = 0                     # DataLoader processes augmenting training batches (0: the training process)
    synthetic: str | None = None         # manifest of generated images (leukodx synthesize), train side only
    synthetic_ratio: float = 1.0         # generated images per real training image
    synthetic_mode: str = "add"          # add | only (train on synthetic, test on real)
    max_images_per_class: int = 0        # >0: quick runs on a subset (train side only)
    tta_views: int = 1                   # 1, 2, 4 or 8: quarter turns / mirror images averaged at prediction (model file)
    gray_fallback: bool = False          # answer an unfamiliar image from its grayscale copy where that is familiar (model file)
    refer_target_accuracy: float = 0.99  # referral threshold: accepted val cases reach this accuracy
    refer_unfamiliar_rate: float = 0.02  # share of val images the unfamiliar-image check may refer
    refer_shifts: list = field(default_factory=list)  # mild shifts (leukodx.transforms.shifts) whose val copies join the confidence fit
    refer_no_cell: float = 0.0           # > 0: fit the no-white-cell probe (heads.cell_probe), flagging at most this share of val cells
    bootstrap: int = 1000

    _CHOICES: ClassVar[dict] = {"optimizer": ("adam", "adamw", "sgd"), "scheduler": ("cosine", "constant", "plateau"),
                "monitor": ("val_loss", "val_acc", "val_auc"), "augment": PRESETS,
                "precision": ("auto", "32", "16-mixed", "bf16-mixed"), "head": ("softmax", "xgboost"),
                "synthetic_mode": ("add", "only")}

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", int) and (not isinstance(v, int) or isinstance(v, bool)):
                raise ConfigError(f"config '{f.name}' must be an integer, got {v!r}")
            if f.type in ("float", float):
                if isinstance(v, str):  # YAML reads 1e-3 (no dot) as a string
                    try:
                        v = float(v)
                    except ValueError:
                        pass
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ConfigError(f"config '{f.name}' must be a number, got {v!r}")
                setattr(self, f.name, float(v))
            if f.type in ("bool", bool) and not isinstance(v, bool):
                raise ConfigError(f"config '{f.name}' must be true or false, got {v!r}")
        for k, options in self._CHOICES.items():
            if getattr(self, k) not in options:
                raise ConfigError(f"config '{k}' must be one of {', '.join(options)}; got {getattr(self, k)!r}")
        checks = [("epochs", self.epochs >= 1), ("batch_size", self.batch_size >= 1), ("lr", 0 < self.lr < 10),
                  ("freeze_epochs", 0 <= self.freeze_epochs), ("image_size", 16 <= self.image_size <= 1024),
                  ("weight_decay", self.weight_decay >= 0), ("threads", self.threads >= 1),
                  ("workers", isinstance(self.workers, int) and self.workers >= 0),
                  ("refer_target_accuracy", 0 < self.refer_target_accuracy <= 1),
                  ("refer_unfamiliar_rate", 0 <= self.refer_unfamiliar_rate < 0.5),
                  ("refer_no_cell", 0 <= self.refer_no_cell < 0.5),
                  ("label_smoothing", 0 <= self.label_smoothing < 1), ("mixstyle", 0 <= self.mixstyle <= 1), ("stain_transfer", 0 <= self.stain_transfer <= 1),
                  ("stain_refs", not self.stain_refs or self.stain_transfer > 0),
                  ("random_conv", 0 <= self.random_conv <= 1), ("tone_curves", 0 <= self.tone_curves <= 1),
                  ("amplitude_mix", 0 <= self.amplitude_mix <= 1), ("mixup_cutmix", 0 <= self.mixup_cutmix <= 1),
                  ("paint_out_cells", 0 <= self.paint_out_cells <= 0.5), ("tta_views", self.tta_views in (1, 2, 4, 8)),
                  ("consistency", 0 <= self.consistency <= 100), ("probe_init", 0 <= self.probe_init <= 1e4), ("domain_weight", 0 <= self.domain_weight <= 10),
                  ("ema_decay", self.ema_decay == 0 or 0.5 <= self.ema_decay < 1), ("sam_rho", 0 <= self.sam_rho <= 2),
                  ("blur_sigma", 0.3 <= self.blur_sigma <= 8), ("synthetic_ratio", 0 <= self.synthetic_ratio <= 10), ("bootstrap", self.bootstrap >= 0),
                  ("early_stopping_patience", self.early_stopping_patience >= 0), ("max_steps", self.max_steps >= 0),
                  ("warmup_steps", 0 <= self.warmup_steps and (self.max_steps == 0 or self.warmup_steps < self.max_steps))]
        if bool(self.domain_cells) != (self.domain_weight > 0):
            raise ConfigError("config 'domain_cells' (a smear-field set) and 'domain_weight' (> 0) go together; "
                              f"got {self.domain_cells!r} and {self.domain_weight!r}")
        if self.mixup_cutmix and (self.consistency or self.paint_out_cells or self.domain_cells):
            raise ConfigError("config 'mixup_cutmix' mixes the labels of whole batches; it does not combine with "
                              "'consistency', 'paint_out_cells' or 'domain_cells'")
        if self.sam_rho and self.precision == "16-mixed":
            raise ConfigError("config 'sam_rho' needs the loss closure, which 16-mixed precision's gradient scaler "
                              "does not give the optimiser: use precision 32 or bf16-mixed")
        if self.max_steps and self.scheduler == "plateau":
            raise ConfigError("config 'scheduler: plateau' steps once per epoch; with 'max_steps' use cosine or constant")
        problem = model_kwargs_problem(self.model_kwargs)
        if problem:
            raise ConfigError(f"config 'model_kwargs': {problem}")
        if not isinstance(self.frozen_layers, list) or not all(isinstance(n, str) for n in self.frozen_layers):
            raise ConfigError(f"config 'frozen_layers' must be a list of module names, got {self.frozen_layers!r}")
        if self.probe_init and not self.pretrained:
            raise ConfigError("config 'probe_init' fits a probe on pretrained features; it needs 'pretrained: true'")
        if self.frozen_layers and not self.pretrained:
            raise ConfigError("config 'frozen_layers' keeps pretrained layers as they are; it needs 'pretrained: true'")
        if not isinstance(self.augment_drop, list):
            raise ConfigError(f"config 'augment_drop' must be a list of names, got {self.augment_drop!r}")
        if not isinstance(self.refer_shifts, list) or "none" in self.refer_shifts:
            raise ConfigError(f"config 'refer_shifts' must be a list of shift names (not 'none'), got {self.refer_shifts!r}")
        if self.refer_shifts:
            parse_shifts(",".join(map(str, self.refer_shifts)))  # unknown shift names fail here
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"config '{name}' is out of range: {getattr(self, name)!r}")
        self.train_augment(load_refs=False)  # unknown ingredient names fail here, before training
        self._check_hardware()

    def train_augment(self, load_refs: bool = True):
        """The training augmentation this config asks for (leukodx.transforms.augment); `load_refs=False` leaves
        out the stain_refs cells, so that reading a config never needs their smear data."""
        refs = ()
        if self.stain_refs and load_refs:
            from leukodx.data.smears import white_cell_crops

            refs = white_cell_crops(self.stain_refs, seed=self.seed)
        return build_augment(self.augment, self.augment_drop, self.stain_transfer, self.blur_sigma, self.random_conv,
                             self.tone_curves, refs)

    def _check_hardware(self) -> None:
        """accelerator / devices against this machine, so a wrong value fails now, not as a hang."""
        import os

        import torch

        acc = str(self.accelerator)
        if acc not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise ConfigError(f"config 'accelerator' must be auto, cpu, gpu, cuda or mps; got {acc!r}")
        gpus = torch.cuda.device_count()
        if acc in ("gpu", "cuda") and gpus == 0:
            raise ConfigError(f"config 'accelerator: {acc}' but this machine has no CUDA GPU; use auto or cpu")
        d = self.devices
        if d == "auto":
            return
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ConfigError(f"config 'devices' must be 'auto' or a positive integer, got {d!r}")
        have = gpus if (acc in ("gpu", "cuda") or (acc == "auto" and gpus)) else (os.cpu_count() or 1)
        if d > have:
            raise ConfigError(f"config 'devices: {d}' but this machine has {have} "
                              f"{'GPUs' if have == gpus and gpus else 'CPU cores'}")


@dataclass
class DetectorConfig(YamlConfig):
    """`leukodx train-detector`: a smear-field detector on Pascal VOC fields (leukodx.train.detector)."""
    data: str = "bccd_smears"     # VOC folder (Annotations/ + JPEGImages/), or its name under the shared data
    pretrained: bool = True       # offline ImageNet EfficientNet-Lite0 backbone
    max_steps: int = 700          # optimiser steps
    warmup_steps: int = 50
    batch_size: int = 4
    lr: float = 0.01              # SGD, momentum 0.9, cosine after warm-up
    weight_decay: float = 0.0001
    scale_jitter: float = 0.2     # training fields resized by a random factor in [1 - s, 1 + s]
    colour_jitter: bool = True    # brightness / contrast / saturation / hue + 10% grayscale
    low_resolution: float = 0.0   # share of training fields shrunk 1.5-4x and enlarged back (other cameras)
    seed: int = 0
    val_frac: float = 0.15
    test_frac: float = 0.2
    threads: int = 2
    accelerator: str = "auto"
    precision: str = "auto"       # auto: 16-mixed on a GPU, 32 on CPU

    def __post_init__(self):
        checks = [("max_steps", isinstance(self.max_steps, int) and self.max_steps >= 1),
                  ("warmup_steps", isinstance(self.warmup_steps, int) and 0 <= self.warmup_steps < self.max_steps),
                  ("batch_size", isinstance(self.batch_size, int) and 1 <= self.batch_size <= 64),
                  ("lr", isinstance(self.lr, (int, float)) and 0 < self.lr < 1),
                  ("weight_decay", isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < 1),
                  ("scale_jitter", isinstance(self.scale_jitter, (int, float)) and 0 <= self.scale_jitter < 0.9),
                  ("low_resolution", isinstance(self.low_resolution, (int, float)) and 0 <= self.low_resolution <= 1),
                  ("val_frac", isinstance(self.val_frac, float) and 0 < self.val_frac < 0.5),
                  ("test_frac", isinstance(self.test_frac, float) and 0 < self.test_frac < 0.5),
                  ("threads", isinstance(self.threads, int) and self.threads >= 1),
                  ("accelerator", self.accelerator in ("auto", "cpu", "gpu", "cuda")),
                  ("precision", self.precision in ("auto", "32", "16-mixed", "bf16-mixed"))]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"config '{name}' is out of range: {getattr(self, name)!r}")
