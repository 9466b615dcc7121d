"""Hinge GAN loss (Lim & Ye, "Geometric GAN", arXiv:1705.02894; used by SN-GAN, Miyato et al., arXiv:1802.05957,
and SAGAN, Zhang et al., arXiv:1805.08318).

Discriminator: ``mean(relu(margin - D(real))) + mean(relu(margin + D(fake)))``. The usual generator term is
``-mean(D(fake))``, but zoo's engine calls the loss as ``loss(logits, target_is_real)`` and uses
``target_is_real=True`` both for D's real term and for G's adversarial term: the module sees only logits and
cannot tell the two calls apart. So this loss is the "hinge for both" variant, and says so:

- ``loss(logits, True)  = mean(relu(margin - logits))`` (D on real images, and G on its fakes);
- ``loss(logits, False) = mean(relu(margin + logits))`` (D on fakes).

For G this differs from ``-mean(D(fake))`` only where D already rates a fake above ``margin``: such a logit gives
G no gradient (G is not pushed to fool D further than the margin). With pix2pix's 100 x L1 term the generator's
gradient is dominated by L1 anyway.
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class HingeOptions(zoo.Options):
    """Hinge loss, the same form for D and G (see the module docstring)."""

    margin: float = Field(1.0, gt=0, le=100, description="hinge margin: logits beyond +margin (real) or "
                                                         "-margin (fake) cost nothing")


class HingeLoss(nn.Module):
    """loss(logits (B, 1, h, w), target_is_real) -> mean(relu(margin -/+ logits)), a scalar."""

    def __init__(self, margin: float):
        super().__init__()
        self.margin = margin

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        sign = -1.0 if target_is_real else 1.0
        return torch.relu(self.margin + sign * logits).mean()

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


def build(options: HingeOptions, context: zoo.BuildContext) -> nn.Module:
    return HingeLoss(options.margin)


@zoo.hookimpl
def register_gan_losses(register):
    register("hinge", build, HingeOptions, test_options=[{}, {"margin": 0.5}])
