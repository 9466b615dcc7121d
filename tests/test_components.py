"""Built-in components, through the real registry: seed sizes, option errors, offline behaviour, formulas."""
import os
import time
import urllib.request

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import SpecError
from zoo.component import BuildContext
from zoo.registry import get_registry

TINY = 64

# The generic contract (shapes, ranges, gradients, strict options, a few training steps) of every registered
# component is checked in one place, tests/test_contract.py (zoo.testing.check_component); this file keeps what
# is specific to each built-in.

# The tutorial's Unet(input_c=1, output_c=2, n_down=8, num_filters=64), its notebook code executed as is
# and counted with sum(p.numel() for p in model.parameters()); our unet with the same weights copied in
# gives the same outputs. (54,408,832, quoted elsewhere, is 1,026 short of what that code builds.)
SEED_UNET_PARAMS = 54_409_858
# The tutorial's PatchDiscriminator(3), counted the same way.
SEED_PATCH_PARAMS = 2_765_633


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def component(kind: str, name: str):
    return get_registry().get(kind, name)


def build(kind: str, name: str, options=None, size: int = TINY):
    return component(kind, name).create(options, BuildContext(image_size=size))


# --- unet -----------------------------------------------------------------------------------------------

def test_unet_seed_size_and_batch_one_training_forward():
    net = build("generator", "unet", size=256)
    n = count(net)
    assert n == SEED_UNET_PARAMS
    assert round(n / 1e6, 2) == 54.41
    net.train()  # BatchNorm in train mode with batch 1: the 1x1 bottleneck has no norm on the way down
    with torch.no_grad():
        out = net(torch.rand(1, 1, 256, 256) * 2 - 1)
    assert out.shape == (1, 2, 256, 256)


def test_unet_too_deep_for_image_size():
    with pytest.raises(SpecError) as info:
        build("generator", "unet", {"n_down": 8}, size=64)
    message = str(info.value)
    assert "\n" not in message
    assert "n_down 8 needs an image size divisible by 256" in message
    assert "image size 64 allows n_down <= 6" in message


def test_unet_option_bounds_and_variants():
    with pytest.raises(SpecError, match="n_down"):
        component("generator", "unet").options({"n_down": 11})
    with pytest.raises(SpecError, match="dropout"):
        component("generator", "unet").options({"dropout": 1.0})
    for options in ({"n_down": 1, "ngf": 4}, {"n_down": 4, "ngf": 8, "norm": "instance", "dropout": 0}):
        net = build("generator", "unet", options, size=32).train()
        assert net(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


# --- patch ----------------------------------------------------------------------------------------------

def test_patch_seed_size_output_and_receptive_field():
    net = build("discriminator", "patch", size=256).eval()
    assert count(net) == SEED_PATCH_PARAMS
    assert round(count(net) / 1e6, 2) == 2.77
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    logits = net(x)
    assert logits.shape == (1, 1, 30, 30)
    logits[0, 0, 15, 15].backward()  # one central logit: its gradient is nonzero exactly on its receptive field
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    assert rows.max() - rows.min() + 1 == 70
    assert cols.max() - cols.min() + 1 == 70


@pytest.mark.parametrize("options", [{"norm": "instance"}, {"norm": "none", "n_layers": 1, "ndf": 8},
                                     {"n_layers": 4, "ndf": 8}])
def test_patch_variants(options):
    n_layers = options.get("n_layers", 3)
    net = component("discriminator", "patch").create(options, BuildContext(image_size=64)).train()
    side = 64 // 2 ** n_layers - 2
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 1, side, side)


def test_patch_too_deep_for_image_size():
    with pytest.raises(SpecError, match="n_layers 6 needs an image size >= 192"):
        build("discriminator", "patch", {"n_layers": 6}, size=64)


# --- resnet18_unet --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [64, 256])
def test_resnet_unet_without_pretrained_weights(size):
    net = build("generator", "resnet18_unet", {"pretrained": False}, size=size).eval()
    assert round(count(net) / 1e6, 1) == 31.1  # 31,099,672 with torchvision resnet18 and fastai 2.8
    with torch.no_grad():
        out = net(torch.rand(1, 1, size, size) * 2 - 1)
    assert out.shape == (1, 2, size, size)
    assert out.min() >= -1 and out.max() <= 1


def test_resnet_unet_refuses_image_size_not_a_multiple_of_32():
    with pytest.raises(SpecError, match="resnet18_unet: image size 100 is not a multiple of 32; use 96 or 128"):
        build("generator", "resnet18_unet", size=100)


def test_resnet_unet_rejects_unknown_backbones():
    with pytest.raises(SpecError, match="backbone"):
        component("generator", "resnet18_unet").options({"backbone": "vgg16"})
    with pytest.raises(SpecError, match="not in timm's ResNet family"):
        build("generator", "resnet18_unet", {"backbone": "timm:convnext_tiny"})


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=3).close()
    except OSError:
        return False
    return True


def test_resnet_unet_pretrained_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    if _reachable("https://download.pytorch.org"):
        pytest.skip("download.pytorch.org is reachable: this test is about offline machines")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    start = time.monotonic()
    with pytest.raises(zoo.ZooError) as info:
        build("generator", "resnet18_unet", {"pretrained": True})
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert "\n" not in message
    assert "--set generator.options.pretrained=false" in message
    assert os.path.join(str(tmp_path), "hub", "checkpoints") in message and "resnet18-" in message


# --- losses ---------------------------------------------------------------------------------------------

def test_vanilla_is_bce_with_logits():
    loss = build("gan_loss", "vanilla")
    logits = torch.randn(3, 1, 5, 5)
    bce = F.binary_cross_entropy_with_logits
    torch.testing.assert_close(loss(logits, True), bce(logits, torch.ones_like(logits)))
    torch.testing.assert_close(loss(logits, False), bce(logits, torch.zeros_like(logits)))


def test_lsgan_is_mse_against_custom_labels():
    loss = build("gan_loss", "lsgan", {"real_label": 0.9, "fake_label": 0.1})
    logits = torch.randn(3, 1, 5, 5)
    torch.testing.assert_close(loss(logits, True), F.mse_loss(logits, torch.full_like(logits, 0.9)))
    torch.testing.assert_close(loss(logits, False), F.mse_loss(logits, torch.full_like(logits, 0.1)))


@pytest.mark.parametrize("name", ["vanilla", "lsgan"])
def test_gan_loss_labels_are_bounded(name):
    with pytest.raises(SpecError, match="real_label"):
        component("gan_loss", name).options({"real_label": 1.5})


def test_l1_reductions():
    fake, real = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(build("pixel_loss", "l1")(fake, real), (fake - real).abs().mean())
    total = build("pixel_loss", "l1", {"reduction": "sum"})(fake, real)
    torch.testing.assert_close(total, (fake - real).abs().sum())
