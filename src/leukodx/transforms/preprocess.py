"""Deterministic preprocessing: white balance, cell centring, resize, Otsu background masking, Gaussian
low-pass, grayscale, normalise (and, for ablations only, nucleus-only and stain-free renderings).

Each step is a small callable on PIL images (MONAI-style), composed by `Preprocess`.
The same `Preprocess` runs at training and at prediction time; its settings travel in the model file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageFilter

from leukodx.errors import ConfigError
from leukodx.transforms.cell_finder import DARKNESS
from leukodx.transforms.stain import background_colour, border_colour

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize(batch, mean, std):
    """The one normalisation of leukodx: 0-255 images (N, 3, H, W) -> (x / 255 - mean) / std per
    channel. torch in, torch out (on the batch's device); numpy likewise."""
    if isinstance(batch, np.ndarray):
        m = np.asarray(mean, np.float32).reshape(1, 3, 1, 1) * 255
        s = np.asarray(std, np.float32).reshape(1, 3, 1, 1) * 255
        return (batch.astype(np.float32) - m) / s
    import torch

    m = torch.as_tensor(mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1) * 255
    s = torch.as_tensor(std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1) * 255
    return (batch.float() - m) / s


class Resize:
    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        if img.size == (self.size, self.size):
            return img
        return img.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0)


class GaussianLowPass:
    """Gaussian blur with standard deviation `sigma` in pixels (Sudhakar et al.'s noise filter)."""

    def __init__(self, sigma: float):
        self.sigma = float(sigma)

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(self.sigma)) if self.sigma > 0 else img


class Grayscale:
    """Luminance copied to three channels so that RGB networks take it unchanged."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("L").convert("RGB")


def otsu_threshold(gray: np.ndarray) -> int:
    """Threshold (0-255) that maximises between-class variance of the histogram."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / max(hist.sum(), 1)
    omega, mu = np.cumsum(p), np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    return int(np.nanargmax(np.nan_to_num(between, nan=-1)))


def cell_mask(img: Image.Image, sigma: float = 2.0, keep_largest: bool = True) -> np.ndarray:
    """Binary mask of the stained cell: darker than the Otsu threshold of the blurred image,
    holes filled, largest connected component kept."""
    from scipy import ndimage

    g = np.asarray(GaussianLowPass(sigma)(img).convert("L"))
    mask = g < otsu_threshold(g)
    mask = ndimage.binary_opening(mask, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    if keep_largest and mask.any():
        lab, n = ndimage.label(mask)
        sizes = ndimage.sum(mask, lab, range(1, n + 1))
        mask = lab == (1 + int(np.argmax(sizes)))
    return mask


class MaskCorner:
    """Cover the bottom-right corner (a burned-in scale-bar label) with the image's background colour."""

    def __init__(self, width: float = 0.2, height: float = 0.12):
        self.width, self.height = width, height

    def __call__(self, img: Image.Image) -> Image.Image:
        a = np.array(img.convert("RGB"))
        h, w = a.shape[:2]
        colour = border_colour(a[: h // 2, : w // 2])  # a corner away from the label
        a[h - round(h * self.height):, w - round(w * self.width):] = colour
        return Image.fromarray(a)


class WhiteBalance:
    """Divide each channel by the smear background (the light the slide lets through), so that the
    background comes out neutral grey at `level`: a yellow lamp or a pink camera setting is removed
    before the network sees the cell (transmittance, as in Beer-Lambert stain models)."""

    def __init__(self, level: int = 235):
        self.level = int(level)

    def __call__(self, img: Image.Image) -> Image.Image:
        a = np.asarray(img.convert("RGB"))
        gain = self.level / np.maximum(background_colour(a).astype(np.float32), 16.0)
        return Image.fromarray(np.clip(a * gain + 0.5, 0, 255).astype(np.uint8))


class Clahe:
    """Contrast-limited adaptive histogram equalisation of the lightness (CIELAB L; scikit-image), hue
    and saturation kept: a low-contrast, blurred camera's nucleus and cytoplasm come out with the
    contrast a sharp one shows. `clip` is scikit-image's clip_limit (0.01 its default)."""

    def __init__(self, clip: float = 0.01):
        self.clip = float(clip)

    def __call__(self, img: Image.Image) -> Image.Image:
        from skimage import color, exposure

        lab = color.rgb2lab(np.asarray(img.convert("RGB")))
        lab[..., 0] = 100 * exposure.equalize_adapthist(lab[..., 0] / 100, clip_limit=self.clip)
        return Image.fromarray((np.clip(color.lab2rgb(lab), 0, 1) * 255 + 0.5).astype(np.uint8))


class MaskBackground:
    """Threshold segmentation (Sudhakar et al.): pixels outside the Otsu cell mask become white. Otsu
    on gray levels keeps the darkest pixels, often the nucleus alone; `keep_cytoplasm` keeps the whole
    white cell instead (cell_finder.whole_cell_mask)."""

    def __init__(self, keep_cytoplasm: bool = False):
        self.keep_cytoplasm = keep_cytoplasm

    def mask(self, img: Image.Image) -> np.ndarray:
        """The cell this step keeps (also what `predict --outline` draws)."""
        from leukodx.transforms.cell_finder import whole_cell_mask

        return whole_cell_mask(img) if self.keep_cytoplasm else cell_mask(img)

    def __call__(self, img: Image.Image) -> Image.Image:
        a = np.array(img.convert("RGB"))
        a[~self.mask(img)] = 255
        return Image.fromarray(a)


class StainedOnly:
    """Every pixel but the stained cells (blasts and other white cells: `stained_cells`, widened by
    `grow` of the image side) becomes white, so the network cannot read the red cells, the background
    or the slide's look around them. An image without colour (grayscale) keeps its darkest objects
    (darkest of three Otsu classes); an image where nothing is found is left as it is."""

    def __init__(self, grow: float = 0.02):
        self.grow = grow

    def __call__(self, img: Image.Image) -> Image.Image:
        from scipy import ndimage
        from skimage.filters import threshold_multiotsu

        from leukodx.transforms.cell_finder import stained_cells

        a = np.array(img.convert("RGB"))
        if np.ptp(a.astype(np.int16) - a.mean(2, keepdims=True).astype(np.int16)) > 20:
            mask = stained_cells(img)
        else:
            g = ndimage.gaussian_filter(a.mean(2), 1.5)
            try:
                mask = g < threshold_multiotsu(g, classes=3)[0]
            except ValueError:  # too few grey levels for three classes: a blank or two-tone image
                return img
        if not mask.any():
            return img
        mask = ndimage.binary_dilation(mask, iterations=max(1, round(self.grow * max(a.shape[:2]))))
        a[~mask] = 255
        return Image.fromarray(a)


class StainFree:
    """Render the cell without its stain's colours: red = the nucleus mask (`find_nucleus`), green and
    blue = green-light absorption stretched per image from background (5th percentile) to its
    maximum, so only shape and relative darkness remain; a lab's stain, lamp and camera colours do not."""

    def __call__(self, img: Image.Image) -> Image.Image:
        from scipy import ndimage

        from leukodx.transforms.cell_finder import find_nucleus

        a = np.asarray(img.convert("RGB"), dtype=np.float32)
        dark = ndimage.gaussian_filter(255 - a[..., 1], 0.7)
        lo, hi = np.percentile(dark, 5), dark.max()
        stretched = np.clip((dark - lo) / max(hi - lo, 1.0), 0, 1) * 255
        out = np.stack([find_nucleus(img).mask * 255.0, stretched, stretched], axis=2)
        return Image.fromarray(out.round().astype(np.uint8))


class NucleusOnly:
    """Paint everything farther than `margin` nucleus diameters from the nucleus (`find_nucleus`) with
    the background colour: the network sees the nucleus, not how much cytoplasm surrounds it."""

    def __init__(self, margin: float = 0.1):
        self.margin = margin

    def __call__(self, img: Image.Image) -> Image.Image:
        from scipy import ndimage

        from leukodx.transforms.cell_finder import find_nucleus

        n = find_nucleus(img)
        if not n.found:
            return img
        a = np.array(img.convert("RGB"))
        keep = ndimage.distance_transform_edt(~n.mask) <= self.margin * n.diameter
        a[~keep] = background_colour(a)
        return Image.fromarray(a)


@dataclass
class PreprocessConfig:
    image_size: int = 224
    gaussian_sigma: float = 0.0
    grayscale: bool = False
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    mask_background: bool = False
    keep_cytoplasm: bool = False  # mask_background keeps nucleus and cytoplasm (not Otsu's darkest pixels)
    cell_centre: float = 0.0     # >0: crop a square of this many nucleus diameters around the white cell
    cell_darkness: str = "green"  # what cell_centre's nucleus is darkest in (cell_finder.DARKNESS)
    mask_corner: bool = False    # cover a burned-in scale-bar label in the bottom-right corner
    white_balance: bool = False  # divide by the background colour first (neutral background)
    stained_only: bool = False   # whiten everything but the stained cells (fields with many cells)
    stain_free: bool = False     # nucleus mask + stretched darkness instead of colours (StainFree)
    nucleus_only: bool = False   # paint all but the nucleus with the background colour (NucleusOnly)
    clahe: float = 0.0           # >0: equalise lightness locally with this clip limit (Clahe)

    def __post_init__(self):
        if not isinstance(self.image_size, int) or not 16 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be an integer in [16, 1024], got {self.image_size!r}")
        if not isinstance(self.gaussian_sigma, (int, float)) or self.gaussian_sigma < 0:
            raise ConfigError(f"gaussian_sigma must be >= 0, got {self.gaussian_sigma!r}")
        if not isinstance(self.cell_centre, (int, float)) or not (self.cell_centre == 0 or 1 <= self.cell_centre <= 10):
            raise ConfigError(f"cell_centre must be 0 (off) or 1-10 nucleus diameters, got {self.cell_centre!r}")
        if not isinstance(self.clahe, (int, float)) or not 0 <= self.clahe <= 1:
            raise ConfigError(f"clahe must be 0 (off) or a clip limit in (0, 1], got {self.clahe!r}")
        if self.cell_darkness not in DARKNESS:
            raise ConfigError(f"cell_darkness must be one of {', '.join(DARKNESS)}, got {self.cell_darkness!r}")
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, std > 0")


class Preprocess:
    """PIL RGB image -> uint8 tensor (3, S, S); `normalize` turns a uint8 batch into model input."""

    def __init__(self, cfg: PreprocessConfig):
        self.cfg = cfg
        steps = [WhiteBalance()] if cfg.white_balance else []
        if cfg.cell_centre:
            from leukodx.transforms.cell_finder import CellCentre
            steps.append(CellCentre(cfg.cell_centre, cfg.cell_darkness))
        if cfg.mask_corner:
            steps.append(MaskCorner())
        steps.append(Resize(cfg.image_size))
        if cfg.stained_only:
            steps.append(StainedOnly())
        if cfg.mask_background:
            steps.append(MaskBackground(cfg.keep_cytoplasm))
        if cfg.clahe:
            steps.append(Clahe(cfg.clahe))
        if cfg.gaussian_sigma > 0:
            steps.append(GaussianLowPass(cfg.gaussian_sigma))
        if cfg.grayscale:
            steps.append(Grayscale())
        if cfg.nucleus_only:
            steps.append(NucleusOnly())
        if cfg.stain_free:
            steps.append(StainFree())
        self.steps = steps

    def array(self, img: Image.Image) -> np.ndarray:
        """uint8 (S, S, 3): the preprocessed image, without torch (lean ONNX prediction uses this)."""
        for step in self.steps:
            img = step(img)
        return np.array(img, dtype=np.uint8, copy=True)

    def __call__(self, img: Image.Image):
        """uint8 torch tensor (3, S, S)."""
        import torch

        return torch.from_numpy(self.array(img)).permute(2, 0, 1).contiguous()

    def normalize(self, batch):
        """uint8 batch (N, 3, S, S) or one image -> float model input; torch in, torch out; numpy likewise."""
        return normalize(batch[None] if batch.ndim == 3 else batch, self.cfg.mean, self.cfg.std)

    def to_dict(self) -> dict:
        return asdict(self.cfg)
