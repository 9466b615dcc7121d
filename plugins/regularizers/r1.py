"""R1 gradient penalty on real images (Mescheder et al., "Which Training Methods for GANs do actually Converge?",
arXiv:1801.04406): ``gamma / 2 * mean over images of ||grad_x D(x_real)||^2``; a loss term that trains the
discriminator, so it combines with any GAN loss (``losses: [{name: r1}]``).

D runs in fp32 with autocast off for the penalty (exact under bf16/fp16; see zoo.hookspecs) and the graph is kept
(``create_graph=True``) so that D is trained by it. The penalty is applied at every D step (StyleGAN2's lazy
regularisation is not offered: its phase would have to be checkpointed).
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class R1Options(zoo.Options):
    """R1 penalty: gamma/2 * E ||grad D(real)||^2."""

    gamma: float = Field(10.0, ge=0, le=1e4, description="gamma: the penalty is gamma/2 * E||grad_x D(real)||^2")


def r1_penalty(ctx) -> torch.Tensor:
    """mean over images of ||grad_x D(x_real)||^2, D summed over its logit maps' means (fp32)."""
    x = ctx.real_input.float().detach().requires_grad_(True)
    maps = ctx.discriminator_fp32(x).logits
    out = sum(m.flatten(1).mean(1).sum() for m in maps)
    (grad,) = torch.autograd.grad(out, x, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


class R1(nn.Module):
    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, ctx) -> torch.Tensor:
        return self.gamma / 2 * r1_penalty(ctx)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


def build(options: R1Options, context: zoo.BuildContext) -> nn.Module:
    return R1(options.gamma)


@zoo.hookimpl
def register_losses(register):
    register("r1", build, R1Options, trains="discriminator", test_options=[{"gamma": 1.0}])
