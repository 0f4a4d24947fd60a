"""Find the white cell in an image: its nucleus is the darkest stained object.

`find_nucleus` returns the nucleus mask, centre and equivalent diameter; `centre_crop` cuts a square
around it whose side is a fixed multiple of the nucleus size, so a tight crop from one lab and a wide
field from another come out alike. Measured against expert masks by benchmarks/cell_finder.py.
`stained_cells` masks every stained cell of a field (the shortcut audit's cell region on smear fields);
`whole_cell_mask` the white cell with its cytoplasm (the classic pipeline's background mask).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from leukodx.transforms.stain import background_colour


@dataclass
class Nucleus:
    mask: np.ndarray          # bool (H, W)
    centre: tuple[float, float]  # (x, y) pixels
    diameter: float           # equivalent diameter of the (merged) nucleus, pixels
    found: bool               # False: nothing stained enough; centre = image centre


MAX_FINE_DETAIL = 0.6  # real smears (colour or grayscale): at most 0.45; uniform noise: 0.70
# What "dark" means when looking for the nucleus: light absorbed in the green channel (red cells absorb it
# too, so a dark clump of them can win), or in red and green together (a purple nucleus absorbs red, a red
# cell hardly does). The same in grayscale. Compared against expert masks in results/cell_finder.md.
DARKNESS = ("green", "red_green")


def fine_detail(img: Image.Image) -> float:
    """Mean high-pass magnitude over the contrast of a 64-px grayscale copy: noise-like texture is high."""
    from scipy import ndimage

    g = np.asarray(img.convert("L").resize((64, 64), Image.Resampling.BILINEAR), np.float32)
    return float(np.abs(g - ndimage.gaussian_filter(g, 1.5)).mean() / max(g.std(), 1e-6))


def shrink(img: Image.Image, size: int) -> Image.Image:
    """A copy at most `size` pixels across (aspect kept), or `img` itself when it is no bigger."""
    k = max(img.size) / size
    if k <= 1:
        return img
    return img.convert("RGB").resize((max(1, round(img.width / k)), max(1, round(img.height / k))),
                                     Image.Resampling.BILINEAR)


def find_nucleus(img: Image.Image, work_size: int = 96, darkness: str = "green") -> Nucleus:
    """Darkness = green-channel (or red and green, `darkness`) absorption, smoothed; the darkest of three Otsu classes; the
    connected piece with the most darkness, plus pieces close to it (lobes of one nucleus).
    A noise-like image has no nucleus (found=False), so centring never zooms into noise.
    Runs on a copy at most `work_size` pixels across (fast); results are in the image's pixels."""
    w0, h0 = img.size
    if fine_detail(img) > MAX_FINE_DETAIL:
        return Nucleus(np.zeros((h0, w0), bool), (w0 / 2, h0 / 2), 0.0, False)
    small = shrink(img, work_size)
    if small is img:
        return _find(img, darkness)
    n = _find(small, darkness)
    mask = np.asarray(Image.fromarray(n.mask).resize((w0, h0), Image.Resampling.NEAREST))
    k = max(w0, h0) / work_size
    return Nucleus(mask, (n.centre[0] * w0 / small.width, n.centre[1] * h0 / small.height), n.diameter * k, n.found)


def darkest_object(img: Image.Image) -> np.ndarray | None:
    """The mask of the darkest stained object (the core `find_nucleus` starts from, without its lobes),
    or None exactly where `find_nucleus` finds nothing (noise-like texture, nothing stained enough).
    The `not_a_cell` check runs it on a 64-px copy."""
    if fine_detail(img) > MAX_FINE_DETAIL or (found := _candidates(img)) is None:
        return None
    lab, best = _pieces(*found)
    return lab == best


def _candidates(img: Image.Image, darkness: str = "green"):
    """(darkness, threshold, candidate pixels) or None where nothing is stained enough."""
    from scipy import ndimage
    from skimage.filters import threshold_multiotsu

    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = a.shape[:2]
    if darkness not in DARKNESS:
        raise ValueError(f"darkness must be one of {DARKNESS}, got {darkness!r}")
    absorbed = a[..., 1] if darkness == "green" else (a[..., 0] + a[..., 1]) / 2
    dark = ndimage.gaussian_filter(255 - absorbed, max(1.0, max(h, w) / 120))
    if dark.max() - dark.min() < 20:
        return None
    try:
        t = threshold_multiotsu(dark, classes=3)[-1]
    except ValueError:
        return None
    cand = ndimage.binary_opening(dark > t, iterations=1)
    return (dark, t, cand) if cand.any() else None


def _pieces(dark, t, cand) -> tuple[np.ndarray, int]:
    """Labelled candidate pieces and the label of the one holding most darkness above the threshold."""
    from scipy import ndimage

    lab, n = ndimage.label(cand)
    return lab, 1 + int(np.argmax(ndimage.sum(dark - t, lab, range(1, n + 1))))


def _find(img: Image.Image, darkness: str) -> Nucleus:
    from scipy import ndimage

    w, h = img.size
    found = _candidates(img, darkness)
    if found is None:
        return Nucleus(np.zeros((h, w), bool), (w / 2, h / 2), 0.0, False)
    dark, t, cand = found
    lab, best = _pieces(dark, t, cand)
    core = lab == best
    d_core = 2 * np.sqrt(core.sum() / np.pi)
    # lobes: pieces whose nearest pixel is within half a nucleus diameter of the main piece
    dist = ndimage.distance_transform_edt(~core)
    near = {int(v) for v in np.unique(lab[(dist <= 0.5 * d_core) & (lab > 0)])}
    big = {i for i in near if ndimage.sum(cand, lab, i) >= 0.05 * core.sum()}
    mask = np.isin(lab, list(big | {best}))
    mask = ndimage.binary_fill_holes(mask)
    ys, xs = np.nonzero(mask)
    return Nucleus(mask, (float(xs.mean()), float(ys.mean())), float(2 * np.sqrt(mask.sum() / np.pi)), True)


def stained_cells(img: Image.Image, sigma: float = 1.5, floor: float = 25.0) -> np.ndarray:
    """Every purple-stained object (white cells and blasts, not red cells): purpleness (R + B) / 2 - G,
    smoothed, above its Otsu threshold (at least `floor`), holes filled. For fields with many cells,
    where `find_nucleus` keeps one; red cells are grey or pink, so they stay out."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    a = np.asarray(img.convert("RGB"), dtype=np.float32)
    purple = ndimage.gaussian_filter((a[..., 0] + a[..., 2]) / 2 - a[..., 1], sigma)
    t = max(float(threshold_otsu(purple)), floor) if purple.max() > purple.min() else floor
    return ndimage.binary_fill_holes(ndimage.binary_opening(purple > t, iterations=1))


def whole_cell_mask(img: Image.Image, work_size: int = 150) -> np.ndarray:
    """The white cell, nucleus and cytoplasm (the classic pipeline's mask with `keep_cytoplasm: true`):
    pixels darker than the brighter of three Otsu classes (the background) are
    cell candidates; where the candidates beside the nucleus split into a pinker group with the
    background's hue (red cells) and a paler, bluer one (cytoplasm), the pinker group is cut; the piece
    joined to the nucleus is kept, holes filled. Runs on a `work_size`-px copy. Measured against expert
    masks by benchmarks/cell_finder.py."""
    from scipy import ndimage
    from skimage.filters import threshold_multiotsu, threshold_otsu

    w0, h0 = img.size
    k = work_size / max(w0, h0)
    small = img.convert("RGB").resize((max(1, round(w0 * k)), max(1, round(h0 * k))), Image.Resampling.BILINEAR)
    nuc = find_nucleus(small)
    if not nuc.found:
        return np.ones((h0, w0), bool)
    a = ndimage.gaussian_filter(np.asarray(small, np.float32), (2, 2, 0))
    g = a.mean(-1)
    try:
        t = threshold_multiotsu(g, classes=3)[1]
    except ValueError:
        return np.ones((h0, w0), bool)
    mask, red = (g < t) | nuc.mask, a[..., 0] - a[..., 2]
    rest = mask & ~nuc.mask
    if rest.sum() > 50 and np.ptp(red[rest]) > 0:
        pink = red > threshold_otsu(red[rest])
        # the cytoplasm's side of the nucleus rim (past the blur): mostly pinker there means the pinker group is cytoplasm
        ring = ndimage.binary_dilation(nuc.mask, iterations=8) & ~ndimage.binary_dilation(nuc.mask, iterations=4) & rest
        pinker = red[rest & pink].mean() - red[rest & ~pink].mean()
        if pinker > 15 and red[rest & pink].mean() > red[g >= t].mean() - 20 and (not ring.any() or pink[ring].mean() < 0.5):
            mask &= ~(pink & ~nuc.mask)
    lab, _ = ndimage.label(ndimage.binary_opening(mask, iterations=2) | nuc.mask)
    mask = ndimage.binary_fill_holes(np.isin(lab, np.unique(lab[nuc.mask])))
    return np.asarray(Image.fromarray(mask).resize((w0, h0), Image.Resampling.NEAREST))


def centre_crop(img: Image.Image, nucleus: Nucleus, side_per_diameter: float = 3.0) -> Image.Image:
    """Square crop centred on the nucleus, side = side_per_diameter x its diameter, padded with the
    background colour where it leaves the image (tight crops from other labs always do). Without a
    nucleus, the image is returned unchanged."""
    if not nucleus.found or nucleus.diameter < 2:
        return img
    side = round(side_per_diameter * nucleus.diameter)
    cx, cy = nucleus.centre
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    canvas = Image.new("RGB", (side, side), tuple(int(c) for c in background_colour(np.asarray(img.convert("RGB")))))
    canvas.paste(img.convert("RGB"), (-x0, -y0))
    return canvas


class CellCentre:
    """Preprocessing step: centre the white cell and bring it to a canonical size in the frame."""

    def __init__(self, side_per_diameter: float = 3.0, darkness: str = "green"):
        self.k, self.darkness = float(side_per_diameter), darkness

    def __call__(self, img: Image.Image) -> Image.Image:
        return centre_crop(img, find_nucleus(img, darkness=self.darkness), self.k)
