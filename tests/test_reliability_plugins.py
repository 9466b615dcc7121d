"""Reliability corpus, plugins: a broken third-party plugin is named in one warning and the others keep
working; a misbehaving component is one error naming its plugin. Real distributions on disk, real entry
points, the real `zoo` command (tests/test_registry.py covers `zoo list` with a plugin raising on import and
a duplicate name disabled by entry-point name)."""
from __future__ import annotations

import importlib.metadata
import json
import types
import textwrap

import pytest

import zoo
from zoo.errors import PluginError
from zoo.registry import PluginLoadWarning, load_registry

from conftest import make_plugin_dist, run_zoo
from conftest import FAST, expect_error, expect_ok, photo, tiny_args

ZOO = f"zoo {importlib.metadata.version('zoo')}"

GOOD = """
    import torch.nn as nn
    import zoo

    class Opts(zoo.Options):
        pass

    @zoo.hookimpl
    def register_generators(register):
        register("{name}", lambda options, context: {module}, Opts)
"""
HOOK_RAISES = """
    import zoo

    @zoo.hookimpl
    def register_generators(register):
        raise RuntimeError("registry service unavailable")
"""
HALF_REGISTERED = """
    import torch.nn as nn
    import zoo

    class Opts(zoo.Options):
        pass

    @zoo.hookimpl
    def register_generators(register):
        register("half_gen", lambda options, context: nn.Conv2d(1, 2, 1), Opts)

    @zoo.hookimpl
    def register_discriminators(register):
        register("bad name", lambda options, context: nn.Conv2d(3, 1, 1), Opts)
"""


def site(tmp_path, dists: dict[str, str]) -> dict[str, str]:
    """One folder holding a distribution per (name -> module code); the environment that sees them all."""
    env = {}
    for dist, code in dists.items():
        env = make_plugin_dist(tmp_path / "site", dist, {f"{dist}_mod": code}, {dist: f"{dist}_mod"})
    return {**env, **FAST}


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: warning:")]


def test_broken_plugins_are_named_once_and_training_still_works(tmp_path, photos):
    env = site(tmp_path, {
        "importboom": "raise ImportError('needs libfoo.so.3')",
        "exitsat": "import sys\nsys.exit('usage: exitsat [-h]')",  # a script-like module that exits on import
        "hookboom": HOOK_RAISES,
        "halfreg": HALF_REGISTERED,
    })
    proc = run_zoo(*tiny_args(photos, tmp_path / "run", 1), env=env)
    expect_ok(proc)
    warnings = warning_lines(proc.stderr)
    assert len(warnings) == 4, proc.stderr
    expected = {"importboom": "failed to import", "exitsat": "failed to import", "hookboom": "failed while "
                "registering its generators: RuntimeError: registry service unavailable", "halfreg": "failed "
                "while registering its discriminators: PluginError"}
    for dist, words in expected.items():
        assert sum(f"'{dist}' from {dist} 0.1" in w and words in w for w in warnings) == 1, (dist, proc.stderr)
    assert (tmp_path / "run" / "checkpoints" / "step-000001.safetensors").is_file()


def test_hook_failure_drops_everything_the_plugin_registered():
    mod = types.ModuleType("halfreg_mod")
    exec(compile(textwrap.dedent(HALF_REGISTERED), "halfreg_mod", "exec"), mod.__dict__)
    with pytest.warns(PluginLoadWarning, match="'halfreg' from .*invalid name 'bad name'"):
        reg = load_registry(extra_plugins=(("halfreg", mod),))
    assert "half_gen" not in reg.names("generator") and "unet" in reg.names("generator")
    assert [p.error for p in reg.plugins if p.name == "halfreg"][0].startswith("failed while registering")


BAD_GENERATORS = """
    import torch.nn as nn
    from pydantic import Field
    import zoo

    class Opts(zoo.Options):  # takes the options the tiny test config sets, like the U-Net
        n_down: int = Field(3, ge=1, description="unused")
        ngf: int = Field(8, ge=1, description="unused")

    @zoo.hookimpl
    def register_generators(register):
        register("one_channel", lambda options, context: nn.Conv2d(1, 1, 1), Opts)  # L -> L, not ab
        register("not_a_module", lambda options, context: None, Opts)
"""


def test_wrong_output_shape_is_caught_when_built_naming_the_plugin(tmp_path, photos):
    env = site(tmp_path, {"badgens": BAD_GENERATORS})
    proc = run_zoo(*tiny_args(photos, tmp_path / "run", 1, "--gen", "one_channel"), env=env)
    expect_error(proc, 2, "generator 'one_channel' from badgens 0.1 [badgens_mod] returned (2, 1, 32, 32), "
                 "expected (2, 2, 32, 32)", "fix the plugin's build function")
    assert not (tmp_path / "run").exists()  # refused before any data is read or folder made


def test_a_builder_returning_no_module_names_the_plugin():
    mod = types.ModuleType("badgens_here")
    exec(compile(textwrap.dedent(BAD_GENERATORS), "badgens_here", "exec"), mod.__dict__)
    reg = load_registry(extra_plugins=(("badgens_here", mod),))
    with pytest.raises(PluginError, match=r"generator 'not_a_module' from \(not installed\) \[badgens_here\]: "
                                          r"its build returned NoneType, expected a torch.nn.Module"):
        reg.create("generator", "not_a_module", {}, zoo.BuildContext(image_size=32))


def test_duplicate_name_in_train_then_disabled_by_distribution_name(tmp_path, photos):
    env = site(tmp_path, {"dupgen": GOOD.format(name="unet", module="nn.Conv2d(1, 2, 1)")})
    proc = run_zoo(*tiny_args(photos, tmp_path / "run", 1), env=env)
    expect_error(proc, 2, "generator 'unet' is registered by several packages (", f"{ZOO} [zoo_plugins.generators.unet]",
                 "dupgen 0.1 [dupgen_mod]", "'dupgen:unet' or 'zoo:unet'",
                 "or skip a package with ZOO_DISABLE_PLUGINS=dupgen")
    assert not (tmp_path / "run").exists()
    # disabled by its distribution name, with a typo next to it: the typo is one warning, not silence
    proc = run_zoo("plugins", "--json", env={**env, "ZOO_DISABLE_PLUGINS": "dupgen, dupgne"})
    expect_ok(proc)
    assert warning_lines(proc.stderr) == ["zoo: warning: ZOO_DISABLE_PLUGINS names 'dupgne', which is no installed "
                                          "zoo plugin or distribution (see `zoo plugins`)"]
    status = {p["name"]: p for p in json.loads(proc.stdout)}
    assert status["dupgen"]["status"] == "disabled by ZOO_DISABLE_PLUGINS" and not status["dupgen"]["provides"]
    assert "generator:unet" in status["unet"]["provides"]


def test_builder_errors_name_the_plugin():
    def explode(options, context):
        raise MemoryError("cannot allocate 80 GB")

    mod = types.ModuleType("explode_mod")

    class Opts(zoo.Options):
        pass

    @zoo.hookimpl
    def register_generators(register):
        register("explode", explode, Opts)

    mod.register_generators = register_generators
    reg = load_registry(extra_plugins=(("explode", mod),))
    with pytest.raises(PluginError, match=r"generator 'explode' from .*explode_mod.* failed to build: MemoryError"):
        reg.create("generator", "explode", {}, zoo.BuildContext(image_size=32))


# --- issue 16: names, the probe, builders that misbehave, disabled plugins, escaping ---------------------

ESCAPING = """
    import torch.nn as nn
    import zoo

    class Opts(zoo.Options):
        pass

    @zoo.hookimpl
    def register_generators(register):
        register("../../escaped", lambda options, context: nn.Conv2d(1, 2, 1), Opts)
"""


def test_a_component_name_that_is_a_path_is_refused_at_registration(tmp_path, photos):
    env = site(tmp_path, {"escaper": ESCAPING})
    proc = run_zoo("list", "--json", env=env)
    expect_ok(proc)
    (warning,) = warning_lines(proc.stderr)
    assert "'escaper' from escaper 0.1 [escaper_mod]" in warning and "invalid name '../../escaped'" in warning
    assert "../../escaped" not in [c["name"] for c in json.loads(proc.stdout)["generator"]]
    (tmp_path / "work").mkdir()
    proc = run_zoo(*tiny_args(photos, tmp_path / "work" / "runs", 1, "--gen", "../../escaped"), env=env,
                   cwd=tmp_path / "work")
    expect_error(proc, 2, "no generator named '../../escaped'")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site", "work"]  # nothing made outside the run folder
    assert not (tmp_path / "work" / "runs").exists()


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "..", "a..b", "pkg:gen", "bad name", "tab\tname",
                                  "esc\x1b[2J", "-dash", "_under", "", "x" * 65, "caf\u00e9", "nl\nname"])
def test_unsafe_component_names_are_refused(name):
    mod = types.ModuleType("names_mod")
    mod.NAME = name  # the hook registers whatever NAME holds (control characters included)
    code = textwrap.dedent(GOOD).replace('"{name}"', "NAME").format(module="nn.Conv2d(1, 2, 1)")
    exec(compile(code, "names_mod", "exec"), mod.__dict__)
    with pytest.warns(PluginLoadWarning) as record:
        reg = load_registry(extra_plugins=(("names", mod),))
    (message,) = [str(w.message) for w in record]
    assert "'names' from (not installed) [names_mod]" in message and "invalid name" in message
    assert "\n" not in message and "\x1b" not in message and "\t" not in message  # shown escaped
    assert name not in reg.names("generator")


@pytest.mark.parametrize("name", ["a", "unet2", "my_resnet18_unet", "v1.2-x", "A" * 64])
def test_safe_component_names_are_accepted(name):
    mod = types.ModuleType("ok_names_mod")
    exec(compile(textwrap.dedent(GOOD.format(name=name, module="nn.Conv2d(1, 2, 1)")), "ok_names_mod", "exec"),
         mod.__dict__)
    assert name in load_registry(extra_plugins=(("ok_names", mod),)).names("generator")


MISBEHAVING = """
    import sys
    import torch
    import torch.nn as nn
    from pydantic import Field
    import zoo

    class Opts(zoo.Options):  # takes the options the tiny test config sets, like the U-Net
        n_down: int = Field(3, ge=1, description="unused")
        ngf: int = Field(8, ge=1, description="unused")

    class OneImage(nn.Module):  # works for a batch of one only
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
        def forward(self, x):
            return torch.tanh(self.conv(x)).view(1, 2, *x.shape[2:])

    class Frozen(nn.Module):  # its weights are a buffer: nothing to train
        def __init__(self):
            super().__init__()
            self.register_buffer("weight", torch.randn(2, 1, 3, 3))
        def forward(self, x):
            return torch.tanh(nn.functional.conv2d(x, self.weight, padding=1))

    class Integer(OneImage):  # an integer output: no gradient can flow back through it
        def forward(self, x):
            return torch.tanh(self.conv(x)).round().long()

    class Interrupts(OneImage):  # raises KeyboardInterrupt itself: no Ctrl-C came
        def forward(self, x):
            raise KeyboardInterrupt

    def exits(options, context):
        sys.exit("usage: mygen --help")

    def os_exits(options, context):
        import os
        os._exit(0)  # would end zoo at once with exit code 0, having trained nothing

    @zoo.hookimpl
    def register_generators(register):
        register("one_image", lambda options, context: OneImage(), Opts)
        register("frozen", lambda options, context: Frozen(), Opts)
        register("exits", exits, Opts)
        register("integer", lambda options, context: Integer(), Opts)
        register("interrupts", lambda options, context: Interrupts(), Opts)
        register("os_exits", os_exits, Opts)
"""


@pytest.mark.parametrize("gen, words", [
    ("one_image", "generator 'one_image' from misbehaving 0.1 [misbehaving_mod] failed its contract check at "
                  "image size 32, batch 2: RuntimeError: shape '[1, 2, 32, 32]' is invalid"),
    ("frozen", "generator 'frozen' from misbehaving 0.1 [misbehaving_mod] has no trainable parameters"),
    ("exits", "generator 'exits' from misbehaving 0.1 [misbehaving_mod] failed to build: SystemExit: usage: mygen "
              "--help"),
    ("integer", "generator 'integer' from misbehaving 0.1 [misbehaving_mod] returned a int64 tensor that no gradient "
                "flows through"),  # not a traceback from the first backward pass
    ("interrupts", "generator 'interrupts' from misbehaving 0.1 [misbehaving_mod] failed its contract check at "
                   "image size 32, batch 2: it raised KeyboardInterrupt (no Ctrl-C came)"),  # not exit 130
    ("os_exits", "generator 'os_exits' from misbehaving 0.1 [misbehaving_mod] failed to build: it called "
                 "os._exit(0)"),  # not exit 0
])
def test_a_misbehaving_builder_is_one_error_naming_the_plugin(tmp_path, photos, gen, words):
    env = site(tmp_path, {"misbehaving": MISBEHAVING})
    proc = run_zoo(*tiny_args(photos, tmp_path / "run", 1, "--gen", gen), env=env)
    expect_error(proc, 2, words)  # not exit 0 having trained nothing, not an optimizer traceback
    assert not (tmp_path / "run").exists()


def test_a_hook_calling_sys_exit_is_skipped_with_one_warning(tmp_path):
    env = site(tmp_path, {"exithook": "import sys\nimport zoo\n\n@zoo.hookimpl\ndef register_generators(register):\n"
                                      "    sys.exit(3)\n"})
    proc = run_zoo("list", "--json", env=env)
    expect_ok(proc)
    (warning,) = warning_lines(proc.stderr)
    assert "'exithook' from exithook 0.1" in warning and "SystemExit" in warning and "unet" in proc.stdout


def test_a_component_of_a_disabled_plugin_is_not_called_uninstalled(tmp_path, photos):
    proc = run_zoo(*tiny_args(photos, tmp_path / "run", 1), env={**FAST, "ZOO_DISABLE_PLUGINS": "unet"})
    error = expect_error(proc, 2, "no generator named 'unet'", "ZOO_DISABLE_PLUGINS disables the plugin(s) 'unet', "
                         "which may provide it")
    assert "not installed" not in error
    assert not (tmp_path / "run").exists()


def test_names_and_messages_from_plugins_are_shown_escaped(tmp_path):
    hook = ("import zoo\n\n@zoo.hookimpl\ndef register_generators(register):\n"
            "    raise RuntimeError('\\x1b[2J\\x1b[Hgone\\nsecond line')\n")
    env = site(tmp_path, {"esc": hook})
    proc = run_zoo("list", env=env)
    expect_ok(proc)
    (warning,) = warning_lines(proc.stderr)
    assert "\x1b" not in proc.stderr and "\\x1b[2J\\x1b[Hgone\\nsecond line" in warning


def test_zoo_plugins_and_zoo_list_show_names_versions_and_descriptions_escaped(tmp_path):
    # a distribution whose name, version, entry-point name and option description hold ESC sequences
    code = """
        from pydantic import Field
        import torch.nn as nn
        import zoo

        class Opts(zoo.Options):
            width: int = Field(8, ge=1, description="filters\\x1b[2J\\x1b[H wiped")

        @zoo.hookimpl
        def register_generators(register):
            register("esc_gen", lambda options, context: nn.Conv2d(1, 2, 1), Opts)
    """
    env = {**make_plugin_dist(tmp_path / "site", "esc\x1b[2Jdist", {"esc_mod": code}, {"esc\x1b[31mname": "esc_mod"},
                              version="0.1\x1b[2J"), **FAST}
    plugins = run_zoo("plugins", env=env)
    listing = run_zoo("list", "--kind", "generator", env=env)
    for proc in (plugins, listing):
        expect_ok(proc)
        assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr, proc.stdout
    assert "esc\\x1b[31mname: esc_mod from esc\\x1b[2Jdist 0.1\\x1b[2J [loaded]" in plugins.stdout
    assert "esc_gen  (esc\\x1b[2Jdist 0.1\\x1b[2J)" in listing.stdout
    assert "filters\\x1b[2J\\x1b[H wiped" in listing.stdout


def test_a_run_of_a_disabled_plugin_says_disabled_not_install(tmp_path, photos):
    """A real run records its generator's provider (misbehaving==0.1); with that plugin disabled, its checkpoint
    is refused as disabled, never "install 'misbehaving==0.1'" (it is installed) or "another version"."""
    good = """
        import torch.nn as nn
        from pydantic import Field
        import zoo

        class Opts(zoo.Options):  # takes the options the tiny test config sets
            n_down: int = Field(3, ge=1, description="unused")
            ngf: int = Field(8, ge=1, description="unused")

        @zoo.hookimpl
        def register_generators(register):
            register("fine", lambda options, context: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh()), Opts)
    """
    env = site(tmp_path, {"fineplug": textwrap.dedent(good)})
    run = tmp_path / "run"
    run_zoo(*tiny_args(photos, run, 1, "--gen", "fine"), env=env, check_rc=0)
    image = tmp_path / "x.png"
    photo("astronaut", 32).save(image)
    proc = run_zoo("colorize", str(image), "--model", str(run), "--out", str(tmp_path / "out"), "--no-progress",
                   env={**env, "ZOO_DISABLE_PLUGINS": "fineplug"})
    line = expect_error(proc, 2, "needs generator 'fine', which no enabled plugin provides: 'fineplug' is disabled by "
                                 "ZOO_DISABLE_PLUGINS")
    assert "install" not in line and "another version" not in line
