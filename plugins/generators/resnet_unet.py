"""U-Net over a ResNet encoder: fastai's ``DynamicUnet`` (Howard & Gugger, "fastai: A Layered API for Deep
Learning", arXiv:2002.04688) on a ResNet body (He et al., arXiv:1512.03385), as in the "Image Colorization
Tutorial" seed (``create_body(resnet18, pretrained=True, n_in=1, cut=-2)`` then ``DynamicUnet(body, 2, (size, size))``).

Maps L (B, 1, H, W) to ab (B, 2, H, W); H and W divisible by 32 (the ResNet downsamples 32x).

Two decisions differ from the seed:

- ``pretrained`` defaults to False so that the zoo builds offline; the seed used ImageNet weights
  (``pretrained=True``). With pretrained weights the first conv's RGB filters are summed into one L filter.
- ``output_activation`` defaults to "tanh": the seed's DynamicUnet had no output activation, so its ab was
  unbounded; the Tanh makes the output range [-1, 1] match the ``unet`` generator and the ab scaling.

``backbone`` is a torchvision ResNet (resnet18, resnet34, resnet50) or ``timm:<name>`` for a model of timm's
ResNet family (timm.models.resnet: resnet26d, resnext50_32x4d, seresnet50, ...).
"""
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator
from torch import nn

import zoo
from zoo.errors import SpecError, ZooError

TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50")
TIMM_PREFIX = "timm:"
PROBE_TIMEOUT_S = 5  # a download host that does not answer this fast is treated as offline
NO_PRETRAINED = "--set generator.options.pretrained=false"
OUTPUT_STRIDE = 32  # the ResNet encoder's downsampling: image sides must be multiples of it


class ResnetUnetOptions(zoo.Options):
    backbone: str = Field("resnet18", min_length=1,
                          description="encoder: resnet18, resnet34, resnet50 (torchvision) or timm:<name> "
                                      "(timm's ResNet family)")
    pretrained: bool = Field(False, description="ImageNet weights for the encoder (the seed used True; needs a "
                                                "download or a cached file)")
    output_activation: Literal["tanh", "none"] = Field(
        "tanh", description="tanh keeps ab in [-1, 1] like unet; none is the seed's unbounded output")
    self_attention: bool = Field(False, description="fastai self-attention in the third-from-last decoder block")
    blur: bool = Field(False, description="fastai blur after pixel-shuffle upsampling (fewer checkerboard artifacts)")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value in TORCHVISION_BACKBONES or (value.startswith(TIMM_PREFIX) and len(value) > len(TIMM_PREFIX)):
            return value
        raise ValueError(f"expected one of {', '.join(TORCHVISION_BACKBONES)} or timm:<name> (e.g. timm:resnet26d)")


def _probe(url: str) -> None:
    """Fail fast (OSError) when the download host is unreachable, instead of hanging or retrying for a minute."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:  # the host answered: let the real download report what is wrong
        pass
    except OSError as exc:
        raise OSError(" ".join(str(exc).split())) from None  # one line for the user-facing error


def _torchvision_resnet(name: str, pretrained: bool) -> nn.Module:
    import torch
    import torchvision

    if not pretrained:
        return torchvision.models.get_model(name, weights=None)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file_name = os.path.basename(urlparse(weights.url).path)
    if not (folder / file_name).is_file():
        try:
            _probe(weights.url)
        except OSError as exc:
            raise ZooError(f"resnet18_unet: pretrained {name} weights are not cached and "
                           f"{urlparse(weights.url).netloc} is unreachable ({exc}): put {file_name} in {folder}, "
                           f"or run without them with {NO_PRETRAINED}") from None
    try:
        return torchvision.models.get_model(name, weights=weights, progress=False)
    except (OSError, RuntimeError) as exc:  # interrupted download, corrupt cached file
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ZooError(f"resnet18_unet: could not load pretrained {name} weights ({reason}); "
                       f"delete {folder / file_name} to download them again, or run with {NO_PRETRAINED}") from None


def _timm_resnet(name: str, pretrained: bool) -> nn.Module:
    import timm
    import torch
    from huggingface_hub import constants, try_to_load_from_cache

    family = timm.list_models(module="resnet")
    if name.split(".")[0] not in family:
        raise SpecError(f"resnet18_unet: backbone timm:{name} is not in timm's ResNet family; "
                        f"use e.g. timm:resnet26d or timm:resnext50_32x4d")
    if not pretrained:
        return timm.create_model(name, pretrained=False)
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise SpecError(f"resnet18_unet: timm has no pretrained weights for {name}; run with {NO_PRETRAINED}")

    # timm downloads from the Hugging Face hub when the model has a hub id, else from its url; either
    # local copy is used without touching the network.
    candidates = []
    if cfg.hf_hub_id:
        repo_id = cfg.hf_hub_id.split("@")[0]
        for file_name in (cfg.hf_hub_filename or "model.safetensors", "pytorch_model.bin"):
            candidates.append(try_to_load_from_cache(repo_id, file_name))
        url = f"https://huggingface.co/{repo_id}/resolve/main/{cfg.hf_hub_filename or 'model.safetensors'}"
        where = f"the Hugging Face cache {constants.HF_HUB_CACHE} (hf download {repo_id})"
    if cfg.url:
        file_name = os.path.basename(urlparse(cfg.url).path)
        candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / file_name)
        if not cfg.hf_hub_id:
            url, where = cfg.url, f"{candidates[-1].parent} as {file_name}"
    for cached in candidates:
        if isinstance(cached, (str, Path)) and Path(cached).is_file():
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(cached)})
    try:
        _probe(url)
    except OSError as exc:
        raise ZooError(f"resnet18_unet: pretrained timm:{name} weights are not cached and {urlparse(url).netloc} "
                       f"is unreachable ({exc}): put them in {where}, or run without them with "
                       f"{NO_PRETRAINED}") from None
    return timm.create_model(name, pretrained=True)


def build(options: ResnetUnetOptions, context: zoo.BuildContext) -> nn.Module:
    """L (B, 1, H, W) -> ab (B, 2, H, W), in [-1, 1] with output_activation tanh; H, W divisible by 32 (declared:
    the core checks it before building)."""
    size = context.image_size
    from fastai.vision.learner import create_body
    from fastai.vision.models.unet import DynamicUnet

    if options.backbone.startswith(TIMM_PREFIX):
        resnet = _timm_resnet(options.backbone[len(TIMM_PREFIX):], options.pretrained)
    else:
        resnet = _torchvision_resnet(options.backbone, options.pretrained)
    # (B, 1, H, W) -> (B, C, H/32, W/32): cut the pooling and classifier; with pretrained weights the first
    # conv's RGB filters are summed into one input channel.
    body = create_body(resnet, n_in=1, pretrained=options.pretrained, cut=-2)
    unet = DynamicUnet(body, 2, (size, size), blur=options.blur, self_attention=options.self_attention)
    # DynamicUnet ends with ToTensorBase, which turns the output into fastai's TensorBase; replace it so the
    # output is a plain torch.Tensor, and put the output activation there.
    unet.layers[-1] = nn.Tanh() if options.output_activation == "tanh" else nn.Identity()
    # DynamicUnet leaves some blocks in eval mode after its dry run; a fresh module is in train mode.
    return unet.train()


@zoo.hookimpl
def register_generators(register):
    # Every backbone offered (torchvision's and timm's ResNets) downsamples 32x: the stem's stride-2 conv and
    # max pool, then three stride-2 stages.
    register("resnet18_unet", build, ResnetUnetOptions, size_multiple=OUTPUT_STRIDE, pretrained="pretrained",
             test_options=[{}])
