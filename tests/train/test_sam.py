"""Sharpness-aware minimisation: the update uses the gradient at the perturbed weights, applied at the original ones."""
import lightning.pytorch as pl
import pytest
import torch

from leukodx.config import TrainConfig
from leukodx.errors import ConfigError
from leukodx.train.module import ClassifierModule
from leukodx.train.sam import SAM


def _problem():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    a = torch.randn(5)
    return w, lambda v: (v * a).sin().sum() + (v ** 2).sum()  # not linear: the two gradients differ


def test_step_applies_the_gradient_at_the_perturbed_weights():
    w, f = _problem()
    w0, rho, lr = w.detach().clone(), 0.3, 0.1
    v = w0.clone().requires_grad_()
    (g,) = torch.autograd.grad(f(v), v)
    v2 = (w0 + rho * g / g.norm()).requires_grad_()
    (g2,) = torch.autograd.grad(f(v2), v2)

    opt = SAM(torch.optim.SGD([w], lr=lr), rho=rho)
    calls = []

    def closure():
        opt.zero_grad()
        loss = f(w)
        loss.backward()
        calls.append(loss.item())
        return loss

    loss = opt.step(closure)
    assert len(calls) == 2 and loss.item() == pytest.approx(f(w0).item())  # the loss at w is returned
    assert torch.allclose(w.detach(), w0 - lr * g2, atol=1e-6)  # SAM's update
    assert not torch.allclose(w.detach(), w0 - lr * g, atol=1e-4)  # not plain SGD's


def test_without_a_closure_it_says_why():
    w, _ = _problem()
    with pytest.raises(ConfigError, match="closure"):
        SAM(torch.optim.SGD([w], lr=0.1)).step()
    with pytest.raises(ConfigError, match="rho"):
        SAM(torch.optim.SGD([w], lr=0.1), rho=0.0)


def test_schedules_and_state_reach_the_base_optimiser():
    w, f = _problem()
    base = torch.optim.AdamW([w], lr=0.1)
    opt = SAM(base, rho=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    assert base.param_groups[0]["lr"] == pytest.approx(0.05)

    def closure():
        opt.zero_grad()
        loss = f(w)
        loss.backward()
        return loss

    opt.step(closure)
    sched.step()
    state = opt.state_dict()
    assert state["state"][0]["step"] == 1  # AdamW's own state, saved through the wrapper
    fresh = SAM(torch.optim.AdamW([w], lr=0.1))
    fresh.load_state_dict(state)
    assert fresh.state[w]["exp_avg"].equal(base.state[w]["exp_avg"])


def test_config_checks():
    assert TrainConfig(sam_rho=0.05).sam_rho == 0.05
    with pytest.raises(ConfigError, match="sam_rho"):
        TrainConfig(sam_rho=-0.1)
    with pytest.raises(ConfigError, match="16-mixed"):
        TrainConfig(sam_rho=0.05, precision="16-mixed")


def test_lightning_runs_two_passes_per_optimiser_step():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    module = ClassifierModule(net, 3, (0.5,) * 3, (0.25,) * 3, sam_rho=0.05, scheduler="constant")
    passes = []
    step = module.training_step
    module.training_step = lambda *a: passes.append(1) or step(*a)
    x = torch.randint(0, 255, (12, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(12) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    before = net[1].weight.detach().clone()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader)
    assert isinstance(trainer.optimizers[0], SAM)
    assert trainer.global_step == 3 and len(passes) == 6
    assert not torch.allclose(net[1].weight, before)
