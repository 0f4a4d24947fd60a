"""Intermediate feature maps (DDRNet paper, Figure 7): the first channels of each top-level stage's
output for one image, as a sheet with one row per stage."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from leukodx.explain.targets import ExplainError


def feature_maps(model: torch.nn.Module, x: torch.Tensor, stages: list[str] | None = None) -> dict[str, np.ndarray]:
    """stage name -> (C, h, w) activations for one normalised input. Default stages: the model's
    top-level children whose output is a 4-D map."""
    names = stages or [n for n, _ in model.named_children()]
    seen, hooks = {}, []
    for n in names:
        try:
            m = model.get_submodule(n)
        except AttributeError:
            raise ExplainError(f"model has no layer named '{n}'") from None
        hooks.append(m.register_forward_hook(lambda _m, _i, o, n=n: seen.setdefault(n, o)))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    out = {n: o[0].float().numpy() for n, o in seen.items() if isinstance(o, torch.Tensor) and o.ndim == 4}
    if not out:
        raise ExplainError("no stage of this model gives a 4-D feature map; name stages explicitly")
    return out


def feature_sheet(maps: dict[str, np.ndarray], channels: int = 8, tile: int = 64, title: str = "") -> Image.Image:
    """One row per stage: its name and map size, then its first `channels` maps; `title` above them."""
    rows, top = list(maps.items()), 20 if title else 0
    sheet = Image.new("RGB", (110 + channels * tile, top + len(rows) * tile), "white")
    d = ImageDraw.Draw(sheet)
    if title:
        d.text((4, 4), title, fill=(0, 0, 0))
    for r, (name, a) in enumerate(rows):
        y = top + r * tile
        d.text((4, y + tile // 2 - 6), f"{name} {a.shape[1]}x{a.shape[2]}", fill=(0, 0, 0))
        for c in range(min(channels, a.shape[0])):
            m = a[c] - a[c].min()
            m = (255 * m / m.max()) if m.max() > 0 else m
            im = Image.fromarray(m.astype(np.uint8)).resize((tile, tile), Image.Resampling.NEAREST)
            sheet.paste(im.convert("RGB"), (110 + c * tile, y))
    return sheet
