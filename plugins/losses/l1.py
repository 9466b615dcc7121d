"""L1 reconstruction loss on ab, pix2pix's pixel term (Isola et al., arXiv:1611.07004, eq. 3)."""
from typing import Literal

from pydantic import Field
from torch import nn

import zoo


class L1Options(zoo.Options):
    reduction: Literal["mean", "sum"] = Field("mean",
                                              description="mean or sum of |fake_ab - real_ab| over all elements")


def build(options: L1Options, context: zoo.BuildContext) -> nn.Module:
    """loss(fake_ab (B, 2, H, W), real_ab (B, 2, H, W)) -> scalar, unweighted (the spec's pixel_weight scales it)."""
    return nn.L1Loss(reduction=options.reduction)


@zoo.hookimpl
def register_pixel_losses(register):
    register("l1", build, L1Options, test_options=[{}, {"reduction": "sum"}])
