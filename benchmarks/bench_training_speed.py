"""Training and inference speed of ``zoo train``, next to a plain reimplementation of the seed's pipeline.

Run (pytest-benchmark; the file is named explicitly because it is not a ``test_*.py`` file)::

    python -m pytest benchmarks/bench_training_speed.py --benchmark-enable          # CPU default + 256 px inference
    ZOO_BENCH_SEED=1 python -m pytest benchmarks/bench_training_speed.py --benchmark-enable \\
        --benchmark-json speed.json                                                  # + the seed config (slow)

Training cases, per config (``cpu``: the default preset, 64 px crops, batch 16; ``seed``: 256 px, batch 16,
U-Net 54 M + PatchGAN, behind ``ZOO_BENCH_SEED=1`` because a step takes seconds on a CPU), each one timed
step per round, data included:

* ``seed_pipeline``: the seed's pipeline written plainly: a torch ``Dataset`` that opens a JPEG, resizes it
  (bicubic), flips it at random and converts it with ``skimage.color.rgb2lab`` per image, a ``DataLoader``
  (the seed's 4 workers, ``ZOO_BENCH_SEED_WORKERS`` to change), fp32, NCHW, and the seed's step order (G
  forward; D step on fake.detach() and real; G step with D frozen), with the same nets built through the
  registry. The JPEGs are the embedded photos, downsized to at most 640 px (COCO's size).
* ``zoo_fp32``: the engine's own step (``Trainer.batches`` + ``Trainer.train_step``, i.e. ``zoo.batches`` and
  ``zoo.gan_step``) in fp32.
* ``zoo_auto``: the same with the default precision (``auto``: bf16 + channels_last on a CPU with
  avx512_bf16/AMX), eager (``compile = "off"``).
* ``zoo_auto_compile``: ``zoo_auto`` with ``compile = "on"`` (inductor; the warm-up step compiles, and its
  time is ``first_step_s`` in ``extra_info``).

``extra_info`` has ``img_per_s`` and ``speedup_vs_seed_pipeline`` (img/s over the seed pipeline's img/s of the
same config, measured in the same session). ``--zoo-device`` / ``ZOO_BENCH_DEVICE`` (benchmarks/conftest.py)
picks the device and ``--zoo-rounds`` the rounds (at least 10 for ``cpu``, at most 3 for ``seed``). Inference
cases: the config's generator at its image size (``seed``: 256 px), batch 16, eval mode through
``zoo.inference.Predictor`` (the path colorize and eval use), fp32, auto, and auto with ``compile=True``.
On CUDA every case adds ``peak_memory_mib`` (``torch.cuda.max_memory_allocated`` over the timed rounds);
``benchmarks/gpu_check.sh`` runs the file there and prints one table.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

CONFIGS = ["cpu", "seed"]
VARIANTS = ["seed_pipeline", "zoo_fp32", "zoo_auto", "zoo_auto_compile"]
SEED_OPT_IN = os.environ.get("ZOO_BENCH_SEED") == "1"
RESULTS: dict[tuple[str, str], float] = {}  # (config, variant) -> img/s measured in this session


def _spec(config: str, precision: str, device: str = "auto", compile: str = "off"):
    from zoo.spec import build_spec

    flags = {"data.source": "embedded", "precision": precision, "steps": 1000, "device": device, "compile": compile}
    spec, _ = build_spec("seed" if config == "seed" else None, None, flags, [])
    return spec


def _skip_unless_enabled(config: str) -> None:
    if config == "seed" and not SEED_OPT_IN:
        pytest.skip("the seed config (256 px, 54 M U-Net) takes seconds per step on a CPU: set ZOO_BENCH_SEED=1")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---- zoo's own pipeline ------------------------------------------------------------------------------------


class ZooSteps:
    """``zoo train``'s step: the engine's batch (index, augment, Lab on the device) and train_step."""

    def __init__(self, spec, run_dir: Path):
        from zoo.engine import Trainer

        self.trainer = Trainer.create(spec, run_dir=run_dir, progress=False, log=lambda msg: None)
        self.step = 0

    @property
    def batch_size(self) -> int:
        return self.trainer.spec.data.batch_size

    def __call__(self) -> None:
        t = self.trainer
        L, ab = t.batches(self.step)
        t.train_step(L, ab, t.schedule.stage(self.step))
        _sync(t.device)
        self.step += 1


# ---- the seed's pipeline, reimplemented plainly ------------------------------------------------------------


class SeedStyleDataset(torch.utils.data.Dataset):
    """Per image: open the file, resize (bicubic) to size x size, random flip, skimage rgb2lab, scale."""

    def __init__(self, paths: list[Path], size: int, length: int):
        self.paths, self.size, self.length = paths, size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        from PIL import Image
        from skimage.color import rgb2lab

        img = Image.open(self.paths[i % len(self.paths)]).convert("RGB").resize((self.size, self.size),
                                                                              Image.BICUBIC)
        if np.random.rand() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        lab = torch.from_numpy(rgb2lab(np.array(img)).astype("float32")).permute(2, 0, 1)
        return {"L": lab[[0]] / 50.0 - 1.0, "ab": lab[[1, 2]] / 110.0}


def _embedded_jpegs(folder: Path, max_side: int = 640) -> list[Path]:
    from zoo.sources import EMBEDDED_TRAIN, embedded_source

    paths = []
    for item in embedded_source().train:
        img = item.load()
        img.thumbnail((max_side, max_side))
        path = folder / f"{item.name.replace(':', '_').replace('.jpg', '')}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    assert len(paths) == len(EMBEDDED_TRAIN)
    return paths


class SeedSteps:
    """The seed's training step in fp32 on batches from SeedStyleDataset through a DataLoader."""

    def __init__(self, spec, folder: Path, rounds: int):
        from zoo.models import build_models
        from zoo.registry import get_registry
        from zoo.runtime import Runtime

        spec = spec.resolved(get_registry())
        runtime = Runtime.resolve(spec.device, "fp32")
        self.device = runtime.device
        self.models = build_models(spec, runtime)  # the same nets, plain: fp32, NCHW, no engine hooks
        self.pixel_weight = spec.pixel_weight
        self.batch_size = spec.data.batch_size
        workers = int(os.environ.get("ZOO_BENCH_SEED_WORKERS", "4"))
        dataset = SeedStyleDataset(_embedded_jpegs(folder), spec.data.image_size, self.batch_size * (rounds + 4))
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, shuffle=True,
                                                  num_workers=workers, pin_memory=self.device.type == "cuda")
        self.batches = iter(self.loader)

    def __call__(self) -> None:
        m = self.models
        data = next(self.batches)
        L, ab = data["L"].to(self.device), data["ab"].to(self.device)
        m.generator.train()
        fake = m.generator(L)
        m.discriminator.train()
        m.discriminator.requires_grad_(True)
        m.disc_optim.zero_grad()
        loss_fake = m.gan_loss(m.discriminator(torch.cat([L, fake], 1).detach()), False)
        loss_real = m.gan_loss(m.discriminator(torch.cat([L, ab], 1)), True)
        ((loss_fake + loss_real) * 0.5).backward()
        m.disc_optim.step()
        m.discriminator.requires_grad_(False)
        m.gen_optim.zero_grad()
        loss_gan = m.gan_loss(m.discriminator(torch.cat([L, fake], 1)), True)
        (loss_gan + m.pixel_loss(fake, ab) * self.pixel_weight).backward()
        m.gen_optim.step()
        _sync(self.device)


# ---- the benchmarks ----------------------------------------------------------------------------------------


def _mean_seconds(benchmark, fn, rounds: int) -> float:
    """pytest-benchmark's mean; with --benchmark-disable (the default in pyproject) it ran fn once: time it here."""
    if benchmark.stats:
        return benchmark.stats.stats.mean
    t0 = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - t0) / rounds


def _rounds(config: str, bench_config) -> int:
    return min(bench_config.rounds, 3) if config == "seed" else max(bench_config.rounds, 10)


def _make(config: str, variant: str, tmp: Path, rounds: int, device: str):
    if variant == "seed_pipeline":
        return SeedSteps(_spec(config, "fp32", device), tmp, rounds)
    compile = "on" if variant == "zoo_auto_compile" else "off"
    return ZooSteps(_spec(config, "fp32" if variant == "zoo_fp32" else "auto", device, compile), tmp / "run")


def _seed_pipeline_rate(config: str, bench_config) -> float:
    """The seed pipeline's img/s of this session (measured here when its own case did not run first)."""
    if (config, "seed_pipeline") not in RESULTS:
        with tempfile.TemporaryDirectory() as tmp:
            steps = SeedSteps(_spec(config, "fp32", bench_config.device), Path(tmp), _rounds(config, bench_config))
            steps()
            t0 = time.perf_counter()
            for _ in range(_rounds(config, bench_config)):
                steps()
            RESULTS[(config, "seed_pipeline")] = steps.batch_size * _rounds(config, bench_config) / (
                time.perf_counter() - t0)
    return RESULTS[(config, "seed_pipeline")]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("config", CONFIGS)
def test_training_speed(benchmark, bench_config, tmp_path, config, variant):
    _skip_unless_enabled(config)
    rounds = _rounds(config, bench_config)
    steps = _make(config, variant, tmp_path, rounds, bench_config.device)
    t0 = time.perf_counter()
    steps()  # warm-up: optimizer state, oneDNN kernels, DataLoader workers, compiling
    first = time.perf_counter() - t0
    _reset_peak_memory()
    benchmark.pedantic(steps, rounds=rounds, warmup_rounds=0)
    rate = steps.batch_size / _mean_seconds(benchmark, steps, rounds)
    RESULTS[(config, variant)] = rate
    info = {"config": config, "variant": variant, "batch_size": steps.batch_size, "img_per_s": round(rate, 3),
            "threads": torch.get_num_threads(), "first_step_s": round(first, 2), **_peak_memory()}
    if variant != "seed_pipeline":
        t = steps.trainer
        info.update(precision=t.runtime.precision, layout=t.runtime.layout, device=str(t.device),
                    image_size=t.spec.data.image_size,
                    speedup_vs_seed_pipeline=round(rate / _seed_pipeline_rate(config, bench_config), 3))
    else:
        info.update(device=str(steps.device), precision="fp32", layout="NCHW",
                    workers=steps.loader.num_workers)
    benchmark.extra_info.update(info)


def _reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory() -> dict[str, float]:
    """CUDA only: the peak allocated since :func:`_reset_peak_memory`, MiB (CPU peaks: benchmarks/test_bench_*)."""
    return {"peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if torch.cuda.is_available() else {}


@pytest.mark.parametrize("mode", ["fp32", "auto", "auto_compile"])
@pytest.mark.parametrize("config", CONFIGS)
def test_inference_speed(benchmark, bench_config, config, mode):
    from zoo.inference import Predictor
    from zoo.models import build_models
    from zoo.registry import get_registry
    from zoo.runtime import Runtime

    precision = "fp32" if mode == "fp32" else "auto"
    spec = _spec(config, precision, bench_config.device).resolved(get_registry())
    runtime = Runtime.resolve(spec.device, precision)
    device = runtime.device
    gen = Predictor(build_models(spec, runtime).generator.eval(), runtime, compile=mode == "auto_compile")
    size, batch = spec.data.image_size, 16
    L = torch.rand((batch, 1, size, size), generator=torch.Generator().manual_seed(0)) * 2 - 1

    def forward():
        with torch.inference_mode():
            gen(L)
        _sync(device)

    t0 = time.perf_counter()
    forward()  # compiles, with compile=True
    first = time.perf_counter() - t0
    _reset_peak_memory()
    rounds = max(bench_config.rounds, 5)
    benchmark.pedantic(forward, rounds=rounds, warmup_rounds=1)
    seconds = _mean_seconds(benchmark, forward, rounds)
    benchmark.extra_info.update({
        "config": config, "mode": mode, "image_size": size, "batch_size": batch, "precision": gen.precision,
        "layout": runtime.layout, "device": str(device), "compiled": gen.compiled, "cuda_graphs": gen.cuda_graphs,
        "first_call_s": round(first, 2),
        "img_per_s": round(batch / seconds, 3), "threads": torch.get_num_threads(), **_peak_memory()})
