"""Named, deterministic image shifts for robustness evaluation (never used in training).

Each shift maps a PIL RGB image to a PIL RGB image of the same size; random parts (the direction of
a stain shift) are seeded by the image's own pixels, so a re-run gives the same numbers.
Sizes are relative to a 128-pixel rendering of the image, so a shift means the same on a 120 px
and on a 360 px image.

  grayscale            luminance only
  stain_reinhard/_macenko  stain normalised to one reference image (leukodx.transforms.stain)
  hed_S                haematoxylin / eosin densities scaled by 1 +- S (random sign per stain)
  blur_S               Gaussian blur, sigma S pixels at 128 px
  lowres_N             downscaled to N pixels across, then back up (a low-resolution camera)
  jpeg_Q               JPEG quality Q
  scale_F              cell F times its size: zoom in (centre crop) or out (pad with background colour)
  cells_out            every stained cell painted out with the median colour of the rest: a field without
                       its white cell (the counterfactual of leukodx.transforms.cell_paint)
  A+B                  shift A, then shift B (e.g. cells_out+grayscale)
"""
from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, ImageFilter

from leukodx.errors import ConfigError
from leukodx.transforms.cell_paint import cell_region, paint
from leukodx.transforms.stain import StainNormalizer, border_colour, hed_jitter

DEFAULT_SHIFTS = ("none", "grayscale", "stain_reinhard", "stain_macenko", "hed_0.2", "hed_0.5", "blur_1", "blur_2",
                  "lowres_48", "lowres_32", "jpeg_30", "jpeg_10", "scale_0.5", "scale_0.75", "scale_1.5", "scale_2")


def _seed(img: Image.Image) -> int:
    return zlib.crc32(img.tobytes()[:65536])


def _rel(img: Image.Image, px: float) -> float:
    return px * max(img.size) / 128.0


def _scale(img: Image.Image, f: float) -> Image.Image:
    w, h = img.size
    if f >= 1:  # zoom in: the centre 1/f of the field, resized back
        cw, ch = max(1, round(w / f)), max(1, round(h / f))
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch)
        return img.crop(box).resize((w, h), Image.Resampling.BILINEAR)
    small = img.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (w, h), tuple(int(c) for c in border_colour(np.asarray(img))))
    canvas.paste(small, ((w - small.width) // 2, (h - small.height) // 2))
    return canvas


def _lowres(img: Image.Image, n: int) -> Image.Image:
    w, h = img.size
    k = n / max(w, h)
    if k >= 1:
        return img
    small = img.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _jpeg(img: Image.Image, q: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _hed(img: Image.Image, s: float) -> Image.Image:
    signs = np.random.default_rng(_seed(img)).choice([-1.0, 1.0], 2)
    return Image.fromarray(hed_jitter(np.asarray(img), np.r_[s * signs, 0.0], np.zeros(3)))


def _cells_out(img: Image.Image) -> Image.Image:
    a = np.asarray(img.convert("RGB"))
    return Image.fromarray(paint(a, cell_region(a)))


def build_shift(name: str, reference: Image.Image | None = None):
    """The shift called `name` as a callable on PIL RGB images. Stain normalisation needs `reference`."""
    if "+" in name:
        first, _, rest = name.partition("+")
        a, b = build_shift(first, reference), build_shift(rest, reference)
        return lambda img: b(a(img))
    kind, _, arg = name.partition("_")
    try:
        if name == "cells_out":
            return _cells_out
        if name == "none":
            return lambda img: img
        if name == "grayscale":
            return lambda img: img.convert("L").convert("RGB")
        if kind == "stain" and arg in ("reinhard", "macenko"):
            if reference is None:
                raise ConfigError(f"shift '{name}' needs a reference image")
            norm = StainNormalizer(np.asarray(reference.convert("RGB")), arg)
            return lambda img: Image.fromarray(norm(np.asarray(img)))
        value = float(arg)
        if kind == "hed" and 0 <= value < 1:
            return lambda img: _hed(img, value)
        if kind == "blur" and value >= 0:
            return lambda img: img.filter(ImageFilter.GaussianBlur(_rel(img, value)))
        if kind == "lowres" and value >= 4:
            return lambda img: _lowres(img, int(value))
        if kind == "jpeg" and 1 <= value <= 95:
            return lambda img: _jpeg(img, int(value))
        if kind == "scale" and 0.1 <= value <= 10:
            return lambda img: _scale(img, value)
    except ValueError:
        pass
    raise ConfigError(f"unknown shift '{name}'; known kinds: none, grayscale, stain_reinhard, stain_macenko, "
                      "hed_S, blur_S, lowres_N, jpeg_Q, scale_F, cells_out, A+B (e.g. " + ", ".join(DEFAULT_SHIFTS[4:]) + ")")


def parse_shifts(spec: str | None) -> list[str]:
    """'all' or None -> the default list; otherwise comma-separated names, each checked."""
    names = list(DEFAULT_SHIFTS) if spec in (None, "", "all") else [s.strip() for s in spec.split(",") if s.strip()]
    check = np.full((8, 8, 3), 240, np.uint8)  # a reference the stain normalisers can fit: white, a purple and a pink patch
    check[:4, :4], check[4:, 4:] = (110, 60, 150), (220, 140, 150)
    for n in names:
        build_shift(n, Image.fromarray(check))
    return names
