"""benchmarks/shape_network.py: a made-up cell renders as centred nucleus / cytoplasm / cell masks, and the mask
augmentation keeps them binary and consistent (the nucleus inside the cell, cytoplasm = cell without nucleus)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
shape_network = pytest.importorskip("shape_network")


def _cell(path: Path) -> None:
    """A 160-px field: pink background, a pale blue cell off centre with a dark purple nucleus in it."""
    img = Image.new("RGB", (160, 160), (232, 205, 210))
    d = ImageDraw.Draw(img)
    d.ellipse((70, 40, 130, 100), fill=(190, 180, 215))   # cell, radius 30 at (100, 70)
    d.ellipse((88, 58, 112, 82), fill=(90, 40, 120))      # nucleus, radius 12
    img.save(path)


def test_render_centres_the_cell_and_masks_nucleus_and_cytoplasm(tmp_path):
    _cell(tmp_path / "cell.png")
    m = shape_network.render(str(tmp_path / "cell.png"))
    assert m.shape == (3, 64, 64) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
    nucleus, cytoplasm, cell = (m[i] > 0 for i in range(3))
    ys, xs = np.nonzero(nucleus)
    assert abs(xs.mean() - 31.5) < 2 and abs(ys.mean() - 31.5) < 2  # the nucleus is brought to the centre
    # 2.5 nucleus diameters across 64 px: the nucleus is about 25.6 px across
    assert 0.7 < 2 * np.sqrt(nucleus.sum() / np.pi) / (64 / 2.5) < 1.3
    assert np.array_equal(cell, nucleus | cytoplasm) and not (nucleus & cytoplasm).any()
    assert cytoplasm.sum() > 0.5 * nucleus.sum()  # the pale cell around the nucleus is kept


def test_mask_augment_keeps_masks_binary_and_consistent():
    x = np.zeros((3, 64, 64), np.uint8)
    yy, xx = np.mgrid[:64, :64]
    nucleus, cell = (yy - 30) ** 2 + (xx - 34) ** 2 < 100, (yy - 32) ** 2 + (xx - 32) ** 2 < 400
    x[0], x[1], x[2] = nucleus * 255, (cell & ~nucleus) * 255, (cell | nucleus) * 255
    torch.manual_seed(0)
    aug = shape_network.MaskAugment()
    outs = [aug(torch.from_numpy(x)) for _ in range(20)]
    for o in outs:
        n, c, w = (o[i] > 0 for i in range(3))
        assert set(torch.unique(o).tolist()) <= {0, 255}
        assert torch.equal(w, n | c) and not (n & c).any()
        assert 0.5 < n.sum() / nucleus.sum() < 1.7  # zoom 0.85-1.15 (area x0.72-1.32) and a pixel of erosion / dilation
    assert len({o.numpy().tobytes() for o in outs}) > 15  # the draws differ
    assert torch.equal(shape_network.shown(torch.from_numpy(x), "nucleus")[1], torch.from_numpy(x[0]))


def test_sweep_trains_each_rate_and_picks_the_best_on_val(tmp_path, monkeypatch):
    """Two made-up classes (a small or a large nucleus disc), a few steps at two rates: the rate whose best step
    scores highest on val is the pick, and the results file says so."""
    yy, xx = np.mgrid[:64, :64]

    def disc(r):
        m = ((yy - 32) ** 2 + (xx - 32) ** 2 < r * r).astype(np.uint8) * 255
        return np.stack([m, np.zeros_like(m), m])

    x = torch.from_numpy(np.stack([disc(8), disc(20)] * 16))
    y = np.array([0, 1] * 16)
    monkeypatch.setattr(shape_network, "ROOT", tmp_path)
    (tmp_path / "results").mkdir()
    args = type("A", (), {"sweep": [1e-6, 3e-3], "sweep_steps": 6, "input": "masks"})()
    shape_network.sweep(args, {"train": x, "val": x}, {"train": y, "val": y}, 2, tmp_path / "runs")
    res = json.loads((tmp_path / "results" / "shape_network_sweep.json").read_text())
    accs = {r["lr"]: r["val_accuracy"] for r in res["rows"]}
    assert set(accs) == {1e-6, 3e-3} and all(r["n"] == 32 for r in res["rows"])
    assert res["pick"] == max(accs, key=accs.get)
    assert "| " + str(res["pick"]) + " (pick) |" in (tmp_path / "results" / "shape_network_sweep.md").read_text()
