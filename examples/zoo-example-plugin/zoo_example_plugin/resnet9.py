"""pix2pix ResNet generator, ``resnet_9blocks`` (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", arXiv:1611.07004): the architecture of Johnson et al., "Perceptual Losses for Real-Time
Style Transfer and Super-Resolution" (arXiv:1603.08155), with residual blocks (He et al., arXiv:1512.03385).

In the notation of the CycleGAN paper's appendix (Zhu et al., arXiv:1703.10593) it is c7s1-64, d128, d256,
9 x R256, u128, u64, c7s1-2, Tanh: a 7x7 conv, two stride-2 downsamplings, residual blocks at a quarter of the
resolution, two stride-2 transposed-conv upsamplings and a 7x7 conv to ab. Convs of size 3 and 7 use reflection
padding, as in pix2pix. Here the input is L (1 channel) and the output ab (2 channels); with the defaults it
has 11.37 M parameters (11,368,770 with instance norm: CycleGAN's 11,378,179 for 3 -> 3 channels, less the
first and last convs' extra channels).

Defaults follow pix2pix's code for ``--netG resnet_9blocks``: batch norm, dropout 0.5 inside each residual
block. It works at any image size that is a multiple of 4 (and at least 8).
"""
from typing import Literal

import torch
from pydantic import Field
from torch import nn

import zoo
from zoo.errors import SpecError

IN_CHANNELS, OUT_CHANNELS = 1, 2


class Resnet9Options(zoo.Options):
    """pix2pix's ResNet generator (resnet_9blocks with the defaults)."""

    ngf: int = Field(64, ge=4, le=256, description="filters of the first conv (c7s1-ngf); the two "
                                                   "downsamplings double it twice, to 4*ngf in the residual blocks")
    n_blocks: int = Field(9, ge=1, le=32, description="residual blocks at 1/4 resolution (pix2pix: 9, or 6 "
                                                      "in resnet_6blocks)")
    norm: Literal["batch", "instance"] = Field("batch", description="normalization after every conv but the "
                                               "last (pix2pix: batch; CycleGAN: instance)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout between the two convs of each residual block "
                                                        "(pix2pix: 0.5; 0 turns it off)")


class ResidualBlock(nn.Module):
    """R<c>: x -> x + [pad, conv3, norm, ReLU, dropout, pad, conv3, norm](x); (B, c, S, S) -> (B, c, S, S)."""

    def __init__(self, channels: int, norm: type[nn.Module], bias: bool, dropout: float):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm(channels), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), norm(channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def build(options: Resnet9Options, context: zoo.BuildContext) -> nn.Module:
    """L (B, 1, H, W) -> ab (B, 2, H, W) in [-1, 1] (Tanh); H and W multiples of 4, at least 8."""
    size = context.image_size
    if size % 4 or size < 8:
        below, above = max(8, size // 4 * 4), size // 4 * 4 + 4
        near = f"{below} or {above}" if below != above else f"{above}"
        raise SpecError(f"resnet9: image size {size} is not a multiple of 4 of at least 8 (two stride-2 "
                        f"downsamplings, then reflection padding): use {near}")
    if options.norm == "batch":
        norm, bias = nn.BatchNorm2d, False  # BatchNorm has its own shift (pix2pix's use_bias)
    else:
        def norm(c):  # pix2pix's instance norm: no affine parameters, no running statistics
            return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)
        bias = True
    ngf = options.ngf
    return nn.Sequential(
        # c7s1-ngf: (B, 1, H, W) -> (B, ngf, H, W)
        nn.ReflectionPad2d(3), nn.Conv2d(IN_CHANNELS, ngf, 7, bias=bias), norm(ngf), nn.ReLU(True),
        # d(2 ngf), d(4 ngf): -> (B, 2 ngf, H/2, W/2) -> (B, 4 ngf, H/4, W/4)
        nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1, bias=bias), norm(2 * ngf), nn.ReLU(True),
        nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1, bias=bias), norm(4 * ngf), nn.ReLU(True),
        # n_blocks x R(4 ngf): (B, 4 ngf, H/4, W/4)
        *(ResidualBlock(4 * ngf, norm, bias, options.dropout) for _ in range(options.n_blocks)),
        # u(2 ngf), u(ngf): -> (B, 2 ngf, H/2, W/2) -> (B, ngf, H, W)
        nn.ConvTranspose2d(4 * ngf, 2 * ngf, 3, stride=2, padding=1, output_padding=1, bias=bias),
        norm(2 * ngf), nn.ReLU(True),
        nn.ConvTranspose2d(2 * ngf, ngf, 3, stride=2, padding=1, output_padding=1, bias=bias),
        norm(ngf), nn.ReLU(True),
        # c7s1-2 and Tanh: -> (B, 2, H, W) in [-1, 1]
        nn.ReflectionPad2d(3), nn.Conv2d(ngf, OUT_CHANNELS, 7), nn.Tanh(),
    )


@zoo.hookimpl
def register_generators(register):
    # The size multiple is declared (the core checks it first and colorize/export use it); the builder's own
    # check adds the minimum of 8 with a hint of its own.
    register("resnet9", build, Resnet9Options, size_multiple=4,
             test_options=[{"ngf": 8, "n_blocks": 2}, {"ngf": 8, "n_blocks": 1, "norm": "instance", "dropout": 0}])
