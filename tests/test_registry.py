"""The registry through real pluggy and real entry points (plugin distributions written to disk)."""
import importlib.metadata
import json

import pytest

import zoo
from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent
from zoo.registry import load_registry

from conftest import run_zoo

ZOO = f"zoo {importlib.metadata.version('zoo')}"  # how messages name the built-ins' distribution

DUP_UNET = """
    import torch.nn as nn
    import zoo

    class Opts(zoo.Options):
        pass

    @zoo.hookimpl
    def register_generators(register):
        register("unet", lambda o, c: nn.Conv2d(1, 2, 1), Opts)
"""


def test_builtins_registered_through_entry_points():
    reg = load_registry()
    assert {"unet", "resnet18_unet"} <= set(reg.names("generator"))
    assert "patch" in reg.names("discriminator")
    assert {"vanilla", "lsgan"} <= set(reg.names("gan_loss"))
    assert "l1" in reg.names("pixel_loss")
    unet = reg.get("generator", "unet")
    assert unet.plugin.distribution == "zoo" and unet.plugin.version == zoo.__version__


def test_unknown_name_suggests_closest_and_lists_choices():
    with pytest.raises(UnknownComponent) as info:
        load_registry().get("generator", "unte")
    msg = str(info.value)
    assert "Did you mean 'unet'?" in msg and "resnet18_unet" in msg and "\n" not in msg


def test_duplicate_name_names_both_providers():
    import types
    mod = types.ModuleType("dup_plugin")
    exec(compile(__import__("textwrap").dedent(DUP_UNET), "dup_plugin", "exec"), mod.__dict__)
    registry = load_registry(extra_plugins=(("dup", mod),))  # a clash no longer stops the registry
    with pytest.raises(DuplicateComponent) as info:
        registry.get("generator", "unet")
    msg = str(info.value)
    assert ZOO in msg and "dup_plugin" in msg and "'dup:unet' or 'zoo:unet'" in msg and "\n" not in msg
    assert registry.get("generator", "zoo:unet").plugin.distribution == "zoo"
    assert registry.get("generator", "dup:unet").plugin.module == "dup_plugin"
    assert {"zoo:unet", "dup:unet"} <= set(registry.names("generator")) and "unet" not in registry.names("generator")
    assert "resnet18_unet" in registry.names("generator")  # the other names are untouched


def test_options_are_strict():
    unet = load_registry().get("generator", "unet")
    with pytest.raises(SpecError, match="ngff: unknown key"):
        unet.options({"ngff": 3})
    with pytest.raises(SpecError, match="ngf"):
        unet.options({"ngf": -1})


def test_wrong_output_shape_is_caught_at_build_naming_the_plugin():
    import types
    code = """
        import torch.nn as nn
        import zoo

        class Opts(zoo.Options):
            pass

        @zoo.hookimpl
        def register_generators(register):
            register("one_channel", lambda o, c: nn.Conv2d(1, 1, 1), Opts)
    """
    mod = types.ModuleType("bad_shape_plugin")
    exec(compile(__import__("textwrap").dedent(code), "bad_shape_plugin", "exec"), mod.__dict__)
    reg = load_registry(extra_plugins=(("bad_shape", mod),))
    with pytest.raises(PluginError, match=r"one_channel.*bad_shape_plugin.*returned \(2, 1, 32, 32\)"):
        reg.create("generator", "one_channel", {}, zoo.BuildContext(image_size=32))


def test_broken_plugin_warns_and_others_work(plugin_dist):
    env = plugin_dist("brokenplug", {"brokenplug_mod": "raise RuntimeError('boom at import')"},
                      {"broken": "brokenplug_mod"})
    proc = run_zoo("list", "--json", env=env, check_rc=0)
    assert "brokenplug" in proc.stderr and "boom at import" in proc.stderr and "Traceback" not in proc.stderr
    names = [c["name"] for c in json.loads(proc.stdout)["generator"]]
    assert "unet" in names
    plugins = json.loads(run_zoo("plugins", "--json", env=env, check_rc=0).stdout)
    broken = [p for p in plugins if p["name"] == "broken"][0]
    assert broken["distribution"] == "brokenplug" and "failed to import" in broken["status"]


def test_duplicate_from_installed_distribution_leaves_commands_working(plugin_dist):
    env = plugin_dist("dupplug", {"dupplug_mod": DUP_UNET}, {"dup": "dupplug_mod"})
    proc = run_zoo("list", "--kind", "generator", env=env, check_rc=0)  # a clash no longer bricks every command
    assert "dupplug:unet  (dupplug 0.1)  [name clash" in proc.stdout and "zoo:unet  (zoo " in proc.stdout
    assert "resnet18_unet  (" in proc.stdout
    plugins = run_zoo("plugins", env=env, check_rc=0).stdout
    assert "clash: generator 'unet' is registered by several packages" in plugins and "'zoo:unet'" in plugins
    # the short name is refused where it is used, in one line naming both package:name forms
    # ZOO_DISABLE_PLUGINS still skips a plugin
    ok = run_zoo("list", "--json", env={**env, "ZOO_DISABLE_PLUGINS": "dup"}, check_rc=0)
    assert "unet" in ok.stdout


def test_third_party_component_appears_in_list(plugin_dist):
    code = DUP_UNET.replace('"unet"', '"my_gen"')
    env = plugin_dist("myplug", {"myplug_mod": code}, {"mine": "myplug_mod"}, version="2.3")
    data = json.loads(run_zoo("list", "--json", env=env, check_rc=0).stdout)
    mine = [c for c in data["generator"] if c["name"] == "my_gen"][0]
    assert mine["distribution"] == "myplug" and mine["version"] == "2.3"
    text = run_zoo("plugins", env=env, check_rc=0).stdout
    assert "mine: myplug_mod from myplug 2.3 [loaded]" in text and "generator:my_gen" in text


def test_list_shows_options_with_defaults_bounds_descriptions():
    data = json.loads(run_zoo("list", "--json", check_rc=0).stdout)
    ngf = [o for o in [c for c in data["generator"] if c["name"] == "unet"][0]["options"] if o["name"] == "ngf"][0]
    assert ngf["default"] == 64 and ngf["bounds"] and ngf["description"]
    text = run_zoo("list", check_rc=0).stdout
    assert "generators:" in text and "ngf: integer = 64" in text


# --- declarations made at registration ----------------------------------------------------------------

def test_builtin_declarations_are_true_of_the_built_nets():
    import torch

    reg = load_registry()
    unet = reg.get("generator", "unet")
    for n_down in (2, 3):
        multiple = unet.size_multiple_for({"n_down": n_down, "ngf": 8})
        assert multiple == 2 ** n_down
        opts = unet.options({"n_down": n_down, "ngf": 8})
        fits = unet.build(opts, zoo.BuildContext(image_size=3 * multiple)).eval()
        assert fits(torch.zeros(1, 1, 3 * multiple, 3 * multiple)).shape[-1] == 3 * multiple
        off = 3 * multiple + multiple // 2  # not a multiple: the raw build (no core check) cannot run there
        with pytest.raises(RuntimeError):
            unet.build(opts, zoo.BuildContext(image_size=off)).eval()(torch.zeros(1, 1, off, off))
    patch = reg.get("discriminator", "patch")
    least = patch.min_image_size_for({"n_layers": 2})
    opts = patch.options({"n_layers": 2, "ndf": 8})
    net = patch.build(opts, zoo.BuildContext(image_size=least)).eval()
    assert net(torch.zeros(2, 3, least, least)).shape[-1] == 1
    with pytest.raises(RuntimeError):  # one pixel less and the logit grid is empty
        net(torch.zeros(2, 3, least - 1, least - 1))
    resnet = reg.get("generator", "resnet18_unet")
    assert resnet.size_multiple_for({}) == 32
    assert resnet.is_pretrained({"pretrained": True}) and not resnet.is_pretrained({})
    assert not unet.is_pretrained({}) and not patch.is_pretrained({})


def test_declared_constraints_are_checked_before_building_and_fitted():
    reg = load_registry()
    unet, patch = reg.get("generator", "unet"), reg.get("discriminator", "patch")
    with pytest.raises(SpecError) as info:
        unet.create({"n_down": 6}, zoo.BuildContext(image_size=32))
    assert str(info.value) == "unet: n_down 6 needs an image size divisible by 64; image size 32 allows n_down <= 5"
    assert unet.fit_options({"ngf": 8}, 64) == {"ngf": 8, "n_down": 6}
    assert unet.fit_options({"n_down": 3}, 64) == {"n_down": 3}  # already fits: unchanged
    assert unet.fit_options({}, 31) == {}  # nothing fits an odd size: left for the build to refuse
    assert patch.fit_options({"n_layers": 5}, 32) == {"n_layers": 3}
    assert reg.get("generator", "resnet18_unet").fit_options({}, 48) == {}  # no depth declared: never changed


STRIDED = """
    import torch
    from pydantic import Field
    from torch import nn
    import zoo

    class Opts(zoo.Options):
        depth: int = Field(3, ge=1, le=6, description="stride-2 convs (and as many upsamplings)")
        width: int = Field(4, ge=1, le=64, description="filters")

    def build(o, c):
        down = [nn.Conv2d(1 if i == 0 else o.width, o.width, 4, 2, 1) for i in range(o.depth)]
        up = [nn.ConvTranspose2d(o.width, o.width, 4, 2, 1) for _ in range(o.depth)]
        return nn.Sequential(*down, *up, nn.Conv2d(o.width, 2, 1), nn.Tanh())

    @zoo.hookimpl
    def register_generators(register):
        register("strided", build, Opts, size_multiple=lambda o: 2 ** o.depth, depth_option="depth",
                 test_options={"width": 2})
"""


def test_third_party_declarations_are_honoured(plugin_dist, tmp_path, monkeypatch):
    env = plugin_dist("stridedplug", {"stridedplug_mod": STRIDED}, {"strided": "stridedplug_mod"})
    proc = run_zoo("train", "--gen", "strided", "--image-size", "36", "--steps", "1", "--out", str(tmp_path / "run"),
                   "--no-progress", env=env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("zoo: error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert errors == ["zoo: error: strided: depth 3 needs an image size divisible by 8; image size 36 allows depth <= 2"]
    assert not (tmp_path / "run").exists()

    monkeypatch.syspath_prepend(env["PYTHONPATH"].split(":")[0])  # installed for this process too
    reg = load_registry()
    strided = reg.get("generator", "strided")
    assert strided.plugin.distribution == "stridedplug"
    assert strided.size_multiple_for({"depth": 4}) == 16 and strided.fit_options({}, 36) == {"depth": 2}
    assert strided.test_option_sets(36) == [{"width": 2, "depth": 2}]
    from zoo.bench import bench_spec

    spec = bench_spec("strided", "patch", image_size=36, registry=reg)
    assert spec.generator.options["depth"] == 2  # benchmarks and the leaderboard fit it by its declaration
    reg.create("generator", "strided", spec.generator.options, spec.context())


INVALID_DECLARATION = """
    from torch import nn
    from pydantic import Field
    import zoo

    class Opts(zoo.Options):
        width: int = Field(4, ge=1, le=64, description="filters")

    @zoo.hookimpl
    def register_{hook}(register):
        register("declared", lambda o, c: nn.Conv2d(1, 2, 1), Opts, {declaration})
"""


@pytest.mark.parametrize("hook, declaration, words", [
    ("generators", "size_multipel=8", "unknown declaration 'size_multipel'. Did you mean 'size_multiple'?"),
    ("generators", "size_multiple=0", "size_multiple=0 must be a positive int or a function options -> int"),
    ("generators", "min_image_size='big'", "min_image_size='big' must be a positive int"),
    ("generators", "depth_option='n_down'", "depth_option='n_down' must name one of its options (width)"),
    ("generators", "pretrained='width'", "pretrained='width' must name a boolean option"),
    ("generators", "test_options={'width': 999}", "test_options {'width': 999} are invalid: width: Input should "
                                                  "be less than or equal to 64"),
    ("gan_losses", "size_multiple=8", "the declaration size_multiple does not apply to a gan loss"),
])
def test_invalid_declaration_is_refused_in_one_warning_naming_the_plugin(plugin_dist, hook, declaration, words):
    code = INVALID_DECLARATION.replace("{hook}", hook).replace("{declaration}", declaration)
    env = plugin_dist("declplug", {"declplug_mod": code}, {"decl": "declplug_mod"})
    proc = run_zoo("list", "--json", env=env, check_rc=0)
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "'decl' from declplug 0.1 [declplug_mod]" in warnings[0], proc.stderr
    assert words in warnings[0] and "it was skipped" in warnings[0]
    listing = json.loads(proc.stdout)
    assert "declared" not in [c["name"] for kind in listing.values() for c in kind] and "unet" in proc.stdout


def test_a_failing_declared_function_names_the_plugin():
    import types

    mod = types.ModuleType("bad_decl")
    exec(compile(__import__("textwrap").dedent(STRIDED.replace("2 ** o.depth", "1 // 0")), "bad_decl", "exec"),
         mod.__dict__)
    reg = load_registry(extra_plugins=(("bad_decl", mod),))
    with pytest.raises(PluginError, match=r"generator 'strided' from \(not installed\) \[bad_decl\]: its declared "
                                          r"size_multiple failed .*ZeroDivisionError"):
        reg.create("generator", "strided", {}, zoo.BuildContext(image_size=32))


def test_v1_register_call_keeps_working_with_documented_defaults():
    import types

    code = """
        from torch import nn
        from pydantic import Field
        import zoo

        class Opts(zoo.Options):
            pretrained: bool = Field(False, description="trained weights (v1: found by this name)")

        @zoo.hookimpl
        def register_generators(register):
            register("v1_gen", lambda o, c: nn.Sequential(nn.Conv2d(1, 2, 1), nn.Tanh()), Opts)
    """
    mod = types.ModuleType("v1_plugin")
    exec(compile(__import__("textwrap").dedent(code), "v1_plugin", "exec"), mod.__dict__)
    v1 = load_registry(extra_plugins=(("v1", mod),)).get("generator", "v1_gen")
    assert v1.size_multiple_for({}) is None and v1.min_image_size_for({}) is None and v1.test_option_sets() == []
    assert v1.is_pretrained({"pretrained": True}) and not v1.is_pretrained({})
    assert v1.fit_options({"pretrained": True}, 33) == {"pretrained": True}
    v1.create({}, zoo.BuildContext(image_size=33))  # no constraint declared: any size


def test_declarations_are_keywords_and_describable():
    import types

    code = STRIDED.replace('register("strided", build, Opts,', 'register("strided", build, Opts, 8,')
    mod = types.ModuleType("positional_decl")
    exec(compile(__import__("textwrap").dedent(code), "positional_decl", "exec"), mod.__dict__)
    with pytest.warns(zoo.registry.PluginLoadWarning, match=r"register\('strided', \.\.\.\) got 1 argument\(s\) "
                                                            r"after Options: declarations are keywords"):
        reg = load_registry(extra_plugins=(("positional", mod),))
    assert "strided" not in reg.names("generator")
    described = reg.get("generator", "unet").describe_declarations()
    assert described["size_multiple"] == 256 and described["depth_option"] == "n_down"
    assert json.loads(json.dumps(described)) == described  # plain data, for `zoo list --json`
