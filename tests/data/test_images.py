import numpy as np
import pytest

from leukodx.data.images import load_image
from leukodx.errors import BadImageError


def test_odd_but_valid_images_become_rgb(bad_files):
    d, _ = bad_files
    for name in ("good.jpg", "gray.png", "rgba.png", "cmyk.jpg", "sixteen.png"):
        img = load_image(d / name)
        assert img.mode == "RGB" and img.size == (32, 32), name


def test_sixteen_bit_is_scaled_not_clipped(bad_files):
    d, _ = bad_files
    arr = np.asarray(load_image(d / "sixteen.png"))
    assert arr.max() > 200 and arr.min() < 50  # full range kept after scaling 16 -> 8 bit


def test_exif_orientation_applied(bad_files):
    d, _ = bad_files
    assert load_image(d / "exif.jpg").size == (20, 40)  # stored 40x20, EXIF says rotate 90


@pytest.mark.parametrize("name,word", [("empty.jpg", "empty"), ("fake.jpg", "not an image"),
                                       ("truncated.jpg", "truncated"), ("bomb.png", "too large"),
                                       ("missing.jpg", "not found")])
def test_bad_files_give_one_line_reason(bad_files, name, word):
    d, _ = bad_files
    with pytest.raises(BadImageError) as e:
        load_image(d / name)
    msg = str(e.value)
    assert name in msg and word in msg.lower() and "\n" not in msg
