"""pix2pix U-Net generator (Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
arXiv:1611.07004; U-Net: Ronneberger et al., arXiv:1505.04597).

Maps L (B, 1, H, W) to ab (B, 2, H, W), both in [-1, 1]. Level 0 is the outermost block; each level halves
the image on the way down (Conv k4 s2 p1) and doubles it on the way up (ConvTranspose k4 s2 p1), and every
level but the outermost concatenates its input with its output (the skip). With ``n_down=8, ngf=64`` this is
the 54.41 M-parameter network of pix2pix's ``unet_256`` and of the "Image Colorization Tutorial" seed.
"""
from typing import Literal

import torch
from pydantic import Field
from torch import nn

import zoo

IN_CHANNELS, OUT_CHANNELS = 1, 2
MAX_N_DOWN = 10


class UnetOptions(zoo.Options):
    n_down: int = Field(8, ge=1, le=MAX_N_DOWN,
                        description="number of stride-2 downsamplings; the image size must be divisible by 2**n_down")
    ngf: int = Field(64, ge=4, description="filters in the first conv; doubled per level up to 8*ngf")
    dropout: float = Field(0.5, ge=0, lt=1,
                           description="dropout in the three decoder blocks next to the innermost one (pix2pix)")
    norm: Literal["batch", "instance"] = Field("batch", description="normalization after every inner conv")


class SkipLevel(nn.Module):
    """One inner U-Net level: x -> cat([x, block(x)]) along channels; block is down, [inner level,] up."""

    def __init__(self, *block: nn.Module):
        super().__init__()
        self.block = nn.Sequential(*block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.block(x)], dim=1)


def build(options: UnetOptions, context: zoo.BuildContext) -> nn.Module:
    """L (B, 1, H, W) -> ab (B, 2, H, W) in [-1, 1] (Tanh); H and W divisible by 2**n_down (declared: the core
    checks it before building)."""
    n = options.n_down

    Norm = nn.BatchNorm2d if options.norm == "batch" else nn.InstanceNorm2d
    bias = options.norm == "instance"  # a conv followed by BatchNorm needs no bias (pix2pix's use_bias)
    channels = [options.ngf * 2 ** min(i, 3) for i in range(n)]  # down-conv output channels per level
    dropout_levels = set(range(max(1, n - 4), n - 1))

    def down(c_in, c_out, norm=True):  # (B, c_in, S, S) -> (B, c_out, S/2, S/2)
        layers = [nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=bias)]
        return nn.Sequential(*layers, Norm(c_out)) if norm else nn.Sequential(*layers)

    def up(c_in, c_out, p):  # (B, c_in, S/2, S/2) -> (B, c_out, S, S)
        layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=bias), Norm(c_out)]
        return nn.Sequential(*layers, nn.Dropout(p)) if p else nn.Sequential(*layers)

    # Innermost level: no norm on the way down, so batch 1 at the 1x1 bottleneck trains.
    inner = None
    for level in range(n - 1, 0, -1):  # (B, c_in, S, S) -> (B, 2*c_in, S, S)
        c_in, c_out = channels[level - 1], channels[level]
        p = options.dropout if level in dropout_levels else 0.0
        if inner is None:
            inner = SkipLevel(down(c_in, c_out, norm=False), up(c_out, c_in, p))
        else:
            inner = SkipLevel(down(c_in, c_out), inner, up(2 * c_out, c_in, p))

    ngf = channels[0]
    if inner is None:  # the outermost level is also the innermost: nothing to concatenate
        return nn.Sequential(
            nn.Conv2d(IN_CHANNELS, ngf, 4, stride=2, padding=1, bias=bias),  # (B, ngf, H/2, W/2)
            nn.ReLU(),
            nn.ConvTranspose2d(ngf, OUT_CHANNELS, 4, stride=2, padding=1),  # (B, 2, H, W)
            nn.Tanh(),
        )
    return nn.Sequential(
        nn.Conv2d(IN_CHANNELS, ngf, 4, stride=2, padding=1, bias=bias),  # (B, ngf, H/2, W/2), no norm
        inner,  # (B, 2*ngf, H/2, W/2)
        nn.ReLU(),
        nn.ConvTranspose2d(2 * ngf, OUT_CHANNELS, 4, stride=2, padding=1),  # (B, 2, H, W)
        nn.Tanh(),
    )


@zoo.hookimpl
def register_generators(register):
    register("unet", build, UnetOptions,
             size_multiple=lambda o: 2 ** o.n_down,  # each level halves the image, the skips need exact halves
             depth_option="n_down",
             test_options=[{"n_down": 3, "ngf": 8}, {"n_down": 5, "ngf": 8},  # 5 at 32 px: a 1x1 bottleneck
                           {"n_down": 2, "ngf": 8, "norm": "instance", "dropout": 0}])
