"""Data at any scale: time to first step, memory and img/s of ``zoo train`` for 1k, 4k and 16k images, with the
training set streamed from the files, read from the decoded cache, or held in memory.

Run (pytest-benchmark; the file is named explicitly because it is not a ``test_*.py`` file)::

    python -m pytest benchmarks/bench_data_scale.py --benchmark-enable -p no:cacheprovider          # CPU default
    ZOO_BENCH_SEED=1 python -m pytest benchmarks/bench_data_scale.py --benchmark-enable -p no:cacheprovider \\
        --benchmark-json data-scale.json                                                          # + seed config
    ZOO_BENCH_DATA_SIZES=40,80 ZOO_BENCH_DATA_STEPS=2 python -m pytest benchmarks/bench_data_scale.py \\
        --benchmark-enable -p no:cacheprovider -k "not seed"                                       # a smoke run

Configs: ``cpu`` (no preset: 64 px crops of 80 px images, batch 16) and ``seed`` (``--preset seed``: 256 px, batch
16, U-Net 54 M + PatchGAN; behind ``ZOO_BENCH_SEED=1``, a step takes seconds on a CPU). Precision ``auto``,
``compile = "off"`` (compiling would be most of the first step). ``--zoo-device`` / ``ZOO_BENCH_DEVICE`` as in
benchmarks/conftest.py.

Data: per size N of ``ZOO_BENCH_DATA_SIZES`` (default ``1000,4000,16000``) a folder with N JPEGs in ``train/`` and
8 in ``val/``, made once per session in a temporary folder: random crops (distinct per file, seeded by the file's
number) of the nine embedded photos, resized to 640x480 or 480x640 (COCO's size) and saved at quality 90. The
folders of all sizes hard-link one pool of files, so 16k images are written once.

Modes, each in a fresh process (``python benchmarks/bench_data_scale.py CASE_JSON``, so that its memory is its
own; it prints one JSON line that the test records in ``extra_info``):

* ``streamed``: ``data.in_memory_mb = 0``, ``data.cache = "off"``: rows decoded from the files by the loader's
  worker processes (``data.workers = "auto"``);
* ``cached``: ``data.in_memory_mb = 0`` with a decoded cache built beforehand (``zoo.datacache.build``, what
  ``zoo data cache`` runs) under ``$ZOO_CACHE_DIR``, which the engine reads by itself (``data.cache = "auto"``);
  the build's time is ``cache_build_s``, not part of the run's start;
* ``in_memory``: the small-source path, decoded once from the files at start (``data.cache = "off"``) when the
  decoded set fits ``data.in_memory_mb`` (the default 256 MiB; ``ZOO_BENCH_DATA_IN_MEMORY_MB`` to change). A set
  that does not fit is not run: its row has ``applies: false`` and the ``reason`` (the engine's own rule,
  ``zoo.data.in_memory_fits``), its timing is that check and its measurements are null.

``extra_info`` of a run: ``first_step_s`` (``Trainer.create``: listing, then decoding or opening the data; plus
the first step, which starts the loader's workers), ``create_s``, ``img_per_s`` over ``ZOO_BENCH_DATA_STEPS``
(default 5) steps after the first (a streamed rate is the steady one only when the steps outnumber the batches
the workers read ahead, 4 per worker), ``rss_mb`` (the main process's resident memory after those steps minus before
``Trainer.create``; /proc/self/status VmRSS, else getrusage's max RSS: models, optimizer state and the step's
buffers are in every mode's number, the data's share is the difference between modes), ``create_rss_mb`` (the
same right after ``Trainer.create``: models and data, before any step), ``peak_rss_mb`` (VmHWM minus the same
start), ``workers_pss_mb`` (the loader workers' proportional set size, /proc/PID/smaps_rollup, so pages shared
with the main process are not counted twice), ``workers``, ``how`` (what the engine says it did) and ``threads``.
A table of all rows is printed at the end of the session.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CONFIGS = ["cpu", "seed"]
MODES = ["streamed", "cached", "in_memory"]
SEED_OPT_IN = os.environ.get("ZOO_BENCH_SEED") == "1"
VAL_IMAGES = 8
RESULT_PREFIX = "ZOO_BENCH_DATA "


def _env_ints(name: str, default: str) -> list[int]:
    raw = os.environ.get(name, default)
    try:
        values = [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise pytest.UsageError(f"{name}={raw!r}: give positive integers separated by commas, e.g. {default}")
    return values


SIZES = _env_ints("ZOO_BENCH_DATA_SIZES", "1000,4000,16000")
STEPS = _env_ints("ZOO_BENCH_DATA_STEPS", "5")[0]


def _in_memory_budget() -> int:
    from zoo.spec import DataSpec

    raw = os.environ.get("ZOO_BENCH_DATA_IN_MEMORY_MB")
    return int(raw) if raw else int(DataSpec.model_fields["in_memory_mb"].default)


def _spec(config: str, folder: str, mode: str, device: str = "auto"):
    from zoo.spec import build_spec

    flags = {"data.source": folder, "precision": "auto", "steps": 1000, "device": device, "compile": "off",
             "data.in_memory_mb": _in_memory_budget() if mode == "in_memory" else 0,
             "data.cache": "auto" if mode == "cached" else "off"}
    spec, _ = build_spec("seed" if config == "seed" else None, None, flags, [])
    return spec


# ---- the data: N JPEGs like COCO's, made from the embedded photos ------------------------------------------


class Photos:
    """A pool of distinct JPEGs (file k: a seeded random crop of one embedded photo, 640x480 or 480x640) and
    folders of N of them (hard links), made on demand and kept for the session."""

    def __init__(self, root: Path):
        self.root, self.pool = root, root / "pool"
        self.pool.mkdir(parents=True, exist_ok=True)
        self._bases = None

    def _photo(self, k: int) -> Path:
        import numpy as np
        from PIL import Image

        path = self.pool / f"{k:07d}.jpg"
        if path.is_file():
            return path
        if self._bases is None:
            from zoo.sources import embedded_source

            source = embedded_source()
            self._bases = [item.load() for item in source.train + source.val]
        rng = np.random.default_rng([20240611, k])
        base = self._bases[int(rng.integers(len(self._bases)))]
        out_w, out_h = (480, 640) if rng.random() < 0.25 else (640, 480)
        bw, bh = base.size
        scale = min(bw / out_w, bh / out_h) * rng.uniform(0.6, 1.0)  # the largest box of this aspect, shrunk
        cw, ch = max(8, int(out_w * scale)), max(8, int(out_h * scale))
        left, top = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
        img = base.crop((left, top, left + cw, top + ch)).resize((out_w, out_h), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        tmp = path.with_name(path.name + ".tmp")
        img.save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
        return path

    def folder(self, n: int) -> Path:
        """``data-N/train`` (pool files 0 .. N-1) and ``data-N/val`` (8 files of their own)."""
        folder = self.root / f"data-{n}"
        done = folder / ".complete"
        if done.is_file():
            return folder
        for part, ks in (("train", range(n)), ("val", range(10**6, 10**6 + VAL_IMAGES))):
            (folder / part).mkdir(parents=True, exist_ok=True)
            for k in ks:
                link = folder / part / f"{k:07d}.jpg"
                if not link.exists():
                    try:
                        os.link(self._photo(k), link)
                    except OSError:  # a file system without hard links
                        import shutil

                        shutil.copyfile(self._photo(k), link)
        done.touch()
        return folder


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Photos:
    return Photos(tmp_path_factory.mktemp("data-scale"))


@pytest.fixture(scope="session")
def caches(photos):
    """(folder, size) -> seconds the build took; the caches live under ``photos.root / "cache"``."""
    built: dict[tuple[str, int], float] = {}

    def get(folder: Path, size: int) -> float:
        from zoo import datacache
        from zoo.sources import resolve_source

        key = (str(folder), size)
        if key not in built:
            t0 = time.perf_counter()
            workers = max(1, min(8, (os.cpu_count() or 2) - 1))  # zoo data cache's default
            datacache.build(resolve_source(str(folder)), size, log=lambda msg: None, root=photos.root / "cache",
                            workers=workers)
            built[key] = time.perf_counter() - t0
        return built[key]

    return get


# ---- one case in a fresh process ----------------------------------------------------------------------------


def _status_kib(field: str, pid: str = "self") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _memory_kib() -> tuple[int, int, str]:
    """(resident now, resident peak, how measured), KiB."""
    rss, hwm = _status_kib("VmRSS"), _status_kib("VmHWM")
    if rss is not None and hwm is not None:
        return rss, hwm, "/proc/self/status VmRSS and VmHWM"
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return peak, peak, "resource.getrusage ru_maxrss (a high-water mark)"


def _workers_kib() -> int | None:
    """Proportional set size of this process's children (the loader workers), KiB; RSS where PSS is unreadable."""
    me, total = os.getpid(), 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != me:
                continue
        except (OSError, ValueError, IndexError):
            continue
        try:
            pss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                       if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError, IndexError):
            pss = _status_kib("VmRSS", pid) or 0
        total += pss
    return total


def _child(case_json: str) -> int:
    """Run one case: Trainer.create, a first step, ``steps`` timed steps; print the measurements as one line."""
    t_import = time.perf_counter()
    import torch

    from zoo.engine import Trainer
    from zoo.loader import resolve_workers

    case = json.loads(case_json)
    spec = _spec(case["config"], case["folder"], case["mode"], case["device"])
    import_s = time.perf_counter() - t_import
    rss0, _, method = _memory_kib()
    t0 = time.perf_counter()
    trainer = Trainer.create(spec, run_dir=case["run_dir"], progress=False,
                             log=lambda msg: print(msg, file=sys.stderr, flush=True))
    create_s = time.perf_counter() - t0
    rss_created, _, _ = _memory_kib()

    def step(k: int) -> None:
        L, ab = trainer.batches(k)
        trainer.train_step(L, ab, trainer.schedule.stage(k))
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)

    step(0)
    first_step_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    for k in range(1, case["steps"] + 1):
        step(k)
    seconds = time.perf_counter() - t1
    rss, hwm, _ = _memory_kib()
    workers_kib = _workers_kib()
    train = trainer.data.train
    expected = {"streamed": "streamed", "cached": "read from the decoded cache", "in_memory": "in memory"}[case["mode"]]
    if not train.how.startswith(expected):
        raise SystemExit(f"bench_data_scale: mode {case['mode']} expected the engine to say {expected!r}, it says "
                         f"{train.how!r}")
    result = {
        "images": len(train), "how": train.how, "workers": resolve_workers(spec.data.workers, train),
        "image_size": spec.data.image_size, "decode_size": spec.data.decode_size, "batch_size": spec.data.batch_size,
        "device": str(trainer.device), "precision": trainer.runtime.precision, "threads": torch.get_num_threads(),
        "import_s": round(import_s, 2), "create_s": round(create_s, 2), "first_step_s": round(first_step_s, 2),
        "steps": case["steps"], "img_per_s": round(spec.data.batch_size * case["steps"] / seconds, 2),
        "create_rss_mb": round((rss_created - rss0) / 1024, 1), "rss_mb": round((rss - rss0) / 1024, 1),
        "peak_rss_mb": round((hwm - rss0) / 1024, 1),
        "workers_pss_mb": None if workers_kib is None else round(workers_kib / 1024, 1), "memory_method": method,
    }
    trainer.batches.close()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


def _run_child(case: dict, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(case)], capture_output=True,
                          text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"case {case['config']}/{case['mode']}/{case['n']} exited {proc.returncode}:\n"
                    f"{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


# ---- the benchmarks ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(request):
    """Every row of this module, printed side by side when it ends."""
    rows: list[dict] = []
    yield rows
    if not rows:
        return
    cols = ("config", "images", "mode", "workers", "first_step_s", "create_rss_mb", "rss_mb", "peak_rss_mb",
            "workers_pss_mb", "img_per_s", "cache_build_s")
    cells = [[str(c) for c in cols]] + [
        ["" if row.get(c) is None else str(row[c]) for c in cols] if row.get("applies", True)
        else [str(row[c]) for c in cols[:3]] + ["-"] * (len(cols) - 3) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    lines += [f"not run: {row['config']} {row['images']} {row['mode']}: {row['reason']}" for row in rows
              if not row.get("applies", True)]
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    with capture.global_and_fixture_disabled():
        for line in ["", "bench_data_scale (seconds, MiB, img/s):", *lines]:
            reporter.write_line(line) if reporter is not None else print(line)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("config", CONFIGS)
def test_data_scale(benchmark, bench_config, photos, caches, table, tmp_path, config, n, mode):
    if config == "seed" and not SEED_OPT_IN:
        pytest.skip("the seed config (256 px, 54 M U-Net) takes seconds per step on a CPU: set ZOO_BENCH_SEED=1")
    from zoo.data import in_memory_fits

    folder = photos.folder(n)
    spec = _spec(config, str(folder), mode, bench_config.device)
    size = spec.data.decode_size
    info: dict = {"config": config, "mode": mode, "images": n, "image_size": spec.data.image_size,
                  "decode_size": size, "batch_size": spec.data.batch_size}
    if mode == "in_memory" and not in_memory_fits(n, size, spec.data.in_memory_mb):
        reason = (f"{n:,} images at {size} px take {n * 3 * size * size / 2**20:.0f} MiB decoded, over "
                  f"data.in_memory_mb = {spec.data.in_memory_mb}: the engine streams them")
        benchmark.pedantic(in_memory_fits, args=(n, size, spec.data.in_memory_mb), rounds=1, iterations=1)
        info.update(applies=False, reason=reason, first_step_s=None, rss_mb=None, img_per_s=None)
        benchmark.extra_info.update(info)
        table.append(info)
        return
    if mode == "cached":
        info["cache_build_s"] = round(caches(folder, size), 2)
        info["cache_mb"] = round((n + VAL_IMAGES) * 3 * size * size / 2**20, 1)
    env = {**os.environ, "ZOO_CACHE_DIR": str(photos.root / "cache")}
    case = {"config": config, "mode": mode, "n": n, "folder": str(folder), "device": bench_config.device,
            "steps": STEPS, "run_dir": str(tmp_path / "run")}
    out: dict = {}
    benchmark.pedantic(lambda: out.update(_run_child(case, env)), rounds=1, iterations=1)
    info.update(applies=True, **out)
    benchmark.extra_info.update(info)
    table.append(info)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
