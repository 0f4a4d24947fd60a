"""Pictures of explanations: heatmap overlays with class and probability, and a method panel."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def overlay(image: np.ndarray, heat: np.ndarray, caption: str = "", alpha: float = 0.45) -> Image.Image:
    from matplotlib import colormaps

    rgb = (colormaps["jet"](heat)[..., :3] * 255).astype(np.float32)
    out = Image.fromarray((image * (1 - alpha) + rgb * alpha).astype(np.uint8))
    if caption:
        d = ImageDraw.Draw(out)
        d.rectangle([0, 0, 6 + 6 * len(caption), 13], fill=(0, 0, 0))
        d.text((3, 1), caption, fill=(255, 255, 255))
    return out


def panel(image: np.ndarray, explanations, scale: int = 1) -> Image.Image:
    """The input then one overlay per method, side by side, each titled with its method."""
    tiles = [Image.fromarray(image)] + [overlay(image, e.map, e.method) for e in explanations]
    w, h = tiles[0].size
    out = Image.new("RGB", (w * len(tiles), h + 16), "white")
    d = ImageDraw.Draw(out)
    e0 = explanations[0] if explanations else None
    d.text((3, h + 2), f"{e0.label} p={e0.probability:.2f}" if e0 else "", fill=(0, 0, 0))
    for i, t in enumerate(tiles):
        out.paste(t, (i * w, 0))
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


def gradcam_sheet(bundle, paths: list[str], true_labels: list[str]) -> Image.Image | None:
    """Grad-CAM overlays for a few images, captioned 'true -> predicted p', in one row-wrapped sheet
    (for the HTML report). None when the model cannot be explained with Grad-CAM."""
    from leukodx.explain import Explainer, ExplainError

    ex = Explainer(bundle)
    tiles = []
    for p, t in zip(paths, true_labels):
        try:
            e = ex.explain(p, ["gradcam"])[0]
        except ExplainError:
            return None
        tiles.append(overlay(e.image, e.map, f"{t} -> {e.label} {e.probability:.2f}" + (" gray" if e.grayscale_copy else "")))
    if not tiles:
        return None
    w, h = tiles[0].size
    cols = min(4, len(tiles))
    sheet = Image.new("RGB", (w * cols, h * ((len(tiles) + cols - 1) // cols)), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * w, (i // cols) * h))
    return sheet
