"""The Fourier amplitude mix keeps each image's shapes (phase) and label, takes another image's spectrum."""
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError
from leukodx.train.amplitude_mix import AmplitudeMix, amplitude_mix


def _pair():
    """A dark square on a light background, and a smooth bright blob elsewhere in other colours."""
    a = torch.full((3, 48, 48), 200.0)
    a[:, 8:20, 30:42] = torch.tensor([60.0, 30.0, 120.0]).view(3, 1, 1)
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    blob = torch.exp(-((yy - 34) ** 2 + (xx - 12) ** 2) / 60)
    b = 40 + blob * torch.tensor([150.0, 210.0, 90.0]).view(3, 1, 1)
    return torch.stack([a, b]).round().to(torch.uint8)


def test_no_mix_is_the_identity():
    x = _pair()
    assert torch.equal(amplitude_mix(x, torch.zeros(2), torch.tensor([1, 0])), x)


def test_full_mix_keeps_the_shape_and_takes_the_partner_spectrum():
    x = _pair()
    out = amplitude_mix(x, torch.ones(2), torch.tensor([1, 0])).float()
    a, b = x.float()
    # the partner is flat at both places, so only the kept phase can put the square back
    assert abs(b[:, 8:20, 30:42].mean() - b[:, 30:42, 30:42].mean()) < 5
    assert abs(out[0][:, 8:20, 30:42].mean() - out[0][:, 30:42, 30:42].mean()) > 20  # the square is still there
    # the mean colour (the spectrum's zero frequency) is now the partner's, not its own
    mean_colour = out[0].mean(dim=(1, 2))
    assert torch.allclose(mean_colour, b.mean(dim=(1, 2)), atol=6)
    assert not torch.allclose(mean_colour, a.mean(dim=(1, 2)), atol=20)
    assert out.min() >= 0 and out.max() <= 255


def test_callback_mixes_images_in_place_and_leaves_labels():
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 16, 16) * 255).to(torch.uint8)
    y = torch.arange(6)
    batch = [x.clone(), y.clone()]
    AmplitudeMix(p=1.0).on_train_batch_start(None, None, batch, 0)
    assert batch[0].dtype == torch.uint8 and batch[0].shape == x.shape
    assert not torch.equal(batch[0], x) and torch.equal(batch[1], y)
    views = [x.clone().view(3, 2, 3, 16, 16), y[:3].clone()]  # two views per image (consistency loss)
    AmplitudeMix(p=1.0).on_train_batch_start(None, None, views, 0)
    assert not torch.equal(views[0], x.view(3, 2, 3, 16, 16))
    one = [x[:1].clone(), y[:1]]  # no partner in a batch of one
    AmplitudeMix(p=1.0).on_train_batch_start(None, None, one, 0)
    assert torch.equal(one[0], x[:1])


def test_amplitude_mix_config_checks():
    with pytest.raises(ConfigError, match="amplitude_mix"):
        TrainConfig(amplitude_mix=1.5)
    with pytest.raises(ConfigError, match="amplitude_mix"):
        AmplitudeMix(p=0.0)
    assert TrainConfig(amplitude_mix=0.5).amplitude_mix == 0.5


def test_training_config_attaches_the_mix(tmp_path):
    from leukodx.train.run import _trainer

    trainer, _ = _trainer(TrainConfig(amplitude_mix=0.5, early_stopping_patience=0), tmp_path, False, False)
    mixes = [c for c in trainer.callbacks if isinstance(c, AmplitudeMix)]
    assert len(mixes) == 1 and mixes[0].p == 0.5
    trainer, _ = _trainer(TrainConfig(early_stopping_patience=0), tmp_path, False, False)
    assert not any(isinstance(c, AmplitudeMix) for c in trainer.callbacks)
