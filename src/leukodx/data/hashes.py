"""Exact (md5 of the bytes) and perceptual (dHash-256) fingerprints of every image, cached."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

from leukodx.data.dataset import DatasetIndex, ImageRecord
from leukodx.data.images import load_image
from leukodx.data.paths import cache_dir
from leukodx.errors import BadImageError

HASH_SIZE = 16  # 16x16 = 256-bit dHash, as used to list the near-duplicates in the data README


def dhash_bits(img: Image.Image, size: int = HASH_SIZE) -> np.ndarray:
    g = np.asarray(img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    return (g[:, 1:] > g[:, :-1]).ravel()


def _fingerprint(rec: ImageRecord) -> dict:
    data = Path(rec.path).read_bytes()
    out = {"md5": hashlib.md5(data).hexdigest()}
    if rec.box is not None:  # a crop: hash the crop, not the field
        out["md5"] += ":" + ",".join(map(str, rec.box))
    try:
        img = load_image(rec.path)
        if rec.box is not None:
            img = img.crop(rec.box)
        out["dhash"] = np.packbits(dhash_bits(img)).tobytes().hex()
    except BadImageError as e:
        out["error"] = e.problem
    return out


def fingerprints(index: DatasetIndex, progress: bool = False) -> list[dict]:
    """md5 and dHash per record, reusing a cache keyed by path, size and mtime."""
    cache_file = cache_dir() / "fingerprints.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    out, dirty = [], False
    it = index.records
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="hashing", unit="img")
    for rec in it:
        try:
            st = os.stat(rec.path)
        except OSError:
            out.append({"md5": f"unreadable:{rec.path}", "error": "file not found"})
            continue
        if not stat.S_ISREG(st.st_mode):
            out.append({"md5": f"unreadable:{rec.path}", "error": "not a regular file (FIFO, socket or device)"})
            continue
        key = f"{rec.path}|{st.st_size}|{int(st.st_mtime)}|{rec.box}"
        if key not in cache:
            cache[key] = _fingerprint(rec)
            dirty = True
        out.append(cache[key])
    if dirty:
        tmp = cache_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cache_file)
    return out


def near_duplicate_pairs(hex_hashes: list[str | None], max_distance: int = 6) -> list[tuple[int, int, int]]:
    """All pairs (i, j, hamming) with dHash distance <= max_distance (i < j)."""
    valid = [i for i, h in enumerate(hex_hashes) if h]
    if len(valid) < 2:
        return []
    bits = np.stack([np.unpackbits(np.frombuffer(bytes.fromhex(hex_hashes[i]), dtype=np.uint8)) for i in valid])
    words = np.packbits(bits, axis=1).view(np.uint64)  # (n, 4) 64-bit words
    pairs = []
    for a in range(len(valid)):
        d = np.bitwise_count(words[a + 1:] ^ words[a]).sum(axis=1)
        for b in np.nonzero(d <= max_distance)[0]:
            pairs.append((valid[a], valid[a + 1 + b], int(d[b])))
    return pairs
