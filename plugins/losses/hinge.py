"""Hinge GAN loss (Lim & Ye, "Geometric GAN", arXiv:1705.02894; as in SN-GAN, Miyato et al., arXiv:1802.05957, and
SAGAN, Zhang et al., arXiv:1805.08318), the asymmetric form every paper uses (contract 2: it knows the role):

- discriminator: ``mean(relu(margin - D(real))) + mean(relu(margin + D(fake)))``;
- generator: ``-mean(D(fake))``.

With several logit maps (a multi-scale discriminator) each map's terms are averaged over the maps.
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class HingeOptions(zoo.Options):
    """Hinge loss: D hinges at +-margin, G maximises D(fake)."""

    margin: float = Field(1.0, gt=0, le=100, description="D's hinge margin: real logits above +margin and fake "
                                                         "logits below -margin cost D nothing")


def _mean(maps) -> torch.Tensor:
    return torch.stack([m.mean() for m in maps]).mean()


class HingeLoss(nn.Module):
    """loss(ctx) -> D: mean relu(margin - real) + mean relu(margin + fake); G: -mean fake (scalars)."""

    def __init__(self, margin: float):
        super().__init__()
        self.margin = margin

    def forward(self, ctx) -> torch.Tensor:
        if ctx.role == "discriminator":
            return (_mean([torch.relu(self.margin - x) for x in ctx.d_real.logits])
                    + _mean([torch.relu(self.margin + x) for x in ctx.d_fake.logits]))
        return -_mean(ctx.d_fake.logits)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


def build(options: HingeOptions, context: zoo.BuildContext) -> nn.Module:
    return HingeLoss(options.margin)


@zoo.hookimpl
def register_gan_losses(register):
    register("hinge", build, HingeOptions, contract=2, test_options=[{}, {"margin": 0.5}])
