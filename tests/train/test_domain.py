"""Domain-adversarial training: another lab's unlabelled cells ride along, a reversed gradient aligns the labs."""
import pytest
import torch
from PIL import Image

from leukodx.config import TrainConfig
from leukodx.data.synthetic import generate
from leukodx.errors import ConfigError
from leukodx.evaluate.model_card import write_model_card
from leukodx.models.artifact import ModelBundle
from leukodx.models.registry import create_model
from leukodx.train.domain import UNLABELLED, WithDomainCells, grad_reverse, reversal_scale
from leukodx.train.module import ClassifierModule
from leukodx.train.run import train


def test_grad_reverse_is_identity_forward_and_turns_the_gradient_round():
    x = torch.randn(4, 3, requires_grad=True)
    y = grad_reverse(x, 0.5)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))


def test_reversal_ramps_from_zero_to_nearly_one():
    vals = [reversal_scale(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert vals[0] == 0.0 and vals == sorted(vals) and 0.99 < vals[-1] <= 1.0
    assert reversal_scale(2.0) == vals[-1]


def test_domain_cells_replace_a_share_of_samples_and_carry_no_class():
    base = torch.utils.data.TensorDataset(torch.zeros(400, 3, 4, 4, dtype=torch.uint8), torch.ones(400, dtype=torch.long))
    cells = torch.full((5, 3, 4, 4), 200, dtype=torch.uint8)
    ds = WithDomainCells(base, cells, augment=None, seed=0, share=0.25)
    assert len(ds) == len(base)
    items = [ds[i] for i in range(len(ds))]
    other = [(x, y) for x, y in items if int(y) == UNLABELLED]
    assert 0.18 < len(other) / len(items) < 0.32
    assert all(int(x.min()) == 200 for x, _ in other)  # the other lab's cells, not a training image relabelled
    assert all(int(y) == 1 and int(x.max()) == 0 for x, y in items if int(y) != UNLABELLED)
    with pytest.raises(ValueError, match="no white cells"):
        WithDomainCells(base, cells[:0], None, 0)


class _Trainer:  # half way through a 10-step run: a reversal scale well above zero
    estimated_stepping_batches, global_step = 10, 5


def test_training_step_leaves_the_other_labs_cells_out_of_the_class_loss_and_reverses_the_backbone_gradient():
    torch.manual_seed(0)
    net = create_model("classic_cnn", num_classes=2, pretrained=False, img_size=32)
    module = ClassifierModule(net, 2, (0.5,) * 3, (0.25,) * 3, domain_weight=1.0)
    module.log = lambda *a, **k: None
    module._trainer = _Trainer()
    module.eval()  # no dropout: the separate passes below give the same answers
    x = torch.randint(0, 255, (6, 3, 32, 32), dtype=torch.uint8)
    y = torch.tensor([0, 1, UNLABELLED, 0, UNLABELLED, 1])
    with torch.no_grad():
        logits = module(x[y >= 0])
        ce = torch.nn.functional.cross_entropy(logits, y[y >= 0], weight=module.class_weights)
    loss = module.training_step((x, y), 0)
    _, _, domain = module._domain_step(x, y)
    assert loss.item() == pytest.approx(ce.item() + domain.item(), rel=1e-4)
    loss.backward()
    assert module.domain_head[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    # only the other lab's cells: no class loss, still a domain loss (no NaN)
    module.zero_grad()
    only = module.training_step((x[:2], torch.tensor([UNLABELLED, UNLABELLED])), 0)
    assert torch.isfinite(only) and only.item() > 0


def _voc(root, n=3):
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    for i in range(n):
        img = Image.new("RGB", (80, 80), (230, 200, 210))
        img.paste((90, 40, 140), (30, 30, 50, 50))
        img.save(root / "JPEGImages" / f"f{i}.jpg")
        (root / "Annotations" / f"f{i}.xml").write_text(
            f"<annotation><filename>f{i}.jpg</filename><object><name>WBC</name><bndbox><xmin>25</xmin><ymin>25</ymin>"
            "<xmax>55</xmax><ymax>55</ymax></bndbox></object></annotation>")


def test_a_run_with_domain_cells_logs_the_domain_loss_and_ships_the_plain_model(tmp_path):
    generate(tmp_path / "data", n_per_class=12, size=32, seed=0, per_slide=4)
    _voc(tmp_path / "smears")
    cfg = TrainConfig(data=str(tmp_path / "data" / "manifest.csv"), model="classic_cnn", pretrained=False,
                      image_size=32, max_steps=12, batch_size=8, freeze_epochs=0, use_hashes=False, bootstrap=0,
                      early_stopping_patience=0, augment="robust", domain_cells=str(tmp_path / "smears"),
                      domain_weight=0.5)
    train(cfg, tmp_path / "run", progress=False)
    log = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()
    assert "train_domain_loss" in log[0]
    bundle = ModelBundle.load(tmp_path / "run" / "model.pt")
    assert not any("domain" in k for k in bundle.model.state_dict())
    assert TrainConfig.load(tmp_path / "run" / "config.yaml").domain_weight == 0.5
    card = write_model_card(tmp_path / "run", tmp_path / "card.md", "demo").read_text()
    assert f"domain-adversarial (weight 0.5) against unlabelled white cells of {tmp_path / 'smears'}" in card


def test_domain_loss_needs_a_linear_classifier():
    from leukodx.train.domain import pooled_width

    assert pooled_width(create_model("classic_cnn", num_classes=2, pretrained=False, img_size=32)) > 0
    with pytest.raises(ConfigError, match="linear layer"):
        ClassifierModule(torch.nn.Sequential(torch.nn.Flatten()), 2, (0.5,) * 3, (0.25,) * 3, domain_weight=1.0)


def test_domain_config_needs_both_values():
    with pytest.raises(ConfigError, match="domain_cells"):
        TrainConfig(domain_weight=1.0)
    with pytest.raises(ConfigError, match="domain_cells"):
        TrainConfig(domain_cells="bccd_smears")
    with pytest.raises(ConfigError, match="domain_weight"):
        TrainConfig(domain_cells="bccd_smears", domain_weight=-1)
