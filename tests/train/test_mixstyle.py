"""MixStyle mixes feature statistics between images while training, and nothing else."""
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError
from leukodx.models.registry import create_model
from leukodx.train.mixstyle import MixStyle, mix_style, style_layers


def _stats(x):
    return x.mean(dim=(2, 3)), x.std(dim=(2, 3))


def test_mix_style_keeps_content_and_mixes_statistics():
    torch.manual_seed(0)
    base = torch.randn(1, 4, 8, 8)
    x = torch.cat([base * 1 + 0, base * 5 + 10])  # same content, two styles
    out = mix_style(x, alpha=0.5)
    mu, sig = _stats(x)
    mu_out, _ = _stats(out)
    for i in range(2):
        lo, hi = mu[:, :].min(0).values, mu[:, :].max(0).values
        assert torch.all(mu_out[i] >= lo - 1e-4) and torch.all(mu_out[i] <= hi + 1e-4)
        # the normalised content is unchanged
        z_in = (x[i] - mu[i].view(4, 1, 1)) / sig[i].view(4, 1, 1)
        m_o, s_o = _stats(out[i:i + 1])
        z_out = (out[i] - m_o.view(4, 1, 1)) / s_o.view(4, 1, 1)
        assert torch.allclose(z_in, z_out, atol=1e-3)
    assert not torch.allclose(out, x)  # some style moved (Beta(0.5, 0.5) draws, a random partner)
    assert torch.equal(mix_style(x[:1]), x[:1])  # a batch of one has no partner


def test_hooks_act_only_while_training_and_are_removed():
    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = create_model("resnet18", num_classes=3, pretrained=False)

    torch.manual_seed(0)
    m = Module()
    x = torch.randn(4, 3, 32, 32) * torch.linspace(0.5, 3, 4).view(4, 1, 1, 1)
    m.model.eval()
    plain = m.model(x)
    cb = MixStyle(p=1.0)
    cb.on_fit_start(None, m)
    assert torch.allclose(m.model(x), plain)  # eval mode: untouched
    layers = style_layers(m.model)
    for layer in layers:
        layer.training = True  # the hooked modules only; BatchNorm inside stays in eval mode
    assert not torch.allclose(m.model(x), plain, atol=1e-4)
    cb.on_fit_end(None, m)
    assert torch.allclose(m.model(x), plain)  # hooks gone


def test_mixstyle_config_checks():
    with pytest.raises(ConfigError, match="mixstyle"):
        TrainConfig(mixstyle=1.5)
    with pytest.raises(ConfigError, match="feature_info"):
        style_layers(create_model("classic_cnn", num_classes=3, pretrained=False, img_size=32))
