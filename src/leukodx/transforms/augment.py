"""Training-time augmentation on uint8 tensors. Applied after the split, to training data only.

Presets:
  none      - nothing
  seed      - the seed papers' set: flip, rotation, zoom, shift, shear, contrast
  ddrnet    - horizontal flip, 10 deg rotation, zoom, random contrast (Jawahar et al.)
  thesis    - rotation 20, shift 10%, shear, zoom 10%, horizontal flip (Malik)
  autoaugment / randaugment / trivialaugment - torchvision's "auto-augmentation" policies
"""
from __future__ import annotations

from torchvision.transforms import v2

from leukodx.errors import ConfigError

PRESETS = ("none", "seed", "ddrnet", "thesis", "autoaugment", "randaugment", "trivialaugment")


def build_augment(name: str = "seed"):
    flips = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if name == "none":
        return v2.Identity()
    if name == "seed":
        return v2.Compose(flips + [
            v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10),
            v2.RandomAutocontrast(p=0.2), v2.ColorJitter(contrast=0.2)])
    if name == "ddrnet":
        return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=10, scale=(0.9, 1.1)),
                           v2.ColorJitter(contrast=0.2)])
    if name == "thesis":
        return v2.Compose([v2.RandomHorizontalFlip(),
                           v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10)])
    if name == "autoaugment":
        return v2.Compose(flips + [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)])
    if name == "randaugment":
        return v2.Compose(flips + [v2.RandAugment()])
    if name == "trivialaugment":
        return v2.Compose(flips + [v2.TrivialAugmentWide()])
    raise ConfigError(f"unknown augmentation '{name}'; choose one of {', '.join(PRESETS)}")
