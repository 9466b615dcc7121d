"""L1 in sRGB: ``mean |sRGB(L, fake ab) - sRGB(L, real ab)|`` (contract 2: it needs L). Lab -> sRGB is
:func:`zoo.lab.lab_to_rgb`, differentiable torch with skimage's constants (clipped to [0, 1] like
``skimage.color.lab2rgb``, so a colour outside sRGB gives no gradient past the clip). Computed in fp32 with
autocast off: the sRGB gamma curve is steep near black.
"""
import torch
from pydantic import Field
from torch import nn

import zoo
from zoo.lab import denormalize_lab, lab_to_rgb


class RgbL1Options(zoo.Options):
    """L1 between the sRGB images of (L, fake ab) and (L, real ab)."""

    scale: float = Field(1.0, gt=0, le=1000, description="multiplies the loss (sRGB in [0, 1]; ab L1 is about 0.1 "
                                                         "at the start, sRGB L1 about 0.05)")


class RgbL1(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, ctx) -> torch.Tensor:
        with torch.autocast(device_type=ctx.L.device.type, enabled=False):
            L = ctx.L.float()
            fake = lab_to_rgb(denormalize_lab(L, ctx.fake_ab.float()))
            real = lab_to_rgb(denormalize_lab(L, ctx.real_ab.float()))
            return self.scale * (fake - real).abs().mean()


def build(options: RgbL1Options, context: zoo.BuildContext) -> nn.Module:
    return RgbL1(options.scale)


@zoo.hookimpl
def register_pixel_losses(register):
    register("rgb_l1", build, RgbL1Options, contract=2, test_options=[{}])
