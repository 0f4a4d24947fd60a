"""A generated corpus of unusual and malformed image files, and byte-level mutations of good ones.
Used by tests/predict/test_fuzz.py (bounded, in CI) and benchmarks/fuzz.py (10,000+ files)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def _enc(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def unusual_files(folder: Path) -> list[Path]:
    """At least 60 files a user might point leukodx at: odd modes, sizes, formats and broken data."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    cell = Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    files: dict[str, bytes] = {}
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "CMYK", "YCbCr", "I;16"):
        try:
            im = cell.convert(mode) if mode not in ("I", "F", "I;16") else Image.fromarray(
                {"I": rng.integers(-5, 70000, (64, 64)).astype(np.int32), "F": rng.normal(0, 1, (64, 64)).astype(np.float32),
                 "I;16": rng.integers(0, 65535, (64, 64)).astype(np.uint16)}[mode])
        except (ValueError, OSError):
            continue
        for fmt, ext in (("PNG", "png"), ("TIFF", "tif"), ("JPEG", "jpg"), ("BMP", "bmp"), ("WEBP", "webp")):
            try:
                files[f"mode_{mode.replace(';', '')}.{ext}"] = _enc(im, fmt)
            except (OSError, ValueError, KeyError):
                pass
    for w, h in ((1, 1), (7, 7), (8, 8), (1, 5000), (5000, 1), (3000, 3000)):
        files[f"size_{w}x{h}.png"] = _png(Image.new("RGB", (w, h), (200, 150, 200)))
    good = _png(cell)
    jpg = _enc(cell, "JPEG", quality=90)
    files.update({
        "empty.png": b"", "text.png": b"hello, this is not an image", "zeros.jpg": b"\0" * 4096,
        "half.png": good[: len(good) // 2], "head_only.png": good[:64], "half.jpg": jpg[: len(jpg) // 2],
        "bad_crc.png": good[:40] + bytes([good[40] ^ 0xFF]) + good[41:], "jpg_named.png": jpg, "png_named.jpg": good,
        "no_extension": good, "UPPER.PNG": good, "progressive.jpg": _enc(cell, "JPEG", progressive=True),
        "gif.gif": _enc(cell.convert("P"), "GIF"), "animated.gif": _enc(cell.convert("P"), "GIF", save_all=True,
                                                                            append_images=[cell.convert("P")] * 3),
        "multi.tif": _enc(cell, "TIFF", save_all=True, append_images=[cell, cell]),
        "transparent_p.png": _png(cell.convert("P"), transparency=0), "grey_alpha.png": _png(cell.convert("LA")),
        "all_black.png": _png(Image.new("RGB", (96, 96))), "all_white.png": _png(Image.new("RGB", (96, 96), "white")),
        "nan.tif": _enc(Image.fromarray(np.full((32, 32), np.nan, np.float32)), "TIFF"),
        "inf.tif": _enc(Image.fromarray(np.full((32, 32), np.inf, np.float32)), "TIFF"),
        "bomb.png": _png(Image.new("1", (12000, 12000)), optimize=True),
        "exif_rotated.jpg": _enc(cell, "JPEG", exif=_exif(6)), "bad_exif.jpg": _enc(cell, "JPEG", exif=b"Exif\0\0junk"),
        "svg.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>", "pdf.pdf": b"%PDF-1.4\n%%EOF",
        "random.bmp": bytes(rng.integers(0, 256, 2048, dtype=np.uint8)),
        "bmp_header_only.bmp": _enc(cell, "BMP")[:60],
        "name with spaces, commas; and 'quotes'.png": good, "ünïcödé_名前.png": good, "x" * 240 + ".png": good,
    })
    out = []
    for name, data in files.items():
        p = folder / name
        p.write_bytes(data)
        out.append(p)
    odd = os.path.join(os.fsencode(folder), b"latin1_\xe9\xff.png")
    with open(odd, "wb") as f:
        f.write(good)
    out.append(Path(os.fsdecode(odd)))
    (folder / "folder.png").mkdir(exist_ok=True)
    os.symlink(folder / "missing.png", folder / "dangling.png")
    os.mkfifo(folder / "fifo.png")
    return out


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random corruption: flip bytes, cut, splice in junk, or repeat a chunk."""
    b = bytearray(data)
    kind = rng.integers(0, 4)
    if kind == 0:
        for i in rng.integers(0, len(b), int(rng.integers(1, 20))):
            b[i] = int(rng.integers(0, 256))
    elif kind == 1:
        b = b[: int(rng.integers(0, len(b)))]
    elif kind == 2:
        i = int(rng.integers(0, len(b)))
        b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
    else:
        i, j = sorted(rng.integers(0, len(b), 2))
        b[j:j] = b[i:j][:4096] * int(rng.integers(1, 4))
    return bytes(b)


def mutated_files(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cell = Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    seeds = {"png": _png(cell), "jpg": _enc(cell, "JPEG"), "bmp": _enc(cell, "BMP"), "tif": _enc(cell, "TIFF"),
             "webp": _enc(cell, "WEBP"), "gif": _enc(cell.convert("P"), "GIF")}
    out = []
    for i in range(n):
        ext = list(seeds)[i % len(seeds)]
        p = folder / f"m{i:05d}.{ext}"
        p.write_bytes(mutate(seeds[ext], rng))
        out.append(p)
    return out
