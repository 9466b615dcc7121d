"""Vanilla GAN loss: binary cross-entropy on logits (Goodfellow et al., arXiv:1406.2661; pix2pix, arXiv:1611.07004)."""
from torch import nn

import zoo
from zoo_plugins.losses._adversarial import AdversarialLoss, LabelOptions


class VanillaOptions(LabelOptions):
    """Targets of the binary cross-entropy."""


def build(options: VanillaOptions, context: zoo.BuildContext) -> nn.Module:
    """loss(logits (B, 1, h, w), target_is_real: bool) -> scalar BCE-with-logits, mean over all logits."""
    return AdversarialLoss(nn.BCEWithLogitsLoss(), options.real_label, options.fake_label)


@zoo.hookimpl
def register_gan_losses(register):
    register("vanilla", build, VanillaOptions, test_options=[{}, {"real_label": 0.9}])
