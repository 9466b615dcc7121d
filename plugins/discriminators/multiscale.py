"""Multi-scale discriminator (Wang et al., pix2pixHD, "High-Resolution Image Synthesis and Semantic Manipulation
with Conditional GANs", arXiv:1711.11585): ``n_scales`` PatchGANs, the k-th on the input downsampled k times by
a 3x3 stride-2 average pool. Contract 2: returns ``{"logits": [one map per scale], "features": [every block's
activations, scale by scale]}``; the features feed the ``feature_matching`` loss term.
"""
from typing import Literal

from pydantic import Field
from torch import nn

import zoo


class MultiscaleOptions(zoo.Options):
    """n PatchGANs on 1x, 1/2x, 1/4x ... inputs."""

    n_scales: int = Field(3, ge=1, le=5, description="number of PatchGANs (pix2pixHD: 3 at 1x, 1/2x, 1/4x)")
    ndf: int = Field(64, ge=4, description="filters in each PatchGAN's first conv; doubled per layer up to 8*ndf")
    n_layers: int = Field(3, ge=1, le=6, description="strided conv blocks per PatchGAN (3: 70x70 receptive field)")
    norm: Literal["batch", "instance", "none"] = Field("instance", description="norm after every conv but the "
                                                       "first and last (pix2pixHD: instance)")


def min_image_size(options: MultiscaleOptions) -> int:
    """The coarsest PatchGAN sees side / 2**(n_scales - 1) and needs 3 * 2**n_layers."""
    return 3 * 2 ** options.n_layers * 2 ** (options.n_scales - 1)


class PatchWithFeatures(nn.Module):
    """One PatchGAN: Lab (B, 3, S, S) -> (logits (B, 1, S/2**n - 2, .), [each block's activations])."""

    def __init__(self, ndf: int, n_layers: int, norm: str):
        super().__init__()
        channels = [ndf * 2 ** min(i, 3) for i in range(n_layers + 1)]

        def block(c_in, c_out, stride):
            if norm == "none":
                return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride, 1), nn.LeakyReLU(0.2))
            Norm = nn.BatchNorm2d if norm == "batch" else nn.InstanceNorm2d
            return nn.Sequential(nn.Conv2d(c_in, c_out, 4, stride, 1, bias=norm == "instance"), Norm(c_out),
                                 nn.LeakyReLU(0.2))

        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(3, channels[0], 4, 2, 1), nn.LeakyReLU(0.2))] + [
            block(channels[i], channels[i + 1], 1 if i == n_layers - 1 else 2) for i in range(n_layers)])
        self.head = nn.Conv2d(channels[n_layers], 1, 4, 1, 1)

    def forward(self, x):
        features = []
        for blk in self.blocks:
            x = blk(x)
            features.append(x)
        return self.head(x), features


class Multiscale(nn.Module):
    def __init__(self, options: MultiscaleOptions):
        super().__init__()
        self.scales = nn.ModuleList([PatchWithFeatures(options.ndf, options.n_layers, options.norm)
                                     for _ in range(options.n_scales)])
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x):
        logits, features = [], []
        for k, net in enumerate(self.scales):
            if k:
                x = self.down(x)
            out, feats = net(x)
            logits.append(out)
            features.extend(feats)
        return {"logits": logits, "features": features}


def build(options: MultiscaleOptions, context: zoo.BuildContext) -> nn.Module:
    return Multiscale(options)


@zoo.hookimpl
def register_discriminators(register):
    register("multiscale", build, MultiscaleOptions, contract=2, min_image_size=min_image_size,
             depth_option="n_layers", test_options=[{"ndf": 8, "n_layers": 1, "n_scales": 2},
                                                    {"ndf": 8, "n_layers": 1, "n_scales": 2, "norm": "batch"}])
