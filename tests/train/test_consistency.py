"""The consistency loss: two augmented views of each training image, their answers pulled together."""
import math

import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.data.synthetic import generate
from leukodx.errors import ConfigError
from leukodx.models.artifact import ModelBundle
from leukodx.train.module import ClassifierModule, js_divergence
from leukodx.train.run import train
from leukodx.transforms.augment import TwoViews, build_augment


def test_js_divergence_is_zero_for_agreeing_views_and_log2_for_opposite_certain_ones():
    same = torch.tensor([[[2.0, 0.0, -1.0], [2.0, 0.0, -1.0]]])
    assert js_divergence(same).item() == pytest.approx(0.0, abs=1e-6)
    opposite = torch.tensor([[[50.0, 0.0], [0.0, 50.0]]])
    assert js_divergence(opposite).item() == pytest.approx(math.log(2), abs=1e-4)
    mild = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert 0 < js_divergence(mild).item() < math.log(2)


def test_two_views_are_independent_draws_of_the_augmentation():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8)
    pair = TwoViews(build_augment("robust"))(x)
    assert pair.shape == (2, 3, 32, 32) and pair.dtype == torch.uint8
    assert not torch.equal(pair[0], pair[1])


def test_training_step_adds_the_weighted_divergence_to_both_views_cross_entropy():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    x = torch.randint(0, 255, (4, 2, 3, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 0, 1])
    plain = ClassifierModule(net, 2, (0.5,) * 3, (0.25,) * 3, class_weights=None)
    weighted = ClassifierModule(net, 2, (0.5,) * 3, (0.25,) * 3, consistency=10.0)
    plain.log = weighted.log = lambda *a, **k: None
    logits = plain(x.flatten(0, 1))
    ce = torch.nn.functional.cross_entropy(logits, y.repeat_interleave(2))
    js = js_divergence(logits.view(4, 2, 2))
    assert js.item() > 0  # the two views differ, so their answers do
    assert plain.training_step((x, y), 0).item() == pytest.approx(ce.item(), rel=1e-5)
    assert weighted.training_step((x, y), 0).item() == pytest.approx((ce + 10 * js).item(), rel=1e-5)


def test_a_run_with_consistency_trains_on_pairs_and_ships_a_single_view_model(tmp_path):
    generate(tmp_path / "data", n_per_class=12, size=32, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="classic_cnn", pretrained=False,
                      image_size=32, max_steps=12, batch_size=8, freeze_epochs=0, use_hashes=False, bootstrap=0,
                      early_stopping_patience=0, augment="robust", consistency=5.0)
    train(cfg, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    assert "train_js" in log[0]
    bundle = ModelBundle.load(tmp_path / "run" / "model.pt")
    assert bundle.views == 1 and TrainConfig.load(tmp_path / "run" / "config.yaml").consistency == 5.0
    with pytest.raises(ConfigError, match="consistency"):
        TrainConfig(consistency=-1)
