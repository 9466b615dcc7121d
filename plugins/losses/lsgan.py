"""Least-squares GAN loss: mean squared error on logits (Mao et al., LSGAN, arXiv:1611.04076)."""
from torch import nn

import zoo
from zoo_plugins.losses._adversarial import AdversarialLoss, LabelOptions


class LsganOptions(LabelOptions):
    """Targets of the least-squares loss."""


def build(options: LsganOptions, context: zoo.BuildContext) -> nn.Module:
    """loss(logits (B, 1, h, w), target_is_real: bool) -> scalar MSE against the label, mean over all logits."""
    return AdversarialLoss(nn.MSELoss(), options.real_label, options.fake_label)


@zoo.hookimpl
def register_gan_losses(register):
    register("lsgan", build, LsganOptions, test_options=[{}, {"real_label": 0.9, "fake_label": 0.1}])
