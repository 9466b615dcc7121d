"""The registry through real pluggy and real entry points (plugin distributions written to disk)."""
import json

import pytest

import zoo
from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent
from zoo.registry import load_registry

from conftest import run_zoo

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
    with pytest.raises(DuplicateComponent) as info:
        load_registry(extra_plugins=(("dup", mod),))
    msg = str(info.value)
    assert "zoo 0.1.0" in msg and "dup_plugin" in msg and "ZOO_DISABLE_PLUGINS" in msg


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
    with pytest.raises(PluginError, match=r"one_channel.*bad_shape_plugin.*returned \(1, 1, 32, 32\)"):
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


def test_duplicate_from_installed_distribution_is_one_line_error(plugin_dist):
    env = plugin_dist("dupplug", {"dupplug_mod": DUP_UNET}, {"dup": "dupplug_mod"})
    proc = run_zoo("list", env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "dupplug 0.1" in proc.stderr and "zoo 0.1.0" in proc.stderr
    # the documented escape hatch works
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
