"""Discriminator feature matching (Salimans et al., arXiv:1606.03498; as pix2pixHD's L_FM, Wang et al.,
arXiv:1711.11585, eq. 4): ``mean over feature maps of mean |D_i(real) - D_i(fake)|``, a loss term that trains the
generator. It needs a discriminator that returns ``features`` (contract 2, e.g. ``multiscale``); the real
features are targets (computed without gradient).
"""
import torch
from pydantic import Field
from torch import nn

import zoo


class FeatureMatchingOptions(zoo.Options):
    """L1 between D's intermediate features of real and generated images."""

    layers: int = Field(0, ge=0, le=100, description="use only the last N feature maps (0: all)")


def feature_matching(real_features, fake_features, layers: int = 0) -> torch.Tensor:
    pairs = list(zip(real_features, fake_features))
    if layers:
        pairs = pairs[-layers:]
    return torch.stack([(f.float() - r.detach().float()).abs().mean() for r, f in pairs]).mean()


class FeatureMatching(nn.Module):
    def __init__(self, layers: int):
        super().__init__()
        self.layers = layers

    def forward(self, ctx) -> torch.Tensor:
        real, fake = ctx.d_real.features, ctx.d_fake.features
        if not fake or len(real) != len(fake):
            raise zoo.ZooError("feature_matching needs a discriminator that returns features (contract 2, "
                               "{'logits': [...], 'features': [...]}), e.g. --disc multiscale")
        return feature_matching(real, fake, self.layers)


def build(options: FeatureMatchingOptions, context: zoo.BuildContext) -> nn.Module:
    return FeatureMatching(options.layers)


@zoo.hookimpl
def register_losses(register):
    register("feature_matching", build, FeatureMatchingOptions, trains="generator", test_options=[{}, {"layers": 1}],
             test_partners={"discriminator": {"name": "multiscale", "options": {"ndf": 8, "n_layers": 1,
                                                                                 "n_scales": 2}}})
