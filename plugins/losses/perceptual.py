"""Perceptual loss (Johnson et al., "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
arXiv:1603.08155): L1 between VGG16 (Simonyan & Zisserman, arXiv:1409.1556; torchvision) features of the sRGB
images of (L, fake ab) and (L, real ab), contract 2 (it needs L). The VGG is frozen and never trained.

``pretrained`` (ImageNet weights, the point of the loss) needs the weights cached or the internet; offline it fails
with one line, as ``resnet18_unet`` does. ``pretrained: false`` builds a randomly initialised VGG (for tests and
offline wiring checks only: random features are not perceptual).
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import torch
from pydantic import Field
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.lab import denormalize_lab, lab_to_rgb

#: the VGG16 ``features`` index after which each named layer ends (ReLU outputs)
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}
PROBE_TIMEOUT_S = 5
NO_PRETRAINED = "--set pixel_loss.options.pretrained=false"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class PerceptualOptions(zoo.Options):
    """L1 between VGG16 features of the fake and real sRGB images."""

    layer: str = Field("relu3_3", pattern="^(relu1_2|relu2_2|relu3_3|relu4_3)$",
                       description="deepest VGG16 layer used: relu1_2, relu2_2, relu3_3 (Johnson et al.) or relu4_3")
    pretrained: bool = Field(True, description="ImageNet VGG16 weights (needs a download or a cached file; false: "
                                               "random weights, for offline tests only)")


def _vgg16_features(pretrained: bool) -> nn.Module:
    import torchvision

    if not pretrained:
        return torchvision.models.vgg16(weights=None).features
    weights = torchvision.models.VGG16_Weights.DEFAULT
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file_name = os.path.basename(urlparse(weights.url).path)
    if not (folder / file_name).is_file():
        try:
            with urllib.request.urlopen(urllib.request.Request(weights.url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass
        except OSError as exc:
            reason = " ".join(str(exc).split())
            raise ZooError(f"perceptual: pretrained VGG16 weights are not cached and {urlparse(weights.url).netloc} "
                           f"is unreachable ({reason}): put {file_name} in {folder}, or run without them with "
                           f"{NO_PRETRAINED}") from None
    try:
        return torchvision.models.vgg16(weights=weights, progress=False).features
    except (OSError, RuntimeError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ZooError(f"perceptual: could not load pretrained VGG16 weights ({reason}); delete "
                       f"{folder / file_name} to download them again, or run with {NO_PRETRAINED}") from None


class Perceptual(nn.Module):
    def __init__(self, features: nn.Module, last: int):
        super().__init__()
        self.vgg = features[: last + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the VGG stays in eval mode
        super().train(mode)
        self.vgg.eval()
        return self

    def forward(self, ctx) -> torch.Tensor:
        L = ctx.L.float()
        fake = lab_to_rgb(denormalize_lab(L, ctx.fake_ab.float()))
        real = lab_to_rgb(denormalize_lab(L, ctx.real_ab.float()))
        both = self.vgg((torch.cat([fake, real]) - self.mean) / self.std).float()
        f, r = both.chunk(2)
        return (f - r.detach()).abs().mean()


def build(options: PerceptualOptions, context: zoo.BuildContext) -> nn.Module:
    return Perceptual(_vgg16_features(options.pretrained), LAYERS[options.layer])


@zoo.hookimpl
def register_pixel_losses(register):
    register("perceptual", build, PerceptualOptions, contract=2,
             test_options=[{"pretrained": False, "layer": "relu1_2"}])
