"""Image checks behind two referral reasons, on the preprocessed image (numpy, no torch):
`unreadable` - blank, or nearly all pixels burnt out or black;
`not_a_cell` - no stained dark object at all, or a noise-like texture (fine detail far above any
stained smear's). A grayscale cell passes: the nucleus is found by darkness.
Text, photos of other things and other labs' cells are left to the feature-distance check
(`unfamiliar_image`), which separates them far better than image statistics do
(results/referral_scores.md). The thresholds below flagged none of 600 real cells from PBC,
Taleqani and wbc_external, in colour or grayscale (a check run while writing them; the referral
rows of the robustness tables show what they do on whole test sides)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from leukodx.transforms.cell_finder import has_nucleus, shrink


def image_problem(arr: np.ndarray) -> str | None:
    """uint8 (H, W, 3) -> 'unreadable', 'not_a_cell' or None. A noise-like texture has no nucleus
    (`has_nucleus` checks the fine detail itself)."""
    small = shrink(Image.fromarray(np.asarray(arr, dtype=np.uint8)), 64)  # both checks run on a 64-px copy
    g = np.asarray(small.convert("L"), np.float32)
    if g.std() < 4 or ((g < 8) | (g > 247)).mean() > 0.9:
        return "unreadable"
    if not has_nucleus(small):
        return "not_a_cell"
    return None
