"""Answer the grayscale copy of an image whose colours the model does not know (issue 13).

A model trained with random grayscale reads a cell in gray about as well as in colour, but a stain
it never saw (for example Macenko normalisation onto another lab's reference) moves its features far
from the training images (`unfamiliar_image`). With `gray_fallback` in the model file, such an
image is scored again as its grayscale copy, and where that copy is familiar its answer and distance
replace the colour ones. Familiar images cost nothing extra. Used by every prediction path (torch,
ONNX, evaluation), so they answer alike; chosen by measurement (configs/all_severity.yaml).
"""
from __future__ import annotations

import math

import numpy as np

# ITU-R 601 luma, as Pillow's convert("L"), which the `grayscale` shift and training's random grayscale use
LUMA = (299, 587, 114)
GRAY_NOTE = "read in grayscale: colours unfamiliar"  # how pages, reports and sheets mark such an answer


def _is_torch(batch) -> bool:  # no torch import here: the ONNX-only path (predict.lean) uses this module
    return type(batch).__module__.startswith("torch")


def fallback_threshold(model) -> float:
    """The distance above which an image is tried in gray: the unfamiliar-image threshold of a model
    (a ModelBundle, or the ONNX file's metadata dict) whose file asks for the fallback, else infinity."""
    get = model.get if isinstance(model, dict) else lambda k, default=None: getattr(model, k, default)
    return float(get("unfamiliar_threshold", math.inf)) if get("gray_fallback", False) else math.inf


def gray_copy(batch, channel_axis: int):
    """uint8 batch (numpy or torch, colour on `channel_axis`) -> the same with luma in every channel."""
    a = batch.numpy() if _is_torch(batch) else np.asarray(batch)
    c = np.moveaxis(a, channel_axis, -1).astype(np.int32)
    luma = (c @ np.array(LUMA, np.int32) + 500) // 1000
    g = np.ascontiguousarray(np.moveaxis(np.repeat(luma[..., None], 3, -1).astype(np.uint8), -1, channel_axis))
    if _is_torch(batch):
        import torch
        return torch.from_numpy(g)
    return g


def with_gray_fallback(run, batch, threshold: float, channel_axis: int) -> tuple:
    """`run(batch)` -> a tuple of numpy arrays, one row per image, the last the unfamiliar-image
    distance. Returns those outputs, with each unfamiliar image's rows (distance > threshold)
    replaced by its grayscale copy's where the copy is familiar, and a bool array: which were.
    A threshold of infinity (`fallback_threshold` of a model without the fallback) changes nothing."""
    out = [np.array(o, copy=True) for o in run(batch)]
    used = np.zeros(len(out[-1]), bool)
    redo = np.flatnonzero(out[-1] > threshold)
    if len(redo):
        gray = run(gray_copy(batch[redo.tolist()] if _is_torch(batch) else batch[redo], channel_axis))
        take = np.asarray(gray[-1]) <= threshold
        for o, g in zip(out, gray):
            o[redo[take]] = np.asarray(g)[take]
        used[redo[take]] = True
    return (*out, used)
