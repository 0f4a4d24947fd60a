"""Procedural smear-like cell images for the demo and tests. SYNTHETIC: not real cells.

Four classes with different morphology (nucleus size, shape, chromatin texture, nucleoli),
on a background whose tint varies by *slide*, not by class, so colour alone does not solve it.
Images of one slide share a group id, to exercise grouped splitting.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from leukodx.data.dataset import DatasetIndex, ImageRecord, from_manifest, write_manifest

CLASSES = ["synthetic_small_round", "synthetic_large_round", "synthetic_irregular", "synthetic_lobed"]
MORPHOLOGIES = 5  # the fifth (eccentric nucleus) is used when five class names are asked for


def _cell(rng: np.random.Generator, cls: int, size: int, tint: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.ones((size, size, 3), np.float32) * tint  # plasma background
    for _ in range(rng.integers(3, 7)):  # red cells around
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.14)
        d = np.hypot(yy - cy, xx - cx)
        ring = (d < r).astype(np.float32) * (0.75 + 0.25 * (d / r))
        img = img * (1 - 0.35 * ring[..., None]) + 0.35 * ring[..., None] * np.array([0.85, 0.45, 0.5])
    cy, cx = 0.5 + rng.normal(0, 0.03, 2)
    cell_r = rng.uniform(0.26, 0.32)
    d = np.hypot(yy - cy, xx - cx)
    cyto = d < cell_r
    img[cyto] = img[cyto] * 0.3 + 0.7 * np.array([0.72, 0.72, 0.9])
    ang = np.arctan2(yy - cy, xx - cx)
    base = {0: 0.45, 1: 0.8, 2: 0.7, 3: 0.55, 4: 0.5}[cls] * cell_r
    if cls == 4:  # eccentric: nucleus pushed to one side
        a = rng.uniform(0, 6.28)
        d = np.hypot(yy - cy - 0.45 * cell_r * np.sin(a), xx - cx - 0.45 * cell_r * np.cos(a))
    if cls == 2:  # irregular outline (cleft nucleus)
        rad = base * (1 + 0.22 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.1 * np.sin(5 * ang))
    elif cls == 3:  # lobed: three separate lobes
        rad = None
    else:
        rad = base * (1 + rng.normal(0, 0.03))
    if rad is not None:
        nuc = d < rad
    else:
        nuc = np.zeros_like(cyto)
        phase = rng.uniform(0, 6.28)
        for k in range(3):
            a = phase + k * 2.09
            ly, lx = cy + 0.13 * np.sin(a), cx + 0.13 * np.cos(a)
            nuc |= np.hypot(yy - ly, xx - lx) < base * 0.55
    shade = {0: 0.35, 1: 0.45, 2: 0.4, 3: 0.35, 4: 0.4}[cls]
    texture = rng.normal(0, 0.08 if cls in (1, 2) else 0.03, (size, size)).astype(np.float32)
    img[nuc] = np.array([0.35, 0.2, 0.55]) * (shade / 0.4) + texture[nuc][:, None]
    if cls == 2:  # nucleoli
        for _ in range(2):
            ny, nx = cy + rng.normal(0, 0.05), cx + rng.normal(0, 0.05)
            img[np.hypot(yy - ny, xx - nx) < 0.025] = [0.55, 0.45, 0.75]
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def generate(out_dir: str | Path, n_per_class: int = 60, size: int = 96, seed: int = 0,
             per_slide: int = 10, classes: list[str] | None = None) -> DatasetIndex:
    """Write PNGs to out_dir/<class>/ and a manifest.csv (group = slide); returns the index.
    `classes` renames the classes (at most five morphologies), e.g. ALL / AML / CLL / CML / healthy."""
    classes = list(classes or CLASSES)
    if not 2 <= len(classes) <= MORPHOLOGIES:
        raise ValueError(f"synthetic data has 2 to {MORPHOLOGIES} classes, got {len(classes)}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    recs = []
    for c, name in enumerate(classes):
        (out / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            slide = i // per_slide
            tint = np.random.default_rng(seed * 1000 + slide * 7).uniform([0.85, 0.8, 0.8], [0.97, 0.92, 0.95])
            p = out / name / f"{name}_{i:04d}.png"
            Image.fromarray(_cell(rng, c, size, tint)).save(p)
            recs.append(ImageRecord(str(p.resolve()), c, group=f"{name}/slide{slide}"))
    index = DatasetIndex("synthetic_demo", str(out.resolve()), classes, recs)
    index.notes.append("SYNTHETIC procedural cells; groups = simulated slides")
    write_manifest(index, out / "manifest.csv")
    return from_manifest(out / "manifest.csv", name="synthetic_demo")
