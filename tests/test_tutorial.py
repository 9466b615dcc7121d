"""docs/writing-a-plugin.md works as written: its files, its `zoo` commands and the output it shows.

The tutorial's files (code blocks whose first line is ``# <path>``) are written to a folder; instead of
``pip install -e .`` (slow, and it would change this environment) the distribution is written by hand from the
tutorial's own pyproject (name, version, entry points) with ``make_plugin_dist``. Then every ``zoo`` command of
the tutorial runs as a subprocess (``zoo train`` with tiny settings appended), and every ``text`` block must
appear in the output of the command just before it.
"""
import importlib.util
import re
import shlex
import sys
import tomllib

import pytest

from conftest import REPO, make_plugin_dist, run_zoo

TUTORIAL = REPO / "docs" / "writing-a-plugin.md"
# appended to the tutorial's `zoo train` commands: later flags win, so they run in seconds
TINY_TRAIN = ["--steps", "2", "--image-size", "32", "--batch-size", "4", "--set", "generator.options.ngf=8",
              "--set", "discriminator.options.ndf=8", "--set", "num_samples=2", "--no-progress"]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(TUTORIAL.read_text(encoding="utf-8"))]


def files() -> dict[str, str]:
    """Code blocks that start with ``# <path>``: the files the tutorial asks the reader to write."""
    out = {}
    for lang, code in blocks():
        first = code.splitlines()[0]
        if lang in ("python", "toml") and re.fullmatch(r"# [\w./-]+\.(py|toml)", first):
            out[first[2:]] = code
    return out


def commands() -> list[tuple[list[str], str | None]]:
    """Each `zoo` command of the bash blocks, with the text block that follows its block (if any)."""
    out = []
    items = blocks()
    for i, (lang, code) in enumerate(items):
        if lang != "bash":
            continue
        zoo_lines = [shlex.split(line, comments=True) for line in code.splitlines() if line.startswith("zoo ")]
        expected = items[i + 1][1] if i + 1 < len(items) and items[i + 1][0] == "text" else None
        for j, argv in enumerate(zoo_lines):
            out.append((argv[1:], expected if j == len(zoo_lines) - 1 else None))
    return out


@pytest.fixture(scope="module")
def tutorial_plugin(tmp_path_factory):
    """The tutorial's folder with its files, and the environment in which its distribution is installed."""
    folder = tmp_path_factory.mktemp("zoo-my-gen")
    for path, code in files().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(code, encoding="utf-8")
    project = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    modules = project["tool"]["setuptools"]["py-modules"]
    site = tmp_path_factory.mktemp("site")
    env = make_plugin_dist(site, project["project"]["name"], {m: (folder / f"{m}.py").read_text() for m in modules},
                          project["project"]["entry-points"]["zoo"], version=project["project"]["version"])
    return folder, site, env


def test_tutorial_has_the_promised_pieces():
    assert {"my_gen.py", "pyproject.toml", "tests/test_my_gen.py"} <= set(files())
    argvs = [argv for argv, _ in commands()]
    assert ["train", "--gen", "my_gen", "--disc", "patch"] in argvs
    assert ["plugins"] in argvs and any(a[0] == "list" for a in argvs)
    for lang, code in blocks():
        if lang == "bash":
            assert "pip install -e ." in code or "pip" not in code


def test_every_zoo_command_of_the_tutorial_works(tutorial_plugin, tmp_path):
    folder, _, env = tutorial_plugin
    ran = 0
    for argv, expected in commands():
        if argv[0] == "train":
            argv = [*argv, *TINY_TRAIN, "--out", str(tmp_path / f"run{ran}")]
        proc = run_zoo(*argv, env=env, cwd=folder)
        assert proc.returncode == 0, f"zoo {shlex.join(argv)}: rc {proc.returncode}\n{proc.stderr}"
        for line in (expected or "").splitlines():
            assert line in proc.stdout.splitlines(), f"zoo {shlex.join(argv)} did not print {line!r}:\n{proc.stdout}"
        if argv[0] == "train":
            assert list((tmp_path / f"run{ran}" / "checkpoints").glob("step-000002.safetensors"))
        ran += 1
    assert ran == len(commands()) >= 3


def test_the_tutorials_contract_test_passes(tutorial_plugin, monkeypatch):
    folder, site, _ = tutorial_plugin
    monkeypatch.syspath_prepend(str(site))  # the hand-made distribution, seen by importlib.metadata
    spec = importlib.util.spec_from_file_location("tutorial_test_my_gen", folder / "tests" / "test_my_gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tests = [getattr(module, n) for n in dir(module) if n.startswith("test_")]
    assert tests
    for test in tests:
        test()
    monkeypatch.delitem(sys.modules, "my_gen", raising=False)


def test_the_tutorials_contract_test_catches_a_broken_my_gen(tutorial_plugin, tmp_path, monkeypatch):
    """The contract test in the tutorial can fail: without the final Tanh the output leaves [-1, 1]."""
    folder, _, _ = tutorial_plugin
    code = (folder / "my_gen.py").read_text().replace(", nn.Tanh()]", "]")
    assert code != (folder / "my_gen.py").read_text()
    site = tmp_path / "site"
    make_plugin_dist(site, "zoo-my-gen", {"my_gen": code}, {"my_gen": "my_gen"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "my_gen", raising=False)
    import zoo.testing

    with pytest.raises(AssertionError, match=r"generator 'my_gen' from zoo-my-gen 0.1 \[my_gen\].*leaves \[-1, 1\]"):
        zoo.testing.check_component("generator", "my_gen", image_size=32, option_sets=[{"ngf": 8, "n_layers": 2}])
    monkeypatch.delitem(sys.modules, "my_gen", raising=False)
