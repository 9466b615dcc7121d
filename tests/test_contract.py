"""Every registered component keeps the plugin contract (zoo.testing), and the contract kit catches broken ones.

Parametrized over the registry: built-ins, the example plugin and any other installed plugin are all checked,
each at the smallest image size >= 32 its declarations allow, with the small option sets it declared
(``register(..., test_options=...)``); a component that declares none is checked with its defaults.
"""
import importlib.metadata
import math
import textwrap
import types

import pytest

import zoo
import zoo.testing
from zoo.registry import load_registry

from conftest import make_plugin_dist

ZOO = f"zoo {importlib.metadata.version('zoo')}"
#: what the engine logs per GAN step
LOSSES = {"d_real", "d_fake", "g_gan", "g_pixel"}


@zoo.testing.parametrize_registered()
def test_registered_component_keeps_the_contract(kind, name):
    component = load_registry().get(kind, name)
    size = zoo.testing.image_size_for(kind, name)
    report = zoo.testing.check_component(kind, name, image_size=size)
    declared = component.test_option_sets(size)
    assert report.trained_with == (declared[0] if declared else {})  # the kit trains with the first declared set
    # the engine's GAN step ran to the end: a v1 GAN loss logs its two D terms, a v2 one its D objective, and
    # each loss term its value in the roles it trains
    gan = component if kind == "gan_loss" else None
    expected = {"d_gan", "g_gan", "g_pixel"} if gan is not None and gan.contract == 2 else set(LOSSES)
    if kind == "loss":
        expected |= {f"{role[0]}_{name}" for role in component.trains}
    assert set(report.last_losses) == expected
    assert all(math.isfinite(v) for v in report.last_losses.values())


def test_parametrize_registered_covers_every_kind():
    mark = zoo.testing.parametrize_registered()
    ids = {p.id for p in mark.args[1]}
    assert {"generator-unet", "discriminator-patch", "gan_loss-vanilla", "pixel_loss-l1"} <= ids
    assert {"gan_loss-hinge", "loss-r1", "loss-feature_matching", "generator-eccv16"} <= ids  # contract 2 ones
    assert len(ids) == sum(len(zoo.names(k)) for k in ("generator", "discriminator", "gan_loss", "pixel_loss",
                                                          "loss"))


def test_unet_defaults_refused_at_32_px_and_declared_sets_trained():
    report = zoo.testing.check_component("generator", "unet", image_size=32, option_sets=[{"n_down": 5}])
    (options, reason), = report.refused
    assert options == {} and "n_down 8 needs an image size divisible by 256" in reason
    declared = load_registry().get("generator", "unet").declared.test_options
    assert report.checked == [{"n_down": 5}] + [s for s in declared if s != {"n_down": 5}]
    assert report.trained_with == declared[0] == {"n_down": 3, "ngf": 8}


def test_kit_fits_declared_sets_and_partners_to_the_image_size():
    registry = load_registry()
    assert zoo.testing.image_size_for("generator", "resnet18_unet", 40, registry) == 64  # declared multiple 32
    assert zoo.testing.image_size_for("discriminator", "patch", 8, registry) == 8  # its test set fitted: n_layers 1
    assert zoo.testing.image_size_for("discriminator", "patch", 4, registry) == 6  # n_layers >= 1 needs 3 * 2
    partners = zoo.testing.partners(registry, 8, but="generator")
    assert partners["discriminator"] == {"name": "patch", "options": {"ndf": 8, "n_layers": 1}}  # fitted: 6 <= 8
    report = zoo.testing.check_component("generator", "unet", image_size=20, registry=registry)
    assert report.trained_with == {"n_down": 2, "ngf": 8}  # its declared set fitted: 20 px is no multiple of 2**3


# --- the kit fails broken components, naming the plugin and what broke ---------------------------------

HEADER = """
    import torch
    from pydantic import BaseModel, Field
    from torch import nn
    import zoo

    class Opts(zoo.Options):
        width: int = Field(4, ge=1, le=64, description="filters")
"""

BROKEN = {
    "no_tanh": ("generator", """
        def build(o, c):
            return nn.Conv2d(1, 2, 3, padding=1)
    """, r"output range .* leaves \[-1, 1\]"),
    "ignores_input": ("generator", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.bias = nn.Parameter(torch.zeros(1, 2, 1, 1))
            def forward(self, x):
                return torch.tanh(self.bias.expand(x.shape[0], 2, *x.shape[2:]) + 0.1)
        def build(o, c):
            return Gen()
    """, "does not depend on the input L"),
    "unused_param": ("generator", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.spare = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 1)
            def forward(self, x):
                return torch.tanh(self.conv(x))
        def build(o, c):
            return Gen()
    """, r"no gradient reaches parameters \['spare.weight', 'spare.bias'\]"),
    "buffer_weights": ("generator", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.register_buffer("weight", torch.randn(2, 1, 3, 3))
            def forward(self, x):
                return torch.tanh(nn.functional.conv2d(x, self.weight, padding=1))
        def build(o, c):
            return Gen()
    """, "has no trainable parameters"),
    "batch_two_only": ("generator", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3, padding=1)
            def forward(self, x):
                return torch.tanh(self.conv(x)).view(2, 2, *x.shape[2:])
        def build(o, c):
            return Gen()
    """, r"at 32 px: raised RuntimeError: shape '\[2, 2, 32, 32\]' is invalid for input of size 2048"),
    "batch_one_only": ("generator", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3, padding=1)
            def forward(self, x):
                return torch.tanh(self.conv(x)).view(1, 2, *x.shape[2:])
        def build(o, c):
            return Gen()
    """, r"at 32 px: failed its contract check at image size 32, batch 2: RuntimeError: shape '\[1, 2, 32, 32\]'"),
    "ab_only": ("discriminator", """
        class Disc(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(2, 1, 4, 2, 1)
            def forward(self, lab):
                return self.conv(lab[:, 1:])
        def build(o, c):
            return Disc()
    """, r"depend on both L \(channel 0\) and ab"),
    "flat_logits": ("discriminator", """
        def build(o, c):
            return nn.Sequential(nn.Conv2d(3, 1, 4, 2, 1), nn.Flatten())
    """, r"returned \(2, 256\), expected \(2, 1, h, w\)"),
    "backwards": ("gan_loss", """
        class Loss(nn.Module):
            def forward(self, logits, target_is_real):
                target = torch.zeros_like(logits) if target_is_real else torch.ones_like(logits)
                return nn.functional.binary_cross_entropy_with_logits(logits, target)
        def build(o, c):
            return Loss()
    """, r"target real: loss on logits 1 .* must be lower than on logits 0"),
    "per_pixel": ("gan_loss", """
        class Loss(nn.Module):
            def forward(self, logits, target_is_real):
                return torch.relu(1 - logits) if target_is_real else torch.relu(1 + logits)
        def build(o, c):
            return Loss()
    """, r"returned \(2, 1, 4, 4\), expected a scalar tensor"),
    "offset": ("pixel_loss", """
        class Loss(nn.Module):
            def forward(self, fake, real):
                return (fake - real).abs().mean() + 0.1
        def build(o, c):
            return Loss()
    """, r"loss\(real, real\) is 0.1, expected 0"),
    "item": ("pixel_loss", """
        class Loss(nn.Module):
            def forward(self, fake, real):
                return torch.tensor((fake - real).abs().mean().item())
        def build(o, c):
            return Loss()
    """, "raised RuntimeError: element 0 of tensors does not require grad"),
    "extra_state": ("generator", """
        class Gen(nn.Sequential):
            def get_extra_state(self):
                return {"note": "not a tensor"}
            def set_extra_state(self, state):
                pass
        def build(o, c):
            return Gen(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh())
    """, r"training raised \w+Error"),
}

HOOKS = {"generator": "register_generators", "discriminator": "register_discriminators",
         "gan_loss": "register_gan_losses", "pixel_loss": "register_pixel_losses"}


def plugin_module(name: str, kind: str, body: str, options: str = "Opts") -> types.ModuleType:
    code = textwrap.dedent(HEADER) + textwrap.dedent(body) + textwrap.dedent(f"""
        @zoo.hookimpl
        def {HOOKS[kind]}(register):
            register({name!r}, build, {options})
    """)
    module = types.ModuleType(f"broken_{name}")
    exec(compile(code, module.__name__, "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("name", list(BROKEN))
def test_kit_fails_a_broken_component(name):
    kind, body, message = BROKEN[name]
    registry = load_registry(extra_plugins=((f"broken_{name}", plugin_module(name, kind, body)),))
    with pytest.raises(AssertionError, match=message) as info:
        zoo.testing.check_component(kind, name, image_size=32, registry=registry)
    assert f"{kind} {name!r} from (not installed) [broken_{name}]" in str(info.value)


@pytest.mark.parametrize("options_code,message", [
    ("""
    class Loose(BaseModel):
        width: int = Field(4, ge=1, description="filters")
    """, "unknown option key 'zoo_contract_unknown_option' was accepted"),
    ("""
    class Loose(zoo.Options):
        width: int = Field(4, ge=1)
    """, "option 'width' has no description"),
    ("""
    class Loose(zoo.Options):
        width: int = Field(4, description="filters")
    """, "numeric option 'width' has no bounds"),
    ("""
    class Loose(zoo.Options):
        width: int = Field(description="filters", ge=1)
    """, "every option needs a default"),
], ids=["not_strict", "no_description", "no_bounds", "no_default"])
def test_kit_fails_loose_options(options_code, message):
    body = textwrap.dedent(options_code) + """
def build(o, c):
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh())
"""
    registry = load_registry(extra_plugins=(("loose", plugin_module("loose", "generator", body, "Loose")),))
    with pytest.raises(AssertionError, match=message):
        zoo.testing.check_component("generator", "loose", image_size=32, registry=registry)


def test_kit_fails_an_option_set_that_does_not_build():
    with pytest.raises(AssertionError, match=r"options \{'n_down': 6\} at 32 px: does not build: unet: n_down 6"):
        zoo.testing.check_component("generator", "unet", image_size=32, option_sets=[{"n_down": 6}])
    with pytest.raises(AssertionError, match="no option set builds"):
        zoo.testing.check_component("generator", "unet", image_size=31)  # odd: no n_down fits


def test_kit_fails_unknown_names_and_duplicates(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match="no generator named 'unte'. Did you mean 'unet'"):
        zoo.testing.check_component("generator", "unte")
    dup = """
        import torch.nn as nn
        import zoo

        class Opts(zoo.Options):
            pass

        @zoo.hookimpl
        def register_generators(register):
            register("unet", lambda o, c: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Tanh()), Opts)
    """
    make_plugin_dist(tmp_path, "dupunet", {"dupunet_mod": dup}, {"dupunet": "dupunet_mod"}, version="1.0")
    monkeypatch.syspath_prepend(str(tmp_path))  # installed: importlib.metadata sees its entry point
    with pytest.raises(AssertionError, match=r"names must be unique: generator 'unet' is registered by several "
                                             rf"packages \(dupunet 1.0 \[dupunet_mod\] and {ZOO} .*\): name one as "
                                             r"package:name, 'dupunet:unet' or 'zoo:unet'"):
        zoo.testing.check_component("generator", "unet", image_size=32, option_sets=[{"n_down": 5}])
