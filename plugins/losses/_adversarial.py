"""Shared pieces of the adversarial losses (not a plugin): label options and the loss module.

GAN objective of Goodfellow et al. (arXiv:1406.2661) as used by pix2pix (Isola et al., arXiv:1611.07004):
the discriminator's logits are compared against a constant real or fake label map.
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class LabelOptions(zoo.Options):
    real_label: float = Field(1.0, ge=0, le=1, description="target for real images (< 1 is one-sided label smoothing)")
    fake_label: float = Field(0.0, ge=0, le=1, description="target for generated images")


class AdversarialLoss(nn.Module):
    """loss(logits, target_is_real) = criterion(logits, label map of logits' shape) -> scalar."""

    def __init__(self, criterion: nn.Module, real_label: float, fake_label: float):
        super().__init__()
        self.criterion = criterion
        self.real_label, self.fake_label = real_label, fake_label

    def forward(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        label = self.real_label if target_is_real else self.fake_label
        return self.criterion(logits, torch.full_like(logits, label))

    def extra_repr(self) -> str:
        return f"real_label={self.real_label}, fake_label={self.fake_label}"
