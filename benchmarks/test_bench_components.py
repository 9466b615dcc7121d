"""Every registered generator and discriminator (third-party plugins included): one GAN training step and one
inference pass, timed by pytest-benchmark, with img/s, parameter counts and peak memory in ``extra_info``; and
every registered GAN loss, pixel loss and loss term: the GAN training step with that loss in its place
(``zoo.bench.loss_case``: the reference nets, or the partners the loss declared it needs), so a loss's cost (a
gradient penalty's double backward, a perceptual net's forward) shows next to the plain ``vanilla`` + ``l1`` step.

A generator trains against the reference discriminator (patch) and a discriminator against the reference
generator (unet), both with defaults fitted to the image size (``zoo.bench.fit_options``: unet n_down 6 at 64 px).
Peak memory: see ``zoo.bench.peak_memory`` (CUDA: max_memory_allocated; CPU: torch.profiler allocation events).
"""
from __future__ import annotations

import pytest

import zoo
from zoo import bench
from zoo.errors import ZooError


def _case(kind: str, name: str, config) -> bench.GanBench:
    gen = name if kind == "generator" else bench.reference("generator")
    disc = name if kind == "discriminator" else bench.reference("discriminator")
    try:
        spec = bench.bench_spec(gen, disc, config.image_size, config.batch_size, config.device)
        return bench.GanBench.create(spec)
    except ZooError as exc:  # e.g. an architecture that cannot take this image size
        pytest.skip(f"{kind} {name!r} does not build at {config.image_size} px: {exc}")


def _loss_case(kind: str, name: str, config) -> bench.GanBench:
    try:
        spec = bench.bench_spec(image_size=config.image_size, batch_size=config.batch_size, device=config.device,
                                **bench.loss_case(kind, name))
        return bench.GanBench.create(spec)
    except ZooError as exc:  # e.g. a pretrained perceptual net whose weights are not cached here
        pytest.skip(f"{kind} {name!r} does not build here: {exc}")


def _measure(benchmark, config, case: bench.GanBench, kind: str, name: str, what: str) -> None:
    fn = case.train_step if what == "train_step" else getattr(case, f"{kind}_inference")
    fn()  # warm-up: lazily made optimizer state and allocator pools are not measured
    peak, method = bench.peak_memory(fn, case.device, prepare=case.release_gradients)
    benchmark.pedantic(fn, rounds=config.rounds, warmup_rounds=0)
    seconds = benchmark.stats.stats.mean if benchmark.stats else bench.seconds_per_call(fn, repeats=1, warmup=0)
    benchmark.extra_info.update({
        "kind": kind, "name": name, "what": what,
        "generator": case.spec.generator.name, "generator_options": case.spec.generator.options,
        "discriminator": case.spec.discriminator.name,
        "gan_loss": case.spec.gan_loss.name, "pixel_loss": case.spec.pixel_loss.name,
        "losses": [t.name for t in case.spec.losses],
        "discriminator_options": case.spec.discriminator.options,
        "image_size": config.image_size, "batch_size": case.batch_size, "device": str(case.device),
        "precision": case.precision,
        "generator_params": bench.count_parameters(case.generator),
        "discriminator_params": bench.count_parameters(case.discriminator),
        "img_per_s": case.batch_size / seconds,
        "peak_memory_bytes": peak, "peak_memory_mib": None if peak is None else round(peak / 2**20, 2),
        "memory_method": method,
    })


@pytest.mark.parametrize("name", zoo.names("generator"))
def test_generator_train_step(benchmark, bench_config, name):
    _measure(benchmark, bench_config, _case("generator", name, bench_config), "generator", name, "train_step")


@pytest.mark.parametrize("name", zoo.names("generator"))
def test_generator_inference(benchmark, bench_config, name):
    _measure(benchmark, bench_config, _case("generator", name, bench_config), "generator", name, "inference")


@pytest.mark.parametrize("name", zoo.names("discriminator"))
def test_discriminator_train_step(benchmark, bench_config, name):
    _measure(benchmark, bench_config, _case("discriminator", name, bench_config), "discriminator", name,
             "train_step")


@pytest.mark.parametrize("name", zoo.names("discriminator"))
def test_discriminator_inference(benchmark, bench_config, name):
    _measure(benchmark, bench_config, _case("discriminator", name, bench_config), "discriminator", name,
             "inference")


@pytest.mark.parametrize("kind,name", [(k, n) for k in ("gan_loss", "pixel_loss", "loss") for n in zoo.names(k)])
def test_loss_train_step(benchmark, bench_config, kind, name):
    _measure(benchmark, bench_config, _loss_case(kind, name, bench_config), kind, name, "train_step")
