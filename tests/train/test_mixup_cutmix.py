"""MixUp / CutMix: a share of training batches mixed, labels mixed alike, the loss against the mixed labels."""
import pytest
import torch
import torch.nn.functional as F

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError
from leukodx.train.module import ClassifierModule


class Spy(torch.nn.Module):
    """A linear classifier that remembers its last input."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
        self.seen = None

    def forward(self, x):
        self.seen = x
        return self.fc(x)


def _step(share):
    """A module mixing this share of batches, after one training step on a fixed batch: (module, x, y, loss)."""
    torch.manual_seed(0)
    x = torch.randint(0, 255, (6, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    m = ClassifierModule(Spy(), 3, (0.5,) * 3, (0.25,) * 3, mixup_cutmix=share)
    m.log = lambda *a, **k: None
    return m, x, y, m.training_step((x, y), 0)


def test_mixed_batches_train_on_mixed_images_against_mixed_labels():
    m, x, y, loss = _step(1.0)
    plain_input = m._input(x)
    assert not torch.allclose(m.model.seen, plain_input)  # the network saw a mixed batch
    logits = m.model.fc(m.model.seen)
    hard = F.cross_entropy(logits, y)
    assert torch.isfinite(loss) and not torch.isclose(loss, hard)  # the loss is not against the hard labels
    # rows of the mixed batch are combinations of two images: each pixel lies between the batch's extremes
    assert m.model.seen.min() >= plain_input.min() - 1e-5 and m.model.seen.max() <= plain_input.max() + 1e-5


def test_no_mixing_when_the_share_is_zero():
    m, x, y, loss = _step(0.0)
    assert m.mix is None and torch.allclose(m.model.seen, m._input(x))
    assert torch.isclose(loss, F.cross_entropy(m.model.fc(m.model.seen), y))


def test_mixup_cutmix_config_checks():
    with pytest.raises(ConfigError, match="mixup_cutmix"):
        TrainConfig(mixup_cutmix=1.5)
    with pytest.raises(ConfigError, match="mixup_cutmix"):
        TrainConfig(mixup_cutmix=0.5, consistency=12.0)
    with pytest.raises(ConfigError, match="mixup_cutmix"):
        TrainConfig(mixup_cutmix=0.5, paint_out_cells=0.25)
    assert TrainConfig(mixup_cutmix=0.5).mixup_cutmix == 0.5
