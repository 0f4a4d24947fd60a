"""Stain colour: HED stain jitter (scikit-image's colour deconvolution), stain normalisation to a
reference image (Reinhard from torchstain; Macenko written here, see `Macenko`), and the background
colour of a smear image.

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


class Macenko:
    """Macenko et al. (ISBI 2009) stain normalisation: two stain vectors from the extreme angles of the
    stained pixels' optical density in its principal plane, each image's stain amounts rescaled to the
    reference's and re-coloured with the reference's stains. Written here because torchstain 1.4.1 leaves
    the eigenvectors' signs to chance (staintools and cuCIM turn them into positive optical density), so
    some smears came out with nuclei paler than the background, and measures optical density against a
    fixed 240 gray, so a cream or yellow smear background counted as stain. Here density is taken
    against each image's own background colour (which the reference's replaces), the vectors point into
    positive density, and stain amounts are never negative."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.15):
        self.alpha, self.beta = alpha, beta  # angle percentile; least density of a stained pixel

    def stains(self, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(background colour, stain vectors (3, 2), stain amounts (2, pixels)) of a uint8 RGB image."""
        white = background_colour(a).astype(np.float64) + 1
        od = -np.log((a.reshape(-1, 3).astype(np.float64) + 1) / white)
        tissue = od[(od > self.beta).any(1)]
        if len(tissue) < 10:
            raise LeukodxError("no stained pixels to fit Macenko stain vectors to")
        _, vec = np.linalg.eigh(np.cov(tissue.T))
        vec = vec[:, [2, 1]] * np.where(vec[:, [2, 1]].sum(0) < 0, -1, 1)  # into positive optical density
        phi = np.arctan2(*(tissue @ vec).T[::-1])
        ends = [vec @ [np.cos(t), np.sin(t)] for t in np.percentile(phi, [self.alpha, 100 - self.alpha])]
        he = np.clip(np.stack(sorted(ends, key=lambda v: -v[0]), 1), 0, None)  # the stain absorbing more red first
        he /= np.linalg.norm(he, axis=0) + 1e-9
        return white, he, np.clip(np.linalg.lstsq(he, od.T, rcond=None)[0], 0, None)

    def fit(self, reference: np.ndarray) -> Macenko:
        self.white_, self.stains_, c = self.stains(reference)
        self.max_amount_ = np.percentile(c, 99, axis=1) + 1e-9
        return self

    def transform(self, a: np.ndarray) -> np.ndarray:
        _, _, c = self.stains(a)
        c *= (self.max_amount_ / (np.percentile(c, 99, axis=1) + 1e-9))[:, None]
        out = self.white_ * np.exp(-(self.stains_ @ c)).T - 1
        return np.clip(out, 0, 255).round().astype(np.uint8).reshape(a.shape)


class StainNormalizer:
    """Map an image's stain onto a reference image's. method: 'reinhard' (torchstain) or 'macenko' (`Macenko`)."""

    def __init__(self, reference: np.ndarray, method: str = "reinhard"):
        if method == "reinhard":
            import torchstain

            self.norm = torchstain.normalizers.ReinhardNormalizer(backend="numpy")
            self.norm.fit(np.ascontiguousarray(reference))
        elif method == "macenko":
            self.norm = Macenko().fit(np.ascontiguousarray(reference))
        else:
            raise LeukodxError(f"unknown stain normalisation '{method}' (reinhard or macenko)")
        self.method = method

    def __call__(self, a: np.ndarray) -> np.ndarray:
        try:
            out = self.norm.transform(np.ascontiguousarray(a)) if self.method == "macenko" \
                else self.norm.normalize(I=np.ascontiguousarray(a))
        except Exception:  # noqa: BLE001 - Macenko fails on stain-free images (no tissue): keep the image
            return a
        out = out[0] if isinstance(out, tuple) else out
        out = np.asarray(out, dtype=np.float64)
        return np.clip(np.nan_to_num(out, nan=255.0), 0, 255).round().astype(np.uint8)
