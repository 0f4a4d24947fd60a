"""Safe image loading: every image enters leukodx through `load_image`.

Handles grayscale, palette, RGBA, CMYK, 16-bit and EXIF-rotated files by converting them to
8-bit RGB, and turns unreadable, empty, truncated, non-image and oversized files into a
`BadImageError` naming the file and the problem.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from leukodx.errors import BadImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
# Larger than any microscope field we expect; PIL's own bomb limit is 89 Mpx.
MAX_PIXELS = 50_000_000
MAX_DECODED_BYTES = 256 * 2**20  # decoded size, checked from the header before decoding
BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "CMYK": 4,
                   "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4, "LA": 2, "PA": 2}
ImageFile.LOAD_TRUNCATED_IMAGES = False


def is_image_file(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit data is scaled, alpha is put on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)  # integer ops only: a 7000 x 7000 16-bit image stays ~100 MB
        lo = int(arr.min()) if arr.size else 0
        if lo < 0:
            arr = arr - lo
        hi = int(arr.max()) if arr.size else 0
        shift = max(0, hi.bit_length() - 8)  # scale by a power of two into 8 bits
        img = Image.fromarray((arr >> shift).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("image has NaN or infinite pixel values")
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_image(path: str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open `path` as an 8-bit RGB PIL image with EXIF orientation applied.

    Raises BadImageError with a one-line reason for anything that is not a usable image.
    """
    p = Path(path)
    if not p.exists():
        raise BadImageError(p, "file not found")
    if p.is_dir():
        raise BadImageError(p, "is a folder, not an image")
    if not p.is_file():
        raise BadImageError(p, "not a regular file (FIFO, socket or device)")
    if p.stat().st_size == 0:
        raise BadImageError(p, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise BadImageError(p, f"image too large ({w}x{h} = {w * h:,} pixels; limit {max_pixels:,})")
                need = w * h * BYTES_PER_PIXEL.get(img.mode, 4)
                if need > MAX_DECODED_BYTES:
                    raise BadImageError(p, f"image too large to decode ({img.mode}, {w}x{h}: {need / 2**20:.0f} MB; "
                                           f"limit {MAX_DECODED_BYTES / 2**20:.0f} MB)")
                if w < 8 or h < 8:
                    raise BadImageError(p, f"image too small ({w}x{h} pixels)")
                img.load()
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img)
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImageError(p, f"image too large (decompression-bomb guard: {e})") from None
    except UnidentifiedImageError:
        raise BadImageError(p, "not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e).strip() or type(e).__name__
        if "truncated" in msg.lower() or "broken data stream" in msg.lower():
            msg = f"truncated or corrupt image data ({msg})"
        raise BadImageError(p, msg) from None


def image_info(path: str | Path) -> dict:
    """Size, mode and format read from the header only (cheap; used by the audit)."""
    if not Path(path).is_file():  # a FIFO would block the read forever
        return {"error": "file not found" if not Path(path).exists() else "not a regular file (FIFO, socket or device)"}
    try:
        with Image.open(path) as img:
            return {"width": img.size[0], "height": img.size[1], "mode": img.mode, "format": img.format}
    except Exception as e:  # noqa: BLE001 - audit records the reason, never dies
        return {"error": str(e).strip() or type(e).__name__}
