"""Shared fixtures: tiny generated images (good and bad kinds) and the real-data gate."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(os.environ.get("LEUKODX_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def shared(name: str) -> Path:
    """Path of a real data set; skip (or fail when LEUKODX_REQUIRE_SHARED_DATA=1, as in CI) if absent."""
    p = SHARED / name
    if not p.is_dir():
        if os.environ.get("LEUKODX_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"required real data missing: {p}")
        pytest.skip(f"real data not present at {p} (set LEUKODX_SHARED_DATA)")
    return p


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LEUKODX_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("LEUKODX_SHARED_DATA", str(SHARED))


@pytest.fixture
def one_cell_field():
    """A PBC-like field (200 px): a white cell (lilac cytoplasm r 32, dark nucleus r 14) at the centre,
    two red cells touching it and one apart. Returns the image and the masks of its parts."""
    yy, xx = np.mgrid[:200, :200]

    def disc(cy, cx, r):
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2

    a = np.full((200, 200, 3), (240, 215, 200), np.uint8)  # pale smear background
    touching = disc(100, 152, 22) | disc(45, 70, 22)
    reds = touching | disc(170, 40, 22)
    cell, nucleus = disc(100, 100, 32), disc(100, 100, 14)
    a[reds], a[cell], a[nucleus] = (215, 150, 160), (190, 170, 210), (80, 30, 120)
    return {"image": Image.fromarray(a), "cell": cell, "nucleus": nucleus, "touching": touching, "reds": reds}


def rgb(seed=0, size=32):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def bad_files(tmp_path):
    """A folder mixing good images with every kind of bad or odd file; returns (folder, expected_bad_names)."""
    d = tmp_path / "mixed"
    d.mkdir()
    rgb(1).save(d / "good.jpg")
    rgb(2).save(d / "good2.png")
    rgb(3).convert("L").save(d / "gray.png")
    rgb(4).convert("RGBA").save(d / "rgba.png")
    rgb(5).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((np.random.default_rng(6).integers(0, 65535, (32, 32))).astype(np.uint16)).save(d / "sixteen.png")
    exif = rgb(7, 40).resize((40, 20))
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90
    exif.save(d / "exif.jpg", exif=ex.tobytes())
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.txt").write_text("not an image")
    (d / "fake.jpg").write_text("this is text with a jpg name")
    good = (d / "good.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    # a 10000 x 10000 PNG is tiny on disk but 100 Mpx when decoded
    Image.new("L", (10000, 10000)).save(d / "bomb.png", optimize=True)
    return d, {"empty.jpg", "notes.txt", "fake.jpg", "truncated.jpg", "bomb.png"}
