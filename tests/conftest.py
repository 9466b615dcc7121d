"""Shared test helpers, defined once and imported as ``from conftest import X`` (pytest puts tests/ on sys.path).

* Running zoo: `run_zoo` (the `zoo` command through its entry point in this process, or a real `python -m zoo`
  subprocess where the test needs a process: `process=True`, a cwd, an env beyond `FAST`), `FAST` (the one-thread
  environment), `zoo_here` (always in this process),
  `expect_ok` / `expect_error` / `one_error_line` (the exit code and the single `zoo: error:` line).
* Training: `TINY` (CLI flags) / `TINY_SET` (spec overrides) for a tiny but complete config, `tiny_spec`,
  `tiny_args`, `train` (the real engine in-process), `train_tiny`, `assert_same_tensors`; fixtures `one_thread`,
  `photos` (six real 48 px photos), `tiny_run` (a 2-step run trained once per session, read-only).
* Bad files: `photo`, `bomb_png`, `truncate`; a full disk: the `small_disk` fixture (a real tmpfs) and `fill`.
* Plugins: `make_plugin_dist` / the `plugin_dist` fixture (a real dist-info on disk), and the `example_plugin`
  fixture (examples/zoo-example-plugin visible to pluggy whether or not it is pip-installed).
* `ZOO_VERSION`: zoo's version from its package metadata, for messages that name it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import struct
import subprocess
import sys
import textwrap
import tomllib
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "examples" / "zoo-example-plugin"
ZOO_VERSION = importlib.metadata.version("zoo")

# One intra-op thread: the zoo subprocesses run in seconds even when other jobs share the two cores.
FAST = {"OMP_NUM_THREADS": "1"}


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (the README's ``-n auto``) each worker's torch gets its share of the cores, and so do
    the processes it starts; one process per core with two threads each would only contend."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


_share_the_cores_between_workers()

# A tiny but complete training config: every test that trains uses it (seconds on 2 CPUs).
TINY = ["--image-size", "32", "--batch-size", "4", "--set", "generator.options.n_down=3",
        "--set", "generator.options.ngf=8", "--set", "discriminator.options.ndf=8",
        "--set", "data.load_size=40", "--set", "num_samples=2", "--no-progress"]

# The same tiny config as --set overrides, for tests that build specs in-process.
TINY_SET = ["generator.options.n_down=3", "generator.options.ngf=8", "discriminator.options.ndf=8",
            "data.load_size=40", "num_samples=2"]


# ----------------------------------------------------------------------------------------------------
# Running the `zoo` command


def run_zoo(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
            check_rc: int | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """Run the ``zoo ARGS`` command and return its exit code, stdout and stderr.

    By default in this process, through the command's entry point (:func:`_zoo_in_process`: the same parser, error
    handling, exit codes and output as ``python -m zoo``, without the ~6 s of interpreter, torch and dynamo start-up
    that a subprocess pays). As a real ``python -m zoo`` subprocess when the test needs one: ``process=True`` (signals,
    a second process, a crash), a ``cwd``, or an ``env`` beyond ``FAST`` (PYTHONPATH of a plugin, ZOO_* variables,
    torchrun's variables). ``FAST`` alone stays in process: this worker's torch already runs its share of the cores
    (``_share_the_cores_between_workers``), one thread under the README's two workers.

    ``ZOO_TESTS_IN_SUBPROCESSES=1`` runs every command as a subprocess (the whole suite as a user's shell would run
    it, about three times slower): CONTRIBUTING.md, "Tests"."""
    in_process = not (process or cwd is not None or os.environ.get("ZOO_TESTS_IN_SUBPROCESSES") == "1")
    if in_process and all(FAST.get(k) == v for k, v in (env or {}).items()):
        proc = _zoo_in_process(args)
    else:
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=full_env,
                              cwd=cwd, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _zoo_in_process(args) -> subprocess.CompletedProcess:
    """``zoo.cli.main(args)`` with stdout and stderr captured as a process's would be: byte streams in UTF-8, strict
    on stdout and backslashreplace on stderr (Python's own stream settings), read back as ``subprocess.run(text=True)``
    reads them, so a name that cannot be printed fails here as it would in a terminal. The registry is built
    afresh for the command, as a new process would (a test may have changed ZOO_* or sys.path), and dropped after."""
    import contextlib
    import io

    from zoo.cli import main
    from zoo.registry import get_registry

    streams = {name: io.BytesIO() for name in ("stdout", "stderr")}
    out = io.TextIOWrapper(streams["stdout"], encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(streams["stderr"], encoding="utf-8", errors="backslashreplace", write_through=True)
    get_registry.cache_clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        get_registry.cache_clear()
    # as text=True reads a pipe: strict UTF-8, universal newlines (a progress bar's \r is a line end)
    text = [streams[name].getvalue().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
            for name in ("stdout", "stderr")]
    return subprocess.CompletedProcess(["zoo", *args], rc, *text)


def zoo_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """``zoo ARGS`` in this process whatever the environment (``run_zoo`` without its subprocess cases); ``capsys``
    is emptied first, so what the test printed before is not mistaken for the command's output."""
    capsys.readouterr()
    return _zoo_in_process(args)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("zoo: error:")]


def expect_error(proc, rc: int, *words: str) -> str:
    """The command failed with exit code ``rc`` and exactly one `zoo: error:` line holding ``words``."""
    assert proc.returncode == rc, f"rc {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def expect_ok(proc) -> None:
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr and not error_lines(proc.stderr), proc.stderr


def one_error_line(result) -> str:
    """The whole stderr of a usage error is one `zoo: error:` line: a finished `zoo` process (exit code 2), or
    the captured output of an in-process ``zoo.cli.main`` call (capsys.readouterr())."""
    stderr = result.stderr if isinstance(result, subprocess.CompletedProcess) else result.err
    assert getattr(result, "returncode", 2) == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), stderr
    return lines[0]


# ----------------------------------------------------------------------------------------------------
# Training


def tiny_args(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    """`zoo train` arguments for the TINY config on ``data`` (a folder) into ``out``."""
    return ["train", "--data", str(data), "--steps", str(steps), "--out", str(out), *TINY, *extra]


def tiny_spec(data: Path | None = None, steps: int = 2, extra_set: list[str] = (), **flags):
    """The TINY config as a resolved spec; ``data`` None: the embedded photos. ``flags``: spec keys."""
    from zoo.spec import build_spec

    source = {} if data is None else {"data.source": str(data)}
    spec, _ = build_spec(None, None, {**source, "data.image_size": 32, "data.batch_size": 4, "steps": steps,
                                      **flags}, TINY_SET + list(extra_set))
    return spec


def train(spec, run_dir: Path):
    """Train ``spec`` in this process with the real engine into ``run_dir``; returns the finished Trainer."""
    from zoo.engine import Trainer

    trainer = Trainer.create(spec, run_dir=run_dir, progress=False, log=lambda line: None)
    trainer.fit()
    return trainer


def train_tiny(out: Path, steps: int = 2, extra_set: list[str] = ()) -> Path:
    """Train the TINY config in-process (the real engine) into ``out``; returns ``out``."""
    train(tiny_spec(steps=steps, extra_set=extra_set), out)
    return out


def assert_same_tensors(a: Path, b: Path) -> None:
    """Two checkpoint files (safetensors) hold the same tensor names with bit-identical values."""
    import torch
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert ta.keys() == tb.keys()
    for key in ta:
        assert torch.equal(ta[key], tb[key]), key


@pytest.fixture
def one_thread():
    """In-process training with one intra-op thread, like the FAST subprocesses (same numbers, less waiting)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A TINY run folder named ``run`` (2 steps on the embedded photos), trained once for the whole session.

    Shared: tests read it and write their outputs elsewhere."""
    return train_tiny(tmp_path_factory.mktemp("tiny") / "run", steps=2)


# ----------------------------------------------------------------------------------------------------
# Real and bad image files


def photo(name: str, size: int | None = 48):
    """A real photo from skimage.data as a PIL RGB image, optionally resized to size x size."""
    import skimage.data
    from PIL import Image

    img = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return img.resize((size, size), Image.BICUBIC) if size else img


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of six real 48 px photos: the data of every training test in the corpus (fast to decode)."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        photo(name).save(root / f"{name}.png")
    return root


def bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A 70-byte PNG whose header claims width x height pixels (4.8 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def truncate(path: Path) -> Path:
    """Cut a file to its first half (a download that stopped)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


# ----------------------------------------------------------------------------------------------------
# A full disk


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB tmpfs (root only; skipped where mount is not allowed): full-disk tests."""
    mount = tmp_path / "disk"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("cannot run mount here")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def fill(folder: Path) -> None:
    """Fill the file system of ``folder`` to the last byte (unbuffered writes: nothing left to flush)."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------------------
# Plugins as real distributions


def _dist_info(root: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    # dist-info folder names use the normalized name (runs of -_. become _), as pip writes them.
    info = root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[zoo]\n{eps}")


def _pythonpath(root: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def make_plugin_dist(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                     version: str = "0.1") -> dict[str, str]:
    """Write a real installed-looking distribution (dist-info + modules) under ``root``.

    Returns the environment (PYTHONPATH) that makes the `zoo` command see it through importlib.metadata.
    """
    root.mkdir(parents=True, exist_ok=True)
    _dist_info(root, dist, version, entry_points)
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    return _pythonpath(root)


@pytest.fixture
def plugin_dist(tmp_path):
    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1"):
        return make_plugin_dist(tmp_path / "site" / dist, dist, modules, entry_points, version)
    return make


EXAMPLE_PROJECT = tomllib.loads((EXAMPLE_PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _example_plugin_installed() -> bool:
    try:
        importlib.metadata.distribution(EXAMPLE_PROJECT["name"])
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("zoo_example_plugin") is not None


@pytest.fixture(scope="session")
def _example_plugin_site(tmp_path_factory) -> Path | None:
    """None when examples/zoo-example-plugin is pip-installed (as .ci/run does); else a folder that installs it
    the way pip would: a dist-info with its real name, version and entry points (read from its pyproject.toml)
    next to its package (a link to the source, so the code tested is the code in the repository)."""
    if _example_plugin_installed():
        return None
    site = tmp_path_factory.mktemp("example-plugin-site")
    _dist_info(site, EXAMPLE_PROJECT["name"], EXAMPLE_PROJECT["version"], EXAMPLE_PROJECT["entry-points"]["zoo"])
    (site / "zoo_example_plugin").symlink_to(EXAMPLE_PLUGIN / "zoo_example_plugin", target_is_directory=True)
    return site


@pytest.fixture(scope="module")
def example_plugin(_example_plugin_site) -> dict[str, str]:
    """examples/zoo-example-plugin, visible for one test module to this process (sys.path: importlib.metadata
    finds its entry points) and to subprocesses (returned env, also set in os.environ for the module).

    Installed or not, the components come from the real entry points of a real distribution."""
    from zoo.registry import get_registry

    if _example_plugin_site is None:
        yield {}
        return
    env = _pythonpath(_example_plugin_site)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(_example_plugin_site))  # also invalidates the import caches
        mp.setenv("PYTHONPATH", env["PYTHONPATH"])
        get_registry.cache_clear()
        yield env
    get_registry.cache_clear()
    sys.modules.pop("zoo_example_plugin", None)
    for name in [n for n in sys.modules if n.startswith("zoo_example_plugin.")]:
        sys.modules.pop(name)
