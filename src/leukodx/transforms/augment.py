"""Training-time augmentation on uint8 tensors (3, S, S). Applied after the split, to training data only.

Presets:
  none      - nothing
  seed      - the seed papers' set: flip, rotation, zoom, shift, shear, contrast
  ddrnet    - horizontal flip, 10 deg rotation, zoom, random contrast (Jawahar et al.)
  thesis    - rotation 20, shift 10%, shear, zoom 10%, horizontal flip (Malik)
  autoaugment / randaugment / trivialaugment - torchvision's "auto-augmentation" policies
  robust    - removes the lab's shortcuts (stain, background, scale, resolution); its ingredients are
              listed in ROBUST_INGREDIENTS and any of them can be left out (`augment_drop`) for ablation;
              `stain_transfer: P` adds stain normalisation to another training image (StainTransfer), or
              to unlabelled white cells of another lab's smear fields (`stain_refs: bccd_smears`);
              `random_conv: P` adds random convolutions (RandomConvolution);
              `tone_curves: P` raises each colour channel to its own random power (RandomToneCurves).
Rotated / shifted corners take each image's own border colour (the papers' Keras / torchvision
defaults fill with black or nearest pixels, which no real image has).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from leukodx.errors import ConfigError
from leukodx.transforms.stain import StainNormalizer, background_colour, border_colour, hed_jitter

PRESETS = ("none", "seed", "ddrnet", "thesis", "autoaugment", "randaugment", "trivialaugment", "robust")
ROBUST_INGREDIENTS = ("background_fill", "background", "tight_crop", "scale", "hed", "colour", "hue", "grayscale", "low_resolution",
                      "blur", "jpeg")


def _rng() -> np.random.Generator:
    # torch's generator is seeded by Lightning (and per DataLoader worker), so draws stay reproducible
    return np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,))))


class AffineBackgroundFill:
    """Rotation, shift, shear and zoom (log-uniform over `scale`); uncovered corners take the image's
    border colour, or black with fill='black' (the old behaviour, for the ablation)."""

    def __init__(self, degrees: float = 180, translate: float = 0.08, scale=(0.5, 2.5), shear: float = 8,
                 fill: str = "background"):
        self.degrees, self.translate, self.scale, self.shear, self.fill = degrees, translate, scale, shear, fill

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        s = math.exp(r.uniform(math.log(self.scale[0]), math.log(self.scale[1])))
        size = x.shape[-1]
        t = [int(r.uniform(-self.translate, self.translate) * size) for _ in range(2)]
        fill = [0, 0, 0] if self.fill == "black" else border_colour(x.permute(1, 2, 0).numpy()).tolist()
        return TF.affine(x, angle=float(r.uniform(-self.degrees, self.degrees)), translate=t, scale=s,
                         shear=[float(r.uniform(-self.shear, self.shear))], fill=fill,
                         interpolation=v2.InterpolationMode.BILINEAR)


class HEDJitter:
    """Stain variation: haematoxylin / eosin densities scaled by 1 + U(-alpha, alpha), shifted by U(-beta, beta)."""

    def __init__(self, alpha: float = 0.4, beta: float = 0.04):
        self.alpha, self.beta = alpha, beta

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        a = np.r_[r.uniform(-self.alpha, self.alpha, 2), 0.0]
        b = np.r_[r.uniform(-self.beta, self.beta, 2), 0.0]
        return torch.from_numpy(hed_jitter(x.permute(1, 2, 0).numpy(), a, b)).permute(2, 0, 1).contiguous()


class RandomBackground:
    """Re-tint the background (pixels close to the border colour) towards a random colour, so that
    the smear's background colour cannot identify the lab or the class."""

    def __init__(self, p: float = 0.5, strength: float = 0.25):
        self.p, self.strength = p, strength

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        if r.random() > self.p:
            return x
        a = x.permute(1, 2, 0).numpy().astype(np.float32)
        bg = border_colour(x.permute(1, 2, 0).numpy()).astype(np.float32)
        dist = np.abs(a - bg).max(axis=2, keepdims=True)
        weight = np.clip(1 - dist / 40.0, 0, 1)          # 1 on background, 0 on stained objects
        target = np.clip(bg * (1 + r.uniform(-self.strength, self.strength, 3)), 0, 255)
        out = a + weight * (target - bg)
        return torch.from_numpy(np.clip(out, 0, 255).round().astype(np.uint8)).permute(2, 0, 1).contiguous()


class TightCrop:
    """Another lab's tight crop: keep a square around the centre, `side` of the image across (drawn
    uniformly), and paint the rest with the background colour. Removes the ring of red cells a model
    could use as a ruler, and teaches it the padded frame that cell-centring gives a tight crop."""

    def __init__(self, p: float = 0.5, side=(0.45, 0.9), jitter: float = 0.05):
        self.p, self.side, self.jitter = p, side, jitter

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        if r.random() > self.p:
            return x
        size = x.shape[-1]
        half = r.uniform(*self.side) * size / 2
        cx, cy = (size / 2 + r.uniform(-self.jitter, self.jitter) * size for _ in range(2))
        x0, x1 = max(0, round(cx - half)), min(size, round(cx + half))
        y0, y1 = max(0, round(cy - half)), min(size, round(cy + half))
        bg = torch.from_numpy(background_colour(x.permute(1, 2, 0).numpy())).view(3, 1, 1)
        out = bg.expand_as(x).clone()
        out[:, y0:y1, x0:x1] = x[:, y0:y1, x0:x1]
        return out


class LowResolution:
    """A low-resolution camera: downscale so the image is `sizes` pixels across, then back up."""

    def __init__(self, p: float = 0.3, sizes=(24, 80)):
        self.p, self.sizes = p, sizes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        size = x.shape[-1]
        if r.random() > self.p or size <= self.sizes[0]:
            return x
        small = int(r.integers(self.sizes[0], min(self.sizes[1], size) + 1))
        x = TF.resize(x, [small, small], antialias=True)
        return TF.resize(x, [size, size], antialias=True)


def _stained(a: np.ndarray) -> bool:
    """A stain reference needs stained pixels (Macenko's optical density > 0.15)."""
    return (a < 200).any(axis=2).mean() > 0.01


def _normaliser(a: np.ndarray, method: str) -> StainNormalizer | None:
    try:
        return StainNormalizer(a, method)
    except Exception:  # noqa: BLE001 - a stain that cannot be fitted: not a reference
        return None


class StainTransfer:
    """Stain normalisation as augmentation: with probability p the image is Reinhard- or Macenko-
    normalised (leukodx.transforms.stain) to another training image, so that a lab that stain-normalises its images
    shows the model nothing new. The references are a reservoir of `pool` images seen earlier in
    training (this runs on the train side only), refreshed at random as training goes on; or, given
    `references` (RGB arrays, e.g. unlabelled cells of another lab), a fixed set fitted both ways."""

    def __init__(self, p: float = 0.3, pool: int = 32, refresh: float = 0.05, references=()):
        self.p, self.pool, self.refresh = p, pool, refresh
        self.refs: list[StainNormalizer] = [norm for a in filter(_stained, references) for m in ("reinhard", "macenko")
                                            if (norm := _normaliser(a, m)) is not None]
        if references and not self.refs:
            raise ConfigError("stain_refs: no reference image has a stain to fit")
        self.fixed = bool(references)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        a = np.ascontiguousarray(x.permute(1, 2, 0).numpy())
        out = x
        if self.refs and r.random() < self.p:
            out = torch.from_numpy(self.refs[int(r.integers(len(self.refs)))](a)).permute(2, 0, 1).contiguous()
        if not self.fixed and _stained(a) and (len(self.refs) < self.pool or r.random() < self.refresh):
            norm = _normaliser(a, ("reinhard", "macenko")[int(r.integers(2))])
            if norm is None:
                return out
            if len(self.refs) < self.pool:
                self.refs.append(norm)
            else:
                self.refs[int(r.integers(self.pool))] = norm
        return out


class RandomConvolution:
    """RandConv (Xu et al., ICLR 2021): with probability p, filter the image with a random k x k
    convolution (k in `sizes`, weights N(0, 1/(3 k^2))) and blend it with the original by a random
    weight. Colour and fine texture become random while shapes stay; the result keeps the image's
    per-channel mean and spread, so it stays in the uint8 range of a real image."""

    def __init__(self, p: float = 0.5, sizes=(1, 3, 5)):
        self.p, self.sizes = p, sizes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        if r.random() > self.p:
            return x
        k = int(r.choice(self.sizes))
        w = torch.from_numpy(r.normal(0, 1 / math.sqrt(3 * k * k), (3, 3, k, k)).astype(np.float32))
        a = x.float()[None] / 255
        y = torch.nn.functional.conv2d(torch.nn.functional.pad(a, [k // 2] * 4, mode="reflect"), w)
        alpha = float(r.uniform(0, 1))
        y = alpha * a + (1 - alpha) * y
        mu, sd = a.mean((2, 3), keepdim=True), a.std((2, 3), keepdim=True)
        y = (y - y.mean((2, 3), keepdim=True)) / y.std((2, 3), keepdim=True).clamp_min(1e-6) * sd + mu
        return (y[0] * 255).clamp(0, 255).round().to(torch.uint8)


class RandomToneCurves:
    """With probability p, raise each colour channel (0-1) to its own power, log-uniform in `gammas`.
    White stays white and black stays black, but dark parts (the nucleus) and pale parts (cytoplasm,
    red cells) change hue by different amounts: the colour contrast between them, which a global hue
    turn keeps, stops being a cue another lab's stain would keep too."""

    def __init__(self, p: float = 0.5, gammas=(0.5, 2.0)):
        self.p, self.gammas = p, gammas

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r = _rng()
        if r.random() > self.p:
            return x
        g = np.exp(r.uniform(math.log(self.gammas[0]), math.log(self.gammas[1]), 3)).astype(np.float32)
        y = (x.float() / 255).pow(torch.from_numpy(g).view(3, 1, 1))
        return (y * 255).round().clamp(0, 255).to(torch.uint8)


class TwoViews:
    """Two independent draws of `t` on one image, stacked (2, C, H, W): the pair a consistency loss
    compares (train.module, cfg.consistency)."""

    def __init__(self, t):
        self.t = t

    def __call__(self, x):
        return torch.stack([self.t(x), self.t(x)])


class RandomApply:
    def __init__(self, t, p: float):
        self.t, self.p = t, p

    def __call__(self, x):
        return self.t(x) if _rng().random() < self.p else x


def robust_ingredients(blur_sigma: float = 1.5) -> dict:
    """Name -> transform, in the order they are applied; `blur_sigma` is the strongest blur in pixels."""
    return {
        "background": RandomBackground(),  # before the zoom, so the fill takes the new background colour
        "tight_crop": TightCrop(),
        "scale": AffineBackgroundFill(),  # rotation + shift + zoom 0.5x-2.5x; fill set by background_fill
        "hed": RandomApply(HEDJitter(), 0.8),
        "colour": v2.ColorJitter(brightness=0.25, contrast=0.3, saturation=0.4, hue=0.06),
        # a global hue turn keeps the colour contrasts inside the cell (granules vs nucleus) but not the stain's hue
        "hue": RandomApply(v2.ColorJitter(hue=0.5), 0.5),
        "grayscale": v2.RandomGrayscale(p=0.2),
        "low_resolution": LowResolution(),
        "blur": RandomApply(v2.GaussianBlur(max(5, 2 * round(1.5 * blur_sigma) + 1), sigma=(0.3, blur_sigma)), 0.3),
        "jpeg": RandomApply(v2.JPEG((40, 95)), 0.3),
    }


def build_robust(drop=(), stain_transfer: float = 0.0, blur_sigma: float = 1.5, random_conv: float = 0.0,
                 tone_curves: float = 0.0, stain_refs=()) -> v2.Compose:
    unknown = sorted(set(drop) - set(ROBUST_INGREDIENTS))
    if unknown:
        raise ConfigError(f"unknown augmentation ingredient(s) {', '.join(unknown)}; "
                          f"known: {', '.join(ROBUST_INGREDIENTS)}")
    parts = robust_ingredients(blur_sigma)
    if "scale" in drop:  # keep the old small geometric jitter so that only the wide zoom is removed
        parts["scale"] = AffineBackgroundFill(degrees=20, translate=0.1, scale=(0.9, 1.1), shear=10)
    if "background_fill" in drop:
        parts["scale"].fill = "black"
    steps = [StainTransfer(stain_transfer, references=stain_refs)] if stain_transfer > 0 else []  # like the test shift
    steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    steps += [t for name, t in parts.items() if name == "scale" or name not in drop]
    camera = len(steps) - sum(n not in drop for n in ("low_resolution", "blur", "jpeg"))
    # before the camera steps (low resolution, blur, JPEG), after the colour ones
    extra = ([RandomToneCurves(tone_curves)] if tone_curves > 0 else []) + (
        [RandomConvolution(random_conv)] if random_conv > 0 else [])
    return v2.Compose(steps[:camera] + extra + steps[camera:])


def build_augment(name: str = "seed", drop=(), stain_transfer: float = 0.0, blur_sigma: float = 1.5,
                  random_conv: float = 0.0, tone_curves: float = 0.0, stain_refs=()):
    flips = [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if name == "none":
        return v2.Identity()
    if name == "robust":
        return build_robust(drop, stain_transfer, blur_sigma, random_conv, tone_curves, stain_refs)
    if drop or stain_transfer or blur_sigma != 1.5 or random_conv or tone_curves or len(stain_refs):
        raise ConfigError("augment_drop, stain_transfer, stain_refs, blur_sigma, random_conv and tone_curves only apply "
                          "to augment: robust")
    if name == "seed":
        return v2.Compose(flips + [
            AffineBackgroundFill(degrees=20, translate=0.1, scale=(0.9, 1.1), shear=10),
            v2.RandomAutocontrast(p=0.2), v2.ColorJitter(contrast=0.2)])
    if name == "ddrnet":
        return v2.Compose([v2.RandomHorizontalFlip(), AffineBackgroundFill(degrees=10, translate=0, scale=(0.9, 1.1),
                                                                             shear=0), v2.ColorJitter(contrast=0.2)])
    if name == "thesis":
        return v2.Compose([v2.RandomHorizontalFlip(),
                           AffineBackgroundFill(degrees=20, translate=0.1, scale=(0.9, 1.1), shear=10)])
    if name == "autoaugment":
        return v2.Compose(flips + [v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)])
    if name == "randaugment":
        return v2.Compose(flips + [v2.RandAugment()])
    if name == "trivialaugment":
        return v2.Compose(flips + [v2.TrivialAugmentWide()])
    raise ConfigError(f"unknown augmentation '{name}'; choose one of {', '.join(PRESETS)}")
