"""Measuring helpers shared by ``benchmarks/`` and ``zoo leaderboard``: parameters, throughput, peak memory.

A :class:`GanBench` holds one generator x discriminator pair built from a spec, with a fixed batch on the
device, and the spec's :class:`zoo.runtime.Runtime`. Its ``train_step`` is the engine's own GAN step
(:func:`zoo.gan_step.gan_step`: D step, then G step with GAN + pixel loss, in the training precision and layout),
so a benchmark measures exactly what ``zoo train`` runs.

Peak memory (:func:`peak_memory`) is what one call allocates on top of what already exists (weights and
optimizer state are not counted; activations, gradients and temporaries are):

* CUDA: ``torch.cuda.max_memory_allocated`` minus the memory allocated before the call;
* CPU: ``torch.profiler`` with ``profile_memory=True``: the peak of the running sum of the CPU allocator's
  allocation and free events during the call. (``tracemalloc`` does not see torch's allocator, and a
  process's max RSS is a high-water mark of everything that ran before.)
"""
from __future__ import annotations

import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.registry import Registry, get_registry

CPU_MEMORY_METHOD = ("torch.profiler (profile_memory=True): peak of the running sum of CPU allocator events "
                     "during one call, after a warm-up; weights and optimizer state excluded")
CUDA_MEMORY_METHOD = ("torch.cuda.max_memory_allocated during one call minus memory allocated before it, after a "
                      "warm-up; weights and optimizer state excluded")


def reference(kind: str, registry: Registry | None = None) -> str:
    """The partner component of a kind (a generator is measured against it, and vice versa): the spec's default
    for the slot when installed, else the first registered name (:func:`zoo.spec.default_component`)."""
    from zoo.spec import default_component

    return default_component(kind, registry or get_registry())


def fit_options(kind: str, name: str, image_size: int, options: dict[str, Any] | None = None,
                registry: Registry | None = None) -> dict[str, Any]:
    """``options`` with the component's declared depth option lowered until it builds at ``image_size``
    (:meth:`zoo.component.Component.fit_options`: ``unet`` at 64 px, n_down 8 -> 6)."""
    return (registry or get_registry()).get(kind, name).fit_options(options, image_size)


def bench_spec(generator: str, discriminator: str, image_size: int = 64, batch_size: int = 4, device: str = "cpu",
               gen_options: dict | None = None, disc_options: dict | None = None, registry: Registry | None = None,
               gan_loss: str | None = None, pixel_loss: str | None = None, losses: tuple[str, ...] = ()):
    """A resolved TrainSpec for measuring one pair: component defaults fitted to ``image_size`` (fit_options);
    ``gan_loss`` / ``pixel_loss`` (else the spec's defaults) and extra loss ``losses`` terms at their defaults."""
    from zoo.spec import ComponentSpec, DataSpec, LossTermSpec, TrainSpec

    registry = registry or get_registry()
    extra: dict[str, Any] = {}
    if gan_loss is not None:
        extra["gan_loss"] = ComponentSpec(name=gan_loss)
    if pixel_loss is not None:
        extra["pixel_loss"] = ComponentSpec(name=pixel_loss)
    spec = TrainSpec(
        generator=ComponentSpec(name=generator, options=fit_options("generator", generator, image_size, gen_options,
                                                                    registry)),
        discriminator=ComponentSpec(name=discriminator, options=fit_options("discriminator", discriminator,
                                                                            image_size, disc_options, registry)),
        losses=[LossTermSpec(name=name) for name in losses],
        data=DataSpec(image_size=image_size, batch_size=batch_size), steps=1, device=device, **extra)
    return spec.resolved(registry)


def loss_case(kind: str, name: str, registry: Registry | None = None) -> dict[str, Any]:
    """The bench_spec arguments that measure loss ``name`` of ``kind`` (gan_loss, pixel_loss or a loss term) in
    the engine's GAN step: the reference generator and discriminator, or the partners the loss declared it needs
    (``test_partners``, e.g. eccv16_ce's eccv16 generator, feature matching's multi-scale D), at their defaults."""
    registry = registry or get_registry()
    partners = registry.get(kind, name).declared.test_partners
    args: dict[str, Any] = {slot: (partners.get(slot) or {}).get("name") or reference(slot, registry)
                            for slot in ("generator", "discriminator")}
    for slot in ("gan_loss", "pixel_loss"):
        if slot in partners:
            args[slot] = partners[slot]["name"]
    if kind == "loss":
        args["losses"] = (name,)
    else:
        args[kind] = name
    return args


def sync(device: torch.device) -> None:
    """Wait for queued kernels (CUDA is asynchronous: a timer must not stop before the work is done)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) of a module."""
    return sum(p.numel() for p in module.parameters())


@dataclass
class GanBench:
    """One generator x discriminator pair of a spec, with a fixed random batch on the spec's device."""

    spec: Any  # zoo.spec.TrainSpec, resolved
    runtime: Any  # zoo.runtime.Runtime: device, precision and memory layout of the engine for this spec
    models: Any  # zoo.models.Models, prepared for training as the engine prepares them
    L: torch.Tensor
    ab: torch.Tensor

    @classmethod
    def create(cls, spec, registry: Registry | None = None) -> "GanBench":
        from zoo.lab import uint8_to_model_input
        from zoo.models import build_models, prepare_for_training
        from zoo.runtime import Runtime

        registry = registry or get_registry()
        spec = spec.resolved(registry)
        runtime = Runtime.resolve(spec.device, spec.precision)
        models = build_models(spec, runtime, registry)
        prepare_for_training(models, runtime)
        size, batch = spec.data.image_size, spec.data.batch_size
        gen = torch.Generator().manual_seed(spec.seed)
        images = torch.randint(0, 256, (batch, 3, size, size), generator=gen, dtype=torch.uint8)
        L, ab = uint8_to_model_input(images.to(runtime.device))
        return cls(spec, runtime, models, runtime.batch(L), runtime.batch(ab))

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        """The precision the engine trains in (``auto`` resolved: fp32, bf16 or fp16)."""
        return self.runtime.precision

    @property
    def batch_size(self) -> int:
        return int(self.L.shape[0])

    @property
    def generator(self) -> nn.Module:
        return self.models.generator

    @property
    def discriminator(self) -> nn.Module:
        return self.models.discriminator

    def release_gradients(self) -> None:
        """Drop both nets' gradients (as the step's zero_grad(set_to_none=True) would), before a memory measure."""
        self.generator.zero_grad(set_to_none=True)
        self.discriminator.zero_grad(set_to_none=True)

    def train_step(self) -> None:
        """One GAN step of the engine (D step, then G step), synchronized."""
        from zoo.gan_step import gan_step

        gan_step(self.models, self.L, self.ab, self.runtime, self.spec.pixel_weight)
        sync(self.device)

    def generator_inference(self) -> None:
        """Generator forward pass on the batch through the one inference path (:class:`zoo.inference.Predictor`:
        eval mode, the training precision and layout), synchronized."""
        from zoo.inference import Predictor

        Predictor(self.generator, self.runtime, prepare=False)(self.L)
        sync(self.device)

    @torch.no_grad()
    def discriminator_inference(self) -> None:
        """Discriminator forward pass on the (L, ab) batch in eval mode, in the training precision, synchronized."""
        self.discriminator.eval()
        with self.runtime.autocast():
            self.discriminator(torch.cat([self.L, self.ab], 1))
        sync(self.device)


def seconds_per_call(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``fn`` (after ``warmup`` untimed calls).

    ``fn`` must synchronize its device itself (GanBench's methods do).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def throughput(fn: Callable[[], Any], batch_size: int, repeats: int = 3, warmup: int = 1) -> float:
    """Images per second of ``fn``, which processes ``batch_size`` images per call."""
    return batch_size / seconds_per_call(fn, repeats, warmup)


def generator_throughput(generator: nn.Module, image_size: int, batch_size: int, device: torch.device | str,
                         precision: str = "fp32", repeats: int = 3, warmup: int = 1) -> float:
    """Inference images per second of a generator through :class:`zoo.inference.Predictor` (eval mode,
    ``precision``'s autocast and memory layout) on random L of ``batch_size`` x image_size^2. A copy of the net is
    measured: the caller's keeps its device and layout."""
    from zoo.inference import Predictor
    from zoo.runtime import Runtime

    predictor = Predictor(copy.deepcopy(generator), Runtime.resolve(torch.device(device), precision))
    L = torch.rand((batch_size, 1, image_size, image_size), generator=torch.Generator().manual_seed(0)) * 2 - 1

    def forward():
        predictor(L)
        sync(predictor.device)

    return throughput(forward, batch_size, repeats, warmup)


def peak_memory(fn: Callable[[], Any], device: torch.device | str,
                prepare: Callable[[], Any] | None = None) -> tuple[int | None, str]:
    """(bytes allocated at the peak of one call of ``fn`` beyond what existed before, how it was measured).

    Call ``fn`` once before (a warm-up) so lazily created state (optimizer moments) is not counted.
    ``prepare`` runs just before the measured call, unmeasured (GanBench.release_gradients: the profiler
    cannot see blocks freed that were allocated before it started, so old gradients must be gone first).
    Returns (None, reason) if the profiler cannot report allocations here.
    """
    device = torch.device(device)
    if prepare is not None:
        prepare()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return int(torch.cuda.max_memory_allocated(device) - before), CUDA_MEMORY_METHOD
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()
        allocations = sorted((e.start_ns(), e.nbytes()) for e in events
                             if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    except AttributeError as exc:  # a torch whose profiler no longer exposes its raw events
        return None, f"unavailable: torch.profiler raw events not readable ({exc})"
    live = peak = 0
    for _, nbytes in allocations:
        live += nbytes
        peak = max(peak, live)
    return int(peak), CPU_MEMORY_METHOD


def hardware(device: torch.device | str | None = None) -> dict[str, Any]:
    """CPU model, cores, torch threads, GPUs and the device used."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() \
        else []
    return {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpus": gpus, "device": str(device) if device is not None else None,
            "platform": platform.platform(), "python": platform.python_version()}


def versions() -> dict[str, str | None]:
    """Versions of the packages results depend on (None when not installed)."""
    import importlib.metadata as metadata

    out = {}
    for dist in ("torch", "zoo", "fastai", "timm", "scikit-image", "numpy", "torchvision", "pillow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


__all__ = ["CPU_MEMORY_METHOD", "CUDA_MEMORY_METHOD", "GanBench", "bench_spec", "count_parameters", "loss_case",
           "fit_options", "generator_throughput", "hardware", "peak_memory", "reference", "seconds_per_call",
           "sync", "throughput", "versions"]
