"""PixelGAN discriminator: pix2pix's ``--netD pixel`` (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", arXiv:1611.07004, section 4.4: the 1x1 "PixelGAN").

Every logit sees one pixel of the Lab image: 1x1 convs only, so it judges colour statistics, not structure.
pix2pix reports that it makes results more colourful without sharpening them (section 4.4), which is why it
is worth trying for colorization. A (B, 3, H, W) image gives (B, 1, H, W) logits.
"""
from typing import Literal

from pydantic import Field
from torch import nn

import zoo


class PixelOptions(zoo.Options):
    """pix2pix's 1x1 PixelGAN discriminator."""

    ndf: int = Field(64, ge=4, le=1024, description="filters of the first 1x1 conv; the second has 2*ndf")
    norm: Literal["batch", "instance", "none"] = Field("batch", description="normalization after the second "
                                                       "conv (pix2pix: batch)")


def build(options: PixelOptions, context: zoo.BuildContext) -> nn.Module:
    """Lab (B, 3, H, W) -> logits (B, 1, H, W); no activation."""
    ndf = options.ndf
    bias = options.norm != "batch"  # pix2pix's use_bias: BatchNorm has its own shift
    if options.norm == "batch":
        norm: nn.Module = nn.BatchNorm2d(2 * ndf)
    elif options.norm == "instance":
        norm = nn.InstanceNorm2d(2 * ndf, affine=False, track_running_stats=False)
    else:
        norm = nn.Identity()
    return nn.Sequential(
        nn.Conv2d(3, ndf, 1), nn.LeakyReLU(0.2, True),  # (B, ndf, H, W)
        nn.Conv2d(ndf, 2 * ndf, 1, bias=bias), norm, nn.LeakyReLU(0.2, True),  # (B, 2 ndf, H, W)
        nn.Conv2d(2 * ndf, 1, 1, bias=bias),  # (B, 1, H, W)
    )


@zoo.hookimpl
def register_discriminators(register):
    register("pixel", build, PixelOptions, test_options=[{"ndf": 8}, {"ndf": 8, "norm": "none"}])
