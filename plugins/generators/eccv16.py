"""Classification colorizer after Zhang, Isola & Efros, "Colorful Image Colorization" (ECCV 2016, arXiv:1603.08511),
at zoo's scale: a conv net predicts, at 1/4 of the image side, a distribution over the in-gamut ab bins; its
annealed mean (T = 0.38) is the colour. Contract 2: in train mode it returns ``{"ab": decoded ab, "logits": bin
logits}`` (the classification loss ``eccv16_ce`` reads the logits); in eval mode ab alone, so inference, ``zoo
colorize``, ``zoo export`` and the evaluation use it like every other generator.

The bins are computed, not copied: the ab plane is quantised on a grid of ``grid`` (10 in the paper) and a bin is
kept when some sRGB colour (an RGB cube sampled at 48 levels per channel, any L) falls in its cell. With skimage's
Lab constants this gives about 260 bins at grid 10; the paper reports 313 (its gamut test is not specified beyond
"in-gamut"; see tests/test_eccv16.py for what ours guarantees: every bin holds sRGB colours and every sRGB colour
is within half a cell of a bin).

Architecture (much smaller than the paper's VGG-style 8 blocks): conv blocks at 1, 1/2, 1/4 resolution, ``n_blocks``
dilated 3x3 blocks at 1/4, a 1x1 conv to the bin logits; the decoded ab is upsampled bilinearly to the input size.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import zoo

AB_SCALE = 110.0


@functools.lru_cache(maxsize=4)
def ab_bins(grid: int = 10, levels: int = 48) -> torch.Tensor:
    """(Q, 2) in-gamut ab bin centres in Lab units (multiples of ``grid``), sorted by a then b."""
    from zoo.lab import rgb_to_lab

    g = torch.linspace(0, 1, levels, dtype=torch.float64)
    rgb = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), 0).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (levels**3, 2)
    cells = torch.unique(torch.round(ab / grid), dim=0)
    return (cells * grid).float()


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, T: float) -> torch.Tensor:
    """Zhang et al.'s H(Z) = E[f_T(Z)]: softmax(log p / T) = softmax(logits / T) (up to normalisation), then the mean
    bin: (B, Q, h, w) logits -> (B, 2, h, w) ab in Lab units. T = 1: the mean; T -> 0: the mode."""
    weights = torch.softmax(logits.float() / T, dim=1)
    return torch.einsum("bqhw,qc->bchw", weights, bins.to(weights))


class Eccv16Options(zoo.Options):
    """Zhang et al. 2016 classification colorizer (small)."""

    ngf: int = Field(32, ge=4, le=512, description="filters of the first block; doubled at 1/2 and 1/4 resolution")
    n_blocks: int = Field(2, ge=0, le=8, description="dilated 3x3 conv blocks at 1/4 resolution")
    grid: int = Field(10, ge=5, le=40, description="ab quantisation step in Lab units (paper: 10)")
    temperature: float = Field(0.38, gt=0, le=1, description="annealed-mean temperature T (paper: 0.38; 1: mean)")


class Eccv16(nn.Module):
    def __init__(self, options: Eccv16Options):
        super().__init__()
        c = options.ngf
        self.register_buffer("bins", ab_bins(options.grid), persistent=False)
        self.temperature = options.temperature

        def conv(c_in, c_out, stride=1, dilation=1):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation), nn.BatchNorm2d(c_out),
                                 nn.ReLU(True))

        self.body = nn.Sequential(
            conv(1, c), conv(c, 2 * c, stride=2),  # (B, 2c, H/2, W/2)
            conv(2 * c, 4 * c, stride=2),  # (B, 4c, H/4, W/4)
            *(conv(4 * c, 4 * c, dilation=2) for _ in range(options.n_blocks)),
        )
        self.head = nn.Conv2d(4 * c, len(self.bins), 1)  # (B, Q, H/4, W/4) bin logits

    def decode(self, logits: torch.Tensor, size) -> torch.Tensor:
        """bin logits -> ab (B, 2, H, W) in [-1, 1]: annealed mean, scaled /110, upsampled."""
        ab = annealed_mean(logits, self.bins, self.temperature) / AB_SCALE
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False).clamp(-1, 1)

    def forward(self, L: torch.Tensor):
        logits = self.head(self.body(L))
        ab = self.decode(logits, L.shape[-2:])
        return {"ab": ab, "logits": logits} if self.training else ab


def build(options: Eccv16Options, context: zoo.BuildContext) -> nn.Module:
    return Eccv16(options)


@zoo.hookimpl
def register_generators(register):
    register("eccv16", build, Eccv16Options, contract=2, size_multiple=4,
             test_options=[{"ngf": 8, "n_blocks": 1}, {"ngf": 8, "n_blocks": 0, "temperature": 1.0}])
