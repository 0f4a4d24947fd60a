"""Sharpness-aware minimisation (SAM, Foret et al. 2021): each step takes the gradient at the weights moved
`rho` along their own gradient (the worst nearby point, to first order) and applies it at the original weights,
so training settles in flat minima, which are reported to transfer better to unseen domains (Cha et al. 2021).
Twice the compute per step. Wraps any torch optimiser; Lightning hands `step` the closure it needs."""
from __future__ import annotations

import torch

from leukodx.errors import ConfigError


class SAM(torch.optim.Optimizer):
    """`SAM(base, rho)`: `base` does the update; its param groups (and so learning-rate schedules) are shared."""

    def __init__(self, base: torch.optim.Optimizer, rho: float = 0.05):
        if not rho > 0:
            raise ConfigError(f"SAM's rho must be > 0, got {rho!r}")
        self.base, self.rho = base, rho
        super().__init__(base.param_groups, {})
        self.param_groups, self.state = base.param_groups, base.state  # one set of groups, one state

    def _params(self):
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def step(self, closure=None):
        if closure is None:
            raise ConfigError("SAM needs the loss closure for its second gradient; 16-mixed precision's gradient "
                              "scaler steps without one: use precision 32 or bf16-mixed")
        with torch.enable_grad():
            loss = closure()  # gradient at w
        params = self._params()
        if not params:
            return loss
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = self.rho / (norm + 1e-12)
        moves = [p.grad * scale for p in params]
        torch._foreach_add_(params, moves)  # w + e
        with torch.enable_grad():
            closure()  # gradient at w + e (the closure zeroes the first one)
        torch._foreach_sub_(params, moves)  # back to w
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.base.zero_grad(set_to_none)

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict):
        self.base.load_state_dict(state_dict)
        self.param_groups, self.state = self.base.param_groups, self.base.state
