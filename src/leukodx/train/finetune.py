"""How fine-tuning starts and what it may change: the new layers learn first, then the whole network but the layers
kept frozen (Lightning's BaseFinetuning); optionally the classifier starts from a linear probe (LP-FT)."""
from __future__ import annotations

import numpy as np
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from leukodx.errors import ConfigError


def pretrained_body(model: nn.Module) -> list[nn.Module]:
    """The parts that came pretrained: `model.pretrained_modules()` when the model says (fusion
    networks), else every child except the one holding the classifier."""
    if hasattr(model, "pretrained_modules"):
        return list(model.pretrained_modules())
    if hasattr(model, "get_classifier"):
        head = {id(p) for p in model.get_classifier().parameters()}
        return [m for m in model.children() if not any(id(p) in head for p in m.parameters())]
    return []


def named_layers(model: nn.Module, names: list[str]) -> list[nn.Module]:
    """The modules `names` (as model.named_modules() spells them, e.g. conv_stem, blocks.0); a clear error for
    a name the model does not have."""
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules or not n]
    if missing:
        top = ", ".join(n for n, _ in model.named_children())
        raise ConfigError(f"config 'frozen_layers': {', '.join(map(repr, missing))} not in this model "
                          f"(its top-level layers: {top})")
    return [modules[n] for n in names]


def probe_init(model: nn.Module, images: torch.Tensor, labels: np.ndarray, mean, std, c: float = 1.0) -> float:
    """LP-FT's first step (Kumar et al. 2022): the classifier becomes a logistic regression (sklearn, class-balanced,
    inverse L2 strength `c`) fitted on the pretrained network's pooled features of `images` (uint8, as preprocessed, not augmented), so
    fine-tuning starts from a converged head rather than a random one. Returns the probe's training accuracy."""
    from sklearn.linear_model import LogisticRegression

    from leukodx.models.inference import logits_for
    from leukodx.models.registry import linear_classifier

    head = linear_classifier(model)
    if head is None:
        raise ConfigError("config 'probe_init' needs a model whose classifier is one linear layer")
    x = logits_for(model, images, mean, std, pre_logits=True)
    probe = LogisticRegression(C=c, max_iter=1000, class_weight="balanced").fit(x, labels)
    w, b = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2:  # sklearn keeps one row for two classes: the same softmax from two halves
        w, b = np.concatenate([-w, w]) / 2, np.concatenate([-b, b]) / 2
    rows = torch.as_tensor(probe.classes_)  # a class without training images keeps its row
    with torch.no_grad():
        head.weight[rows] = torch.as_tensor(w, dtype=head.weight.dtype, device=head.weight.device)
        head.bias[rows] = torch.as_tensor(b, dtype=head.bias.dtype, device=head.bias.device)
    model.train()
    return float(probe.score(x, labels))


def _batchnorm_eval(modules: list[nn.Module], frozen: bool) -> None:
    # a frozen body keeps its pretrained BatchNorm statistics (Lightning restores per-module modes
    # after validation, so this holds through the frozen epochs)
    for part in modules:
        for m in part.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(not frozen)


class TrainHeadFirst(BaseFinetuning):
    """For the first `epochs` epochs only new layers learn; the body's weights and BatchNorm
    statistics stay as pretrained. From epoch `epochs` on everything learns but the layers named in
    `keep_frozen`, which stay as pretrained for the whole run.

    The optimiser holds every parameter from the start (frozen ones get no gradient, so Adam / SGD
    leave them alone) so that one learning-rate schedule covers all of them; hence `make_trainable`
    rather than a new parameter group."""

    def __init__(self, epochs: int, keep_frozen: tuple[str, ...] = ()):
        super().__init__()
        self.epochs = epochs
        self.keep_frozen = tuple(keep_frozen)

    def freeze_before_training(self, pl_module) -> None:
        if self.epochs > 0:
            self.freeze(pretrained_body(pl_module.model), train_bn=False)
        self.freeze(named_layers(pl_module.model, list(self.keep_frozen)), train_bn=False)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        body = pretrained_body(pl_module.model)
        if epoch < self.epochs:
            _batchnorm_eval(body, frozen=True)
        elif self.epochs > 0:  # every later epoch, so a resumed run unfreezes too
            self.make_trainable(body)
            _batchnorm_eval(body, frozen=False)
        kept = named_layers(pl_module.model, list(self.keep_frozen))
        self.freeze(kept, train_bn=False)
        _batchnorm_eval(kept, frozen=True)
