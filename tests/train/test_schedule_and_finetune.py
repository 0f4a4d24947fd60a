"""The step budget, warm-up + cosine schedule and the head-first fine-tuning callback do what they say."""
import itertools
import json

import pytest
import torch
from torch import nn

from leukodx.config import TrainConfig
from leukodx.data.synthetic import generate
from leukodx.errors import ConfigError
from leukodx.models.registry import create_model
from leukodx.train.finetune import TrainHeadFirst, pretrained_body
from leukodx.train.run import train
from leukodx.train.schedule import warmup_cosine


def test_warmup_then_cosine_to_zero():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(21):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))  # never rises after warm-up
    assert lrs[12] == pytest.approx(0.05)  # half-way through the decay
    assert lrs[20] == pytest.approx(0.0, abs=1e-12)


def test_head_first_freezes_body_and_its_batchnorm_then_unfreezes():
    class Module(nn.Module):  # what the callback sees: a LightningModule with .model
        def __init__(self):
            super().__init__()
            self.model = create_model("resnet18", num_classes=3, pretrained=False)

    m = Module()
    body = pretrained_body(m.model)
    head = list(m.model.get_classifier().parameters())
    cb = TrainHeadFirst(epochs=2)
    cb.freeze_before_training(m)
    for epoch in (0, 1):
        cb.finetune_function(m, epoch, None)
        assert not any(p.requires_grad for part in body for p in part.parameters())
        assert all(p.requires_grad for p in head)
        assert not any(x.training for part in body for x in part.modules() if isinstance(x, nn.BatchNorm2d))
    cb.finetune_function(m, 2, None)
    assert all(p.requires_grad for p in m.model.parameters())
    assert all(x.training for x in m.model.modules() if isinstance(x, nn.BatchNorm2d))


def test_frozen_layers_stay_pretrained_after_the_body_unfreezes():
    class Module(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = create_model("resnet18", num_classes=3, pretrained=False)

    m = Module()
    cb = TrainHeadFirst(epochs=1, keep_frozen=("conv1", "bn1", "layer1"))
    cb.freeze_before_training(m)
    for epoch in (0, 1, 2):
        cb.finetune_function(m, epoch, None)
    kept = [m.model.conv1, m.model.bn1, m.model.layer1]
    assert not any(p.requires_grad for part in kept for p in part.parameters())
    assert not any(x.training for part in kept for x in part.modules() if isinstance(x, nn.BatchNorm2d))
    assert all(p.requires_grad for p in m.model.layer2.parameters())  # the rest of the body learns again
    assert m.model.layer2[0].bn1.training
    before = m.model.bn1.running_mean.clone()
    m.model(torch.randn(4, 3, 32, 32) * 5 + 3)  # a training-mode forward moves only the learning layers' statistics
    assert torch.equal(m.model.bn1.running_mean, before)
    with pytest.raises(ConfigError, match="'layer9' not in this model"):
        TrainHeadFirst(epochs=0, keep_frozen=("layer9",)).freeze_before_training(m)


def test_frozen_layers_config_checks():
    with pytest.raises(ConfigError, match="frozen_layers"):
        TrainConfig(frozen_layers="blocks.0")
    with pytest.raises(ConfigError, match="pretrained"):
        TrainConfig(frozen_layers=["blocks.0"], pretrained=False)


def test_step_budget_run(tmp_path):
    generate(tmp_path / "data", n_per_class=12, size=32, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="classic_cnn", pretrained=False,
                      image_size=32, max_steps=20, warmup_steps=5, batch_size=8, freeze_epochs=0, use_hashes=False,
                      bootstrap=0, early_stopping_patience=0, monitor="val_acc")
    train(cfg, tmp_path / "run", progress=False)
    m = json.loads((tmp_path / "run" / "test" / "metrics.json").read_text())
    assert m["steps_run"] == 20
    vals = (tmp_path / "run" / "logs" / "metrics.csv").read_text().count("\n")
    assert vals >= 10  # validated every max_steps / 10 steps (one header line besides)


def test_step_budget_config_checks():
    with pytest.raises(ConfigError, match="warmup_steps"):
        TrainConfig(max_steps=10, warmup_steps=10)
    with pytest.raises(ConfigError, match="plateau"):
        TrainConfig(max_steps=100, scheduler="plateau")


def test_weight_average_is_what_gets_validated_and_shipped_and_views_reach_the_model_file(tmp_path):
    from leukodx.models.artifact import ModelBundle

    generate(tmp_path / "data", n_per_class=12, size=32, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="classic_cnn", pretrained=False,
                      image_size=32, max_steps=20, batch_size=8, freeze_epochs=0, use_hashes=False, bootstrap=0,
                      early_stopping_patience=0, monitor="val_acc", ema_decay=0.9, tta_views=2)
    train(cfg, tmp_path / "run", progress=False)
    best = next((tmp_path / "run" / "checkpoints").glob("best*.ckpt"))
    ck = torch.load(best, map_location="cpu", weights_only=True)
    assert "current_model_state" in ck  # the raw weights are kept aside; state_dict holds the average
    raw, avg = ck["current_model_state"], ck["state_dict"]
    moved = [k for k in avg if torch.is_floating_point(avg[k]) and not torch.allclose(avg[k], raw[k])]
    assert moved, "the average should differ from the last raw weights"
    bundle = ModelBundle.load(tmp_path / "run" / "model.pt")
    shipped = bundle.model.state_dict()
    assert all(torch.allclose(shipped[k.removeprefix("model.")], v) for k, v in avg.items() if k.startswith("model."))
    assert bundle.views == 2
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_probe_init_sets_the_classifier_to_a_fitted_probe():
    from leukodx.train.finetune import probe_init

    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, pretrained=False).eval()
    images = torch.zeros((60, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(60) % 3
    for c in range(3):  # each class a different flat colour: separable by any pooled features
        images[labels == c, c] = 200
    labels = labels.numpy()
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    from leukodx.models.inference import logits_for
    before = (logits_for(model, images, mean, std).argmax(1) == labels).mean()
    acc = probe_init(model, images, labels, mean, std)
    after = (logits_for(model, images, mean, std).argmax(1) == labels).mean()
    assert acc == 1.0 and after == 1.0 and before < 1.0
    two = create_model("resnet18", num_classes=2, pretrained=False)  # sklearn's one-row binary probe
    assert probe_init(two, images[labels < 2], labels[labels < 2], mean, std) == 1.0
    assert (logits_for(two, images[labels < 2], mean, std).argmax(1) == labels[labels < 2]).all()
    with pytest.raises(ConfigError, match="pretrained"):
        TrainConfig(probe_init=1.0, pretrained=False)


def test_a_misspelt_frozen_layer_fails_before_training(tmp_path):
    generate(tmp_path / "data", n_per_class=12, size=32, seed=0, per_slide=4)
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="efficientnet_lite0", pretrained=True,
                      image_size=32, frozen_layers=["blocks.9"], use_hashes=False, bootstrap=0)
    with pytest.raises(ConfigError, match="'blocks.9' not in this model"):
        train(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
