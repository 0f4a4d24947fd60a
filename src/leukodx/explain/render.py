"""Pictures of explanations: heatmap overlays with class and probability, and a method panel."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHEET_TILE = 192  # px: the smallest tile of a report sheet


def overlay(image: np.ndarray, heat: np.ndarray, caption: str = "", alpha: float = 0.45) -> Image.Image:
    from matplotlib import colormaps

    rgb = (colormaps["jet"](heat)[..., :3] * 255).astype(np.float32)
    return captioned(Image.fromarray((image * (1 - alpha) + rgb * alpha).astype(np.uint8)), caption)


def captioned(img: Image.Image, caption: str) -> Image.Image:
    """The image under a black band holding the caption, wrapped to the image's width (none: unchanged)."""
    if not caption:
        return img
    lines = textwrap.wrap(caption, max(8, (img.width - 6) // 6))  # Pillow's default font: about 6 px a character
    out = Image.new("RGB", (img.width, img.height + 14 * len(lines) + 2), (0, 0, 0))
    d = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        d.text((3, 1 + 14 * i), line, fill=(255, 255, 255))
    out.paste(img, (0, out.height - img.height))
    return out


def _grid(tiles: list[Image.Image], cols: int, extra_height: int = 0) -> tuple[Image.Image, int, int]:
    """A white sheet with a cell for each tile (cells as large as the largest tile), tiles pasted in."""
    w, h = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (w * cols, h * rows + extra_height), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * w, (i // cols) * h + h - t.height))
    return sheet, w, h


def panel(image: np.ndarray, explanations, scale: int = 1) -> Image.Image:
    """The input then one overlay per method, side by side, each titled with its method's name."""
    tiles = [captioned(Image.fromarray(image), "input")] + [overlay(image, e.map, e.name) for e in explanations]
    out, _, h = _grid(tiles, len(tiles), extra_height=16)
    e0 = explanations[0] if explanations else None
    ImageDraw.Draw(out).text((3, h + 2), f"{e0.label} p={e0.probability:.2f}{e0.gray_note}" if e0 else "",
                             fill=(0, 0, 0))
    return out.resize((out.width * scale, out.height * scale)) if scale > 1 else out


def save_explanations(explanations, out_dir: str | Path, stem: str) -> dict:
    """Writes STEM_METHOD.png (overlay), STEM_METHOD.npy (raw map) and STEM_panel.png; returns paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for e in explanations:
        safe = e.method.replace("+", "p")
        np.save(out_dir / f"{stem}_{safe}.npy", e.map)
        overlay(e.image, e.map, e.caption).save(out_dir / f"{stem}_{safe}.png")
        files[e.method] = str(out_dir / f"{stem}_{safe}.png")
    if explanations:
        panel(explanations[0].image, explanations).save(out_dir / f"{stem}_panel.png")
        files["panel"] = str(out_dir / f"{stem}_panel.png")
    return files


def overlay_sheet(bundle, paths: list[str], true_labels: list[str]) -> Image.Image | None:
    """Overlays of the default explanation for a few images, captioned 'true -> predicted p', in one
    row-wrapped sheet (for the HTML report). None when the model cannot be explained that way."""
    from leukodx.explain import Explainer, ExplainError
    from leukodx.explain.explainer import DEFAULT_METHOD

    ex = Explainer(bundle)
    tiles = []
    for p, t in zip(paths, true_labels):
        try:
            e = ex.explain(p, [DEFAULT_METHOD])[0]
        except ExplainError:
            return None
        tile = overlay(e.image, e.map)
        if tile.width < SHEET_TILE:  # small model inputs: enlarged, so that the caption has room
            tile = tile.resize((SHEET_TILE, round(SHEET_TILE * tile.height / tile.width)), Image.Resampling.BILINEAR)
        tiles.append(captioned(tile, f"{t} -> {e.label} {e.probability:.2f}{e.gray_note}"))
    return _grid(tiles, min(4, len(tiles)))[0] if tiles else None
