"""Stain colour: HED stain jitter (scikit-image's colour deconvolution), stain normalisation to a
reference image (Reinhard / Macenko from torchstain), and the background colour of a smear image.

All functions take and return uint8 RGB numpy arrays (H, W, 3).
"""
from __future__ import annotations

import numpy as np

from leukodx.errors import LeukodxError


def border_colour(a: np.ndarray, width: int = 3) -> np.ndarray:
    """Median colour of the image border: the smear background in a centred cell image."""
    edge = np.concatenate([a[:width].reshape(-1, 3), a[-width:].reshape(-1, 3),
                           a[:, :width].reshape(-1, 3), a[:, -width:].reshape(-1, 3)])
    return np.median(edge, axis=0).astype(np.uint8)


def background_colour(a: np.ndarray, share: float = 0.25) -> np.ndarray:
    """Median colour of the brightest `share` of the pixels: the smear background, also in a tight crop
    whose border runs through the cell or through red cells (there `border_colour` comes out too dark)."""
    step = max(1, max(a.shape[:2]) // 96)  # a 96-px sample of the pixels is plenty
    px = a[::step, ::step].reshape(-1, 3)
    lum = px.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.median(px[lum >= np.quantile(lum, 1 - share)], axis=0).astype(np.uint8)


def hed_jitter(a: np.ndarray, alpha, beta) -> np.ndarray:
    """Scale and shift the haematoxylin, eosin and DAB optical densities: h' = h * (1 + alpha) + beta
    (Tellez et al. 2018), per channel; alpha, beta are length-3. Uses scikit-image's stain matrices
    but skips its clamp of negative densities, so zero jitter gives the image back unchanged."""
    from skimage.color import hed_from_rgb, rgb_from_hed

    od = -np.log((a.astype(np.float64) + 1) / 256)
    hed = od @ hed_from_rgb
    hed = hed * (1 + np.asarray(alpha, dtype=np.float64)) + np.asarray(beta, dtype=np.float64)
    rgb = np.exp(-(hed @ rgb_from_hed)) * 256 - 1
    return np.clip(rgb, 0, 255).round().astype(np.uint8)


class StainNormalizer:
    """Map an image's stain onto a reference image's. method: 'reinhard' or 'macenko' (torchstain)."""

    def __init__(self, reference: np.ndarray, method: str = "reinhard"):
        import torchstain

        if method == "reinhard":
            self.norm = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
        elif method == "macenko":
            self.norm = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        else:
            raise LeukodxError(f"unknown stain normalisation '{method}' (reinhard or macenko)")
        self.method = method
        self.norm.fit(np.ascontiguousarray(reference))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        try:
            out = self.norm.normalize(I=np.ascontiguousarray(a), stains=False) if self.method == "macenko" \
                else self.norm.normalize(I=np.ascontiguousarray(a))
        except Exception:  # noqa: BLE001 - Macenko fails on stain-free images (no tissue): keep the image
            return a
        out = out[0] if isinstance(out, tuple) else out
        out = np.asarray(out, dtype=np.float64)
        return np.clip(np.nan_to_num(out, nan=255.0), 0, 255).round().astype(np.uint8)
