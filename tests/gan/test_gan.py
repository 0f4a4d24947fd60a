"""GANs: architecture rules, the gradient penalty, train / resume / synthesize, synthetic data kept
off the test side, and quality measures that behave (identical sets score as identical)."""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.data.dataset import from_manifest
from leukodx.data.synthetic import generate
from leukodx.errors import ConfigError
from leukodx.gan.models import KINDS, base_side, build_gan
from leukodx.gan.module import GANModule, diff_augment
from leukodx.gan.quality import Lite0Features, memorisation, precision_recall, quality
from leukodx.gan.run import load_generators, synthesize, train_gan
from leukodx.train.data import with_synthetic
from leukodx.train.run import train


def test_generator_layouts_follow_the_thesis():
    assert base_side(64) == (4, 4) and base_side(224) == (7, 5)
    with pytest.raises(ConfigError):
        base_side(100)
    for kind in KINDS:
        g, d = build_gan(kind, 64, 4)
        z = torch.randn(3, g.latent)
        y = torch.tensor([0, 1, 2])
        g.eval()
        x = g(z, y if g.num_classes else None)
        assert x.shape == (3, 3, 64, 64) and x.abs().max() <= 1
        assert d(x, y if d.num_classes else None).shape == (3,)
    assert build_gan("wgan_gp", 64, 4)[0].latent == 500
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build_gan("wgan_gp", 64, 4)[1].modules())
    g, _ = build_gan("cgan", 64, 4)
    g.eval()
    z = torch.randn(1, g.latent).repeat(2, 1)
    a, b = g(z, torch.tensor([0, 3]))
    assert not torch.allclose(a, b)  # the label changes the image


def test_gradient_penalty_measures_distance_from_unit_gradient():
    m = GANModule("wgan_gp", 16, 2)
    real, fake = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)
    w = torch.randn(3 * 16 * 16)

    class Linear(torch.nn.Module):  # a critic whose input gradient has norm `s` everywhere
        def __init__(self, s):
            super().__init__()
            self.s = s

        def forward(self, x, y=None):
            return x.flatten(1) @ (self.s * w / w.norm())

    for scale, expected in ((1.0, 0.0), (2.0, 1.0)):
        m.D = Linear(scale)
        assert float(m._gp(real, fake, None)) == pytest.approx(expected, abs=1e-4)


def test_diffaugment_shifts_and_cuts_out_only():
    torch.manual_seed(0)
    x = torch.rand(6, 3, 32, 32) + 0.5  # no zeros, so every 0 in the output is fill or cutout
    y = diff_augment(x)
    assert y.shape == x.shape
    for a, b in zip(x, y):
        kept = b != 0
        assert 0.5 < kept.float().mean() < 1  # a cutout happened, most of the image is left
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                  if torch.equal(torch.roll(a, (dy, dx), (1, 2))[kept], b[kept])]
        assert shifts  # what is kept is the image moved by at most 1/8 of its side
    z = torch.rand(2, 3, 16, 16, requires_grad=True)
    diff_augment(z).sum().backward()
    assert z.grad.abs().sum() > 0  # differentiable, so the generator learns through it


def _killed_synthesize_leaves_nothing_half_written(gan, out):
    import signal
    import subprocess
    import sys
    import time

    from PIL import Image
    cmd = [sys.executable, "-m", "leukodx.cli", "synthesize", str(gan), "--out", str(out), "--n-per-class", "4000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        if len(list(out.rglob("*_0002*.png"))) > 0:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.csv").exists()  # no manifest mixing two runs' files
    for p in out.rglob("*.png"):
        with Image.open(p) as im:
            im.load()  # every PNG there is whole
    man = synthesize(gan, out, n_per_class=5)
    assert set(from_manifest(man).counts().values()) == {5}


def test_train_resume_synthesize_and_mix(tmp_path):
    idx = generate(tmp_path / "d", n_per_class=16, size=32, seed=3, per_slide=4)
    data = str(tmp_path / "d" / "manifest.csv")
    train_gan(data, "cgan", tmp_path / "gan", size=16, epochs=1, batch_size=16, progress=False)
    train_gan(data, "cgan", tmp_path / "gan", size=16, epochs=2, batch_size=16, progress=False, resume=True)
    assert sorted(p.name for p in (tmp_path / "gan" / "all" / "samples").iterdir()) == ["epoch_000.png", "epoch_001.png"]
    with open(tmp_path / "gan" / "all" / "logs" / "metrics.csv") as f:
        assert sorted({r["epoch"] for r in csv.DictReader(f)}) == ["0", "1"]  # the resume kept epoch 0's log
    train_gan(data, "dcgan", tmp_path / "dc", size=16, epochs=1, batch_size=16, progress=False, width=8)
    assert {p.name for p in (tmp_path / "dc").iterdir()} >= set(idx.classes) | {"environment.json"}  # a generator per class
    _, gens = load_generators(tmp_path / "dc")
    assert set(gens) == set(idx.classes) and gens[idx.classes[0]].net[-2].in_channels == 8  # width is kept
    man = synthesize(tmp_path / "gan", tmp_path / "syn", n_per_class=6)
    syn = from_manifest(man)
    assert all(r.synthetic for r in syn.records) and set(syn.counts().values()) == {6}
    _killed_synthesize_leaves_nothing_half_written(tmp_path / "gan", tmp_path / "syn")

    cfg = TrainConfig(data=data, model="thesis_cnn", pretrained=False, image_size=32, epochs=1, freeze_epochs=0,
                      synthetic=str(man), synthetic_ratio=0.5, use_hashes=False, bootstrap=20, early_stopping_patience=0)
    train(cfg, tmp_path / "run", progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    m = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert m["n"] == sum(1 for s in split["sides"].values() if s == "test")  # real test images only
    assert "cgan_" not in (tmp_path / "run" / "test" / "predictions.csv").read_text()
    real = from_manifest(data)
    mixed = with_synthetic(real, list(range(20)), cfg)  # 0.5 x 20 = 10 -> 2 per class
    assert len(mixed.records) == 28 and sum(r.synthetic for r in mixed.records) == 8
    tstr = with_synthetic(real, list(range(20)), replace(cfg, synthetic_mode="only"))
    assert len(tstr.records) == 20 and all(r.synthetic for r in tstr.records)
    with pytest.raises(ConfigError):
        TrainConfig(synthetic_mode="sometimes")


def test_quality_measures_behave():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8)
    other = np.full((24, 32, 32, 3), 128, np.uint8) + rng.integers(0, 8, (24, 32, 32, 3), dtype=np.uint8)
    f = Lite0Features()
    same = quality(real, real.copy(), f)
    diff = quality(real, other, f)
    assert same["fid_lite0"] < 1e-2 < diff["fid_lite0"] and same["precision"] == same["recall"] == 1.0
    assert diff["ssim_fake_pairs"] > same["ssim_fake_pairs"]  # near-constant images look alike: low diversity
    assert diff["ms_ssim_fake_pairs"] > same["ms_ssim_fake_pairs"]
    assert "NOT InceptionV3" in same["protocol"]
    copies = memorisation(real[:12], real[:12], real[12:], f)
    assert copies["fake_to_train_min"] < 1e-3 and copies["share_fake_closer_than_held_out_p5"] == 1.0
    p, r = precision_recall(torch.randn(50, 4), torch.randn(50, 4) + 100)
    assert p == r == 0.0
