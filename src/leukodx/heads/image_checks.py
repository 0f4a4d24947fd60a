"""Image checks behind two referral reasons, on the preprocessed image (numpy, no torch):
`unreadable` - blank, or nearly all pixels burnt out or black;
`not_a_cell` - no stained dark object at all, a noise-like texture (fine detail far above any
stained smear's), or a darkest object coloured unlike any stain for blood cells (it absorbs blue
light more than green: brown, orange, yellow or green things such as a cup of coffee or a cat).
A grayscale cell passes: the nucleus is found by darkness, and gray has no hue to judge.
Grayscale text and photos are left to the feature-distance check (`unfamiliar_image`), which
separates them far better than image statistics do (results/referral_scores.md). On the real
cells of results/image_checks.md (all of PBC, Taleqani and wbc_external, and samples of each under
every shift of leukodx.transforms.shifts; `python benchmarks/image_checks.py`) `not_a_cell` fires
on none, nor does `unreadable` (torchstain's Macenko, used before 2026-12-06, burnt out 2 of 200 tecom and
Taleqani images)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from leukodx.transforms.cell_finder import darkest_object, shrink

# Romanowsky and haematoxylin stains colour a nucleus purple or blue: it absorbs green light most and
# blue least, so its blue share of the optical density is negative (results/image_checks.md: at most
# -0.05 on real cells under every shift, 0 in grayscale; a scratch check with another (torchstain) Macenko reference
# image reached +0.04 on one Taleqani field). Brown, yellow and green things: 0.1-0.5 (a cup of coffee
# 0.10). The margin is narrow on both sides; a real cell refused here is referred, not answered wrongly.
MAX_BLUE_SHARE = 0.06


def blue_share(small: Image.Image, mask: np.ndarray) -> float:
    """(OD blue - OD green) / total OD of the masked pixels, the optical density taken against the
    image's own bright background (its 95th percentile per channel), so a lamp's colour cast cancels."""
    a = np.asarray(small.convert("RGB")).reshape(-1, 3)
    k = int(0.95 * (len(a) - 1))
    white = np.partition(a, k, axis=0)[k].astype(np.float32) + 1
    od = (-np.log(np.maximum(a[mask.ravel()], 1) / white)).clip(0, None).mean(0)
    return float((od[2] - od[1]) / (od.sum() + 1e-6))


def image_problem(arr: np.ndarray) -> str | None:
    """uint8 (H, W, 3) -> 'unreadable', 'not_a_cell' or None."""
    small = shrink(Image.fromarray(np.asarray(arr, dtype=np.uint8)), 64)  # every check runs on a 64-px copy
    g = np.asarray(small.convert("L"), np.float32)
    if g.std() < 4 or ((g < 8) | (g > 247)).mean() > 0.9:
        return "unreadable"
    core = darkest_object(small)
    if core is None or blue_share(small, core) > MAX_BLUE_SHARE:
        return "not_a_cell"
    return None
