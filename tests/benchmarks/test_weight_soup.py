"""benchmarks/weight_soup.py: the soup is the uniform average of the weights (batch-norm statistics included,
counters not), and networks of different architectures are refused; `--towards-pretrained` mixes the backbone only."""
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
weight_soup = pytest.importorskip("weight_soup")

from leukodx.errors import LeukodxError


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    net[1].running_mean.normal_()
    net[1].num_batches_tracked += seed + 1
    return net


def test_soup_is_the_uniform_average_and_refuses_other_architectures():
    nets = [_net(0), _net(1), _net(2)]
    soup = weight_soup.average([SimpleNamespace(model=n) for n in nets])
    for k in ("0.weight", "0.bias", "1.running_mean", "1.running_var"):
        want = sum(n.state_dict()[k] for n in nets) / 3
        assert torch.allclose(soup[k], want, atol=1e-6)
    assert int(soup["1.num_batches_tracked"]) == 1  # counters are not averaged
    other = SimpleNamespace(model=torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))
    with pytest.raises(LeukodxError, match="same architecture"):
        weight_soup.average([SimpleNamespace(model=nets[0]), other])


class _Clf(torch.nn.Module):
    def __init__(self, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.body, self.head = torch.nn.Linear(3, 4), torch.nn.Linear(4, 2)

    def get_classifier(self):
        return self.head


def test_towards_pretrained_mixes_the_backbone_keeps_the_head_and_checks_the_share(monkeypatch):
    fine, pretrained = _Clf(0), _Clf(1)
    monkeypatch.setattr(weight_soup, "create_model", lambda *a, **k: pretrained)
    bundle = SimpleNamespace(model=fine, arch="x", classes=["a", "b"], model_kwargs={})
    mixed = weight_soup.towards_pretrained(bundle, 0.25)
    want = 0.75 * fine.body.weight + 0.25 * pretrained.body.weight
    assert torch.allclose(mixed["body.weight"], want)
    assert not torch.allclose(mixed["body.weight"], fine.body.weight)
    assert torch.equal(mixed["head.weight"], fine.head.weight) and torch.equal(mixed["head.bias"], fine.head.bias)
    with pytest.raises(LeukodxError, match=r"\[0, 1\]"):
        weight_soup.towards_pretrained(bundle, 1.5)
