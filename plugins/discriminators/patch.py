"""PatchGAN discriminator (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
arXiv:1611.07004).

Classifies overlapping patches as real or fake. With the defaults (``n_layers=3``) each logit sees a 70x70
patch of the input, and a 256x256 Lab image gives a 30x30 grid of logits (2.77 M parameters, as pix2pix's
``basic`` discriminator and the "Image Colorization Tutorial" seed).
"""
from typing import Literal

from pydantic import Field
from torch import nn

import zoo


class PatchOptions(zoo.Options):
    ndf: int = Field(64, ge=4, description="filters in the first conv; doubled per layer up to 8*ndf")
    n_layers: int = Field(3, ge=1, le=6, description="normalized conv blocks; 3 gives a 70x70 receptive field")
    norm: Literal["batch", "instance", "none"] = Field("batch",
                                                       description="norm after every conv but the first and last")


def output_size(image_size: int, n_layers: int) -> int:
    """Side of the logit grid: n_layers stride-2 k4 p1 convs halve it, the two stride-1 ones take 1 each."""
    return image_size // 2 ** n_layers - 2


def min_image_size(options: PatchOptions) -> int:
    """The smallest side giving a logit grid of at least 1x1 (output_size >= 1)."""
    return 3 * 2 ** options.n_layers


def build(options: PatchOptions, context: zoo.BuildContext) -> nn.Module:
    """Lab (B, 3, H, W) -> logits (B, 1, H/2**n_layers - 2, W/2**n_layers - 2); no activation. H, W >= 3*2**n_layers
    (declared: the core checks it before building)."""
    n = options.n_layers

    def block(c_in, c_out, stride):  # (B, c_in, S, S) -> (B, c_out, S/2, S/2) or (B, c_out, S-1, S-1)
        if options.norm == "none":
            return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride, 1), nn.LeakyReLU(0.2))
        Norm = nn.BatchNorm2d if options.norm == "batch" else nn.InstanceNorm2d
        bias = options.norm == "instance"  # BatchNorm has its own shift
        return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride, 1, bias=bias), Norm(c_out), nn.LeakyReLU(0.2))

    channels = [options.ndf * 2 ** min(i, 3) for i in range(n + 1)]
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(3, channels[0], 4, 2, 1), nn.LeakyReLU(0.2)),  # (B, ndf, H/2, W/2)
        *(block(channels[i], channels[i + 1], 1 if i == n - 1 else 2) for i in range(n)),  # ..., (B, c, H/2**n - 1, .)
        nn.Conv2d(channels[n], 1, 4, 1, 1),  # (B, 1, H/2**n - 2, W/2**n - 2)
    )


@zoo.hookimpl
def register_discriminators(register):
    register("patch", build, PatchOptions, min_image_size=min_image_size, depth_option="n_layers",
             test_options=[{"ndf": 8, "n_layers": 2}, {"ndf": 8, "n_layers": 2, "norm": "instance"}])
