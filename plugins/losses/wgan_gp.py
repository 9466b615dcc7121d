"""WGAN-GP: the Wasserstein critic loss with a gradient penalty (Gulrajani et al., "Improved Training of
Wasserstein GANs", arXiv:1704.00028), contract 2:

- discriminator (critic): ``mean(D(fake)) - mean(D(real)) + lambda * mean((||grad_x D(x_hat)||_2 - 1)^2)`` with
  ``x_hat = eps * real + (1 - eps) * fake``, ``eps ~ U(0, 1)`` per image (L is shared, so only ab is mixed);
- generator: ``-mean(D(fake))``.

The penalty runs D in fp32 with autocast off (:meth:`zoo.hookspecs.StepContext.discriminator_fp32`) and keeps
its graph (``create_graph=True``) so that D is trained by it. Several logit maps: the critic output is the sum
of each map's mean. The paper's critic has no BatchNorm: pair it with a discriminator without batch norm
(``patch`` with ``norm: instance`` or ``none``).
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class WganGpOptions(zoo.Options):
    """Wasserstein critic loss + gradient penalty."""

    gp_weight: float = Field(10.0, ge=0, le=1000, description="lambda: weight of the gradient penalty (paper: 10)")


def critic(maps) -> torch.Tensor:
    """Per-image critic value: the sum over logit maps of each map's per-image mean -> (B,)."""
    return torch.stack([m.flatten(1).mean(1) for m in maps]).sum(0)


def gradient_penalty(ctx, generator: torch.Generator | None = None) -> torch.Tensor:
    """mean over images of (||grad_x D(x_hat)||_2 - 1)^2 on random interpolates of real and fake (fp32)."""
    real, fake = ctx.real_input.float(), ctx.fake_input.float().detach()
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, generator=generator)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    out = critic(ctx.discriminator_fp32(x_hat).logits)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class WganGpLoss(nn.Module):
    def __init__(self, gp_weight: float):
        super().__init__()
        self.gp_weight = gp_weight

    def forward(self, ctx) -> torch.Tensor:
        if ctx.role == "discriminator":
            wasserstein = critic(ctx.d_fake.logits).mean() - critic(ctx.d_real.logits).mean()
            return wasserstein + self.gp_weight * gradient_penalty(ctx) if self.gp_weight else wasserstein
        return -critic(ctx.d_fake.logits).mean()

    def extra_repr(self) -> str:
        return f"gp_weight={self.gp_weight}"


def build(options: WganGpOptions, context: zoo.BuildContext) -> nn.Module:
    return WganGpLoss(options.gp_weight)


@zoo.hookimpl
def register_gan_losses(register):
    register("wgan_gp", build, WganGpOptions, contract=2, test_options=[{}, {"gp_weight": 1.0}])
