"""Shared test helpers: run the real `zoo` command, and make real plugin distributions on disk."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A tiny but complete training config: every test that trains uses it (seconds on 2 CPUs).
TINY = ["--image-size", "32", "--batch-size", "4", "--set", "generator.options.n_down=3",
        "--set", "generator.options.ngf=8", "--set", "discriminator.options.ndf=8",
        "--set", "data.load_size=40", "--set", "num_samples=2", "--no-progress"]


# The same tiny config as --set overrides, for tests that build specs in-process.
TINY_SET = ["generator.options.n_down=3", "generator.options.ngf=8", "discriminator.options.ndf=8",
            "data.load_size=40", "num_samples=2"]


def train_tiny(out: Path, steps: int = 2, extra_set: list[str] = ()) -> Path:
    """Train the TINY config in-process (the real engine) into ``out``; returns ``out``."""
    from zoo.engine import Trainer
    from zoo.spec import build_spec

    spec, _ = build_spec(None, None, {"data.image_size": 32, "data.batch_size": 4, "steps": steps},
                         TINY_SET + list(extra_set))
    Trainer.create(spec, run_dir=out, progress=False, log=lambda m: None).fit()
    return out


def run_zoo(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
            check_rc: int | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m zoo ARGS`` in a subprocess, exactly as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def make_plugin_dist(root: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str],
                     version: str = "0.1") -> dict[str, str]:
    """Write a real installed-looking distribution (dist-info + modules) under ``root``.

    Returns the environment (PYTHONPATH) that makes the `zoo` command see it through importlib.metadata.
    """
    root.mkdir(parents=True, exist_ok=True)
    # dist-info folder names use the normalized name (runs of -_. become _), as pip writes them.
    info = root / f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[zoo]\n{eps}")
    for name, code in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(code))
    return {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


@pytest.fixture
def plugin_dist(tmp_path):
    def make(dist: str, modules: dict[str, str], entry_points: dict[str, str], version: str = "0.1"):
        return make_plugin_dist(tmp_path / "site" / dist, dist, modules, entry_points, version)
    return make
