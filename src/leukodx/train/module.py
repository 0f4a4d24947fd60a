"""What one training step does; Lightning does the loop, checkpoints, precision and devices."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC
from torchvision.transforms import v2

from leukodx.train.domain import UNLABELLED, DomainClassifier, grad_reverse, pooled_width, reversal_scale
from leukodx.train.sam import SAM
from leukodx.train.schedule import warmup_cosine
from leukodx.transforms.preprocess import normalize


def js_divergence(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, V, K) of V views per image -> mean Jensen-Shannon divergence of each image's V answers
    from their average (natural log; 0 when the views agree)."""
    logp = logits.float().log_softmax(-1)
    log_mean = (logp.exp().mean(1, keepdim=True)).clamp_min(1e-7).log()
    return (logp.exp() * (logp - log_mean)).sum(-1).mean()


class ClassifierModule(pl.LightningModule):
    """Wraps any registry model. Takes uint8 batches and normalises them (the one `normalize`).
    Schedules: "cosine" = linear warm-up over `warmup_steps`, then cosine to 0 over the run's optimiser
    steps; "plateau" = x`plateau_factor` when the monitored metric stalls; "constant".
    `domain_weight` > 0: rows labelled UNLABELLED are another lab's cells for the domain-adversarial loss
    (leukodx.train.domain) and get no class loss. `mixup_cutmix` > 0: that share of training batches is
    mixed by torchvision's MixUp or CutMix (one of the two, at random), with the labels mixed alike.
    `sam_rho` > 0: the optimiser is wrapped in sharpness-aware minimisation (leukodx.train.sam)."""

    def __init__(self, model: nn.Module, num_classes: int, mean, std, lr: float = 1e-3, weight_decay: float = 1e-4,
                 optimizer: str = "adamw", scheduler: str = "cosine", warmup_steps: int = 0,
                 class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 plateau_factor: float = 0.2, monitor: str = "val_loss", consistency: float = 0.0,
                 domain_weight: float = 0.0, mixup_cutmix: float = 0.0, sam_rho: float = 0.0):
        super().__init__()
        self.model = model
        self.mean, self.std = tuple(mean), tuple(std)
        self.register_buffer("class_weights", class_weights if class_weights is not None else torch.ones(num_classes))
        self.hp = {"lr": lr, "weight_decay": weight_decay, "optimizer": optimizer, "scheduler": scheduler,
                   "warmup_steps": warmup_steps, "label_smoothing": label_smoothing, "plateau_factor": plateau_factor,
                   "monitor": monitor, "consistency": consistency, "domain_weight": domain_weight,
                   "mixup_cutmix": mixup_cutmix, "sam_rho": sam_rho}
        self.mix = (v2.RandomChoice([v2.MixUp(num_classes=num_classes), v2.CutMix(num_classes=num_classes)])
                    if mixup_cutmix > 0 else None)
        self.domain_head = DomainClassifier(pooled_width(model)) if domain_weight > 0 else None
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_auc = MulticlassAUROC(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self._input(x))

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return normalize(x, self.mean, self.std).contiguous(memory_format=torch.channels_last)

    def _domain_step(self, x: torch.Tensor, y: torch.Tensor):
        """Logits of every row, which rows are the other lab's cells, and the domain loss over all rows."""
        pooled = self.model.forward_head(self.model.forward_features(self._input(x)), pre_logits=True)
        logits = self.model.get_classifier()(pooled)
        scale = reversal_scale(self.global_step / max(1, self.trainer.estimated_stepping_batches))
        other = y == UNLABELLED
        d = self.domain_head(grad_reverse(pooled, scale)).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(d.float(), other.float())
        self.log("train_domain_loss", loss, on_step=False, on_epoch=True)
        return logits, other, loss

    def training_step(self, batch, _):
        x, y = batch
        views = x.shape[1] if x.ndim == 5 else 1
        if views > 1:  # image i's views become rows i*views ... i*views + views - 1
            x, y = x.flatten(0, 1), y.repeat_interleave(views)
        if self.domain_head is not None:
            logits, other, domain_loss = self._domain_step(x, y)
        elif self.mix is not None and torch.rand(()) < self.hp["mixup_cutmix"]:
            xm, y = self.mix(self._input(x), y)  # y becomes each row's mixed class probabilities
            logits, other, domain_loss = self.model(xm.contiguous(memory_format=torch.channels_last)), None, None
        else:
            logits, other, domain_loss = self(x), None, None
        js = js_divergence(logits.view(-1, views, logits.shape[1])) if views > 1 else None
        if other is not None:
            logits, y = logits[~other], y[~other]
        if y.ndim == 1 and (y < 0).any():  # a label < 0 (train.data.NO_CLASS) asks for no class: a uniform answer
            k = logits.shape[1]
            y = torch.where((y < 0)[:, None], torch.full_like(logits, 1 / k), F.one_hot(y.clamp(min=0), k).to(logits))
        loss = (F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=self.hp["label_smoothing"])
                if len(y) else logits.sum() * 0)  # a batch of the other lab's cells only
        if js is not None:
            self.log("train_js", js, on_step=False, on_epoch=True)
            loss = loss + self.hp["consistency"] * js
        if domain_loss is not None:
            loss = loss + self.hp["domain_weight"] * domain_loss
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=True, on_epoch=True)
        self.val_acc.update(logits, y)
        self.val_auc.update(logits.softmax(1), y)
        self.log("val_acc", self.val_acc, prog_bar=True, on_epoch=True)
        self.log("val_auc", self.val_auc, on_epoch=True)

    def configure_optimizers(self):
        hp = self.hp
        params = list(self.model.parameters())  # frozen ones too: see train.finetune.TrainHeadFirst
        if self.domain_head is not None:
            params += list(self.domain_head.parameters())
        if hp["optimizer"] == "sgd":
            opt = torch.optim.SGD(params, lr=hp["lr"], momentum=0.9, weight_decay=hp["weight_decay"])
        elif hp["optimizer"] == "adam":
            opt = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        else:
            opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        if hp["sam_rho"]:
            opt = SAM(opt, hp["sam_rho"])
        if hp["scheduler"] == "cosine":
            sched = warmup_cosine(opt, hp["warmup_steps"], self.trainer.estimated_stepping_batches)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if hp["scheduler"] == "plateau":
            mode = "min" if hp["monitor"] == "val_loss" else "max"
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=hp["plateau_factor"], patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": hp["monitor"]}}
        return opt
