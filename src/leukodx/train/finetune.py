"""Train the new layers first, then the whole network (Lightning's BaseFinetuning)."""
from __future__ import annotations

from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn


def pretrained_body(model: nn.Module) -> list[nn.Module]:
    """The parts that came pretrained: `model.pretrained_modules()` when the model says (fusion
    networks), else every child except the one holding the classifier."""
    if hasattr(model, "pretrained_modules"):
        return list(model.pretrained_modules())
    if hasattr(model, "get_classifier"):
        head = {id(p) for p in model.get_classifier().parameters()}
        return [m for m in model.children() if not any(id(p) in head for p in m.parameters())]
    return []


def _batchnorm_eval(modules: list[nn.Module], frozen: bool) -> None:
    # a frozen body keeps its pretrained BatchNorm statistics (Lightning restores per-module modes
    # after validation, so this holds through the frozen epochs)
    for part in modules:
        for m in part.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(not frozen)


class TrainHeadFirst(BaseFinetuning):
    """For the first `epochs` epochs only new layers learn; the body's weights and BatchNorm
    statistics stay as pretrained. From epoch `epochs` on everything learns.

    The optimiser holds every parameter from the start (frozen ones get no gradient, so Adam / SGD
    leave them alone) so that one learning-rate schedule covers all of them; hence `make_trainable`
    rather than a new parameter group."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def freeze_before_training(self, pl_module) -> None:
        if self.epochs > 0:
            self.freeze(pretrained_body(pl_module.model), train_bn=False)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        body = pretrained_body(pl_module.model)
        if epoch < self.epochs:
            _batchnorm_eval(body, frozen=True)
        elif self.epochs > 0:  # every later epoch, so a resumed run unfreezes too
            self.make_trainable(body)
            _batchnorm_eval(body, frozen=False)
