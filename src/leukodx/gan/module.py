"""GAN training step for Lightning (manual optimisation): BCE for DCGAN / cGAN, Wasserstein loss
with gradient penalty 10 and 5 critic steps per generator step for WGAN-GP. Optional DiffAugment
(Zhao et al., NeurIPS 2020): the same random translation + cutout on every image the discriminator
sees, real and fake, so a small training set is harder to memorise; colour is left alone because it
carries the class."""
from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from leukodx.gan.models import KINDS, build_gan


def diff_augment(x: torch.Tensor) -> torch.Tensor:
    """Differentiable per-image translation (up to 1/8 of the side, zero fill) and cutout (a square of
    half the side set to 0, i.e. mid-grey in [-1, 1])."""
    n, _, h, w = x.shape
    s = max(1, h // 8)
    i, j = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    dy, dx = torch.randint(0, 2 * s + 1, (2, n, 1), device=x.device)
    padded = F.pad(x, (s, s, s, s))
    x = padded[torch.arange(n, device=x.device)[:, None, None], :, (i + dy)[:, :, None], (j + dx)[:, None, :]]
    x = x.permute(0, 3, 1, 2)
    cy, cx = torch.randint(0, h, (n, 1), device=x.device), torch.randint(0, w, (n, 1), device=x.device)
    keep = ~(((i - cy).abs() < h // 4)[:, :, None] & ((j - cx).abs() < w // 4)[:, None, :])
    return x * keep[:, None]


class GANModule(pl.LightningModule):
    def __init__(self, kind: str = "dcgan", size: int = 64, num_classes: int = 4, gp_weight: float = 10.0,
                 critic_steps: int = 5, width: int = 64, diffaugment: bool = False):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.G, self.D = build_gan(kind, size, num_classes, width)
        self.kind, self.spec = kind, KINDS[kind]
        self.cond = self.spec.conditional
        self.fixed_z = torch.randn(4 * num_classes, self.G.latent, generator=torch.Generator().manual_seed(0))
        self.fixed_y = torch.arange(num_classes).repeat_interleave(4)

    def sample(self, n: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [-1, 1]; for conditional GANs `labels` picks the classes."""
        z = torch.randn(n, self.G.latent, device=self.device)
        return self.G(z, labels.to(self.device) if self.cond and labels is not None else None)

    def _d(self, x, y):
        return self.D(diff_augment(x) if self.hparams.diffaugment else x, y if self.cond else None)

    def training_step(self, batch, batch_idx):
        x, y = batch
        x = x.float() / 127.5 - 1
        opt_g, opt_d = self.optimizers()
        z = torch.randn(len(x), self.G.latent, device=self.device)
        fake = self.G(z, y if self.cond else None)
        if self.spec.loss == "wasserstein":
            d_loss = self._d(fake.detach(), y).mean() - self._d(x, y).mean() + self.hparams.gp_weight * self._gp(x, fake, y)
        else:
            real_logit, fake_logit = self._d(x, y), self._d(fake.detach(), y)
            d_loss = F.binary_cross_entropy_with_logits(real_logit, torch.full_like(real_logit, 0.9)) + \
                F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))  # one-sided smoothing
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        self.log("d_loss", d_loss, prog_bar=True, on_epoch=True, on_step=False)
        if self.spec.loss == "wasserstein" and batch_idx % self.hparams.critic_steps:
            return
        logit = self._d(self.G(z, y if self.cond else None), y)
        g_loss = -logit.mean() if self.spec.loss == "wasserstein" else F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        self.log("g_loss", g_loss, prog_bar=True, on_epoch=True, on_step=False)

    def _gp(self, real, fake, y):
        a = torch.rand(len(real), 1, 1, 1, device=self.device)
        mix = (a * real + (1 - a) * fake.detach()).requires_grad_(True)
        grad, = torch.autograd.grad(self._d(mix, y).sum(), mix, create_graph=True)
        return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()

    def configure_optimizers(self):
        s = self.spec
        return [torch.optim.Adam(self.G.parameters(), s.lr_g, betas=s.betas),
                torch.optim.Adam(self.D.parameters(), s.lr_d, betas=s.betas)]
