"""leukodx.transforms.stain.Macenko on generated two-stain smears: an image normalised to itself comes back,
another image takes the reference's background and stain colours, nuclei stay darker than the background,
and an image without stain is refused (StainNormalizer then leaves it as it is)."""
import numpy as np
import pytest

from leukodx.errors import LeukodxError
from leukodx.transforms.stain import Macenko, StainNormalizer, background_colour

NUCLEUS, RED_CELL = np.array([0.65, 0.70, 0.29]), np.array([0.07, 0.99, 0.11])  # optical density per unit of stain


def smear(white=(245, 235, 225), nucleus=NUCLEUS, red_cell=RED_CELL, amount=(1.2, 0.5), seed=0, size=96):
    """A background of colour `white`, a disc of the first stain (a nucleus) and four discs of the second
    (red cells), each stain's amount varying a little from pixel to pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((size, size))
    c = np.zeros((2, size, size))
    c[0][(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < 14 ** 2] = amount[0]
    for cy, cx in ((18, 18), (18, 78), (78, 18), (78, 78)):
        c[1][(yy - cy) ** 2 + (xx - cx) ** 2 < 12 ** 2] = amount[1]
    c *= rng.uniform(0.8, 1.2, c.shape)
    od = np.tensordot(np.stack([nucleus, red_cell], 1), c, axes=(1, 0))  # (3, H, W)
    rgb = (np.array(white, float)[:, None, None] + 1) * np.exp(-od) - 1
    return np.clip(rgb, 0, 255).round().astype(np.uint8).transpose(1, 2, 0)


def test_an_image_normalised_to_itself_comes_back():
    a = smear()
    out = Macenko().fit(a).transform(a)
    assert np.abs(out.astype(int) - a).mean() < 3


def test_another_smear_takes_the_reference_background_and_stains():
    ref = smear(white=(250, 240, 170), amount=(1.5, 0.8), seed=1)  # yellow lamp, darker stain
    src = smear(white=(235, 225, 240), nucleus=np.array([0.55, 0.75, 0.35]), amount=(0.8, 0.4), seed=2)
    out = StainNormalizer(ref, "macenko")(src)
    assert np.abs(background_colour(out).astype(int) - background_colour(ref)).max() <= 3
    centre = lambda a: a[44:52, 44:52].reshape(-1, 3).mean(0)
    assert np.abs(centre(out) - centre(ref)).sum() < 0.5 * np.abs(centre(src) - centre(ref)).sum()
    assert centre(out).mean() < background_colour(out).mean() - 60  # the nucleus stays dark


def test_stain_vectors_point_into_positive_density_and_amounts_are_never_negative():
    for seed in range(5):
        _, he, c = Macenko().stains(smear(seed=seed))
        assert (he >= 0).all() and np.allclose(np.linalg.norm(he, axis=0), 1, atol=1e-6)
        assert (c >= 0).all()
        assert he[0, 0] > he[0, 1]  # the stain absorbing more red light (the nucleus's) comes first


def test_an_image_without_stain_is_refused_and_left_alone():
    blank = np.full((64, 64, 3), 240, np.uint8)
    with pytest.raises(LeukodxError, match="no stained pixels"):
        Macenko().fit(blank)
    assert np.array_equal(StainNormalizer(smear(), "macenko")(blank), blank)
