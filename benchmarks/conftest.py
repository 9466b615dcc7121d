"""Options of the benchmark suite (``python -m pytest benchmarks/ --benchmark-enable``).

``--zoo-size`` (env ZOO_BENCH_SIZE, default 64: a small CPU size; 256 is the seed's), ``--zoo-batch``
(ZOO_BENCH_BATCH, default 4), ``--zoo-rounds`` (ZOO_BENCH_ROUNDS, default 5 timed rounds after a warm-up) and
``--zoo-device`` (ZOO_BENCH_DEVICE, default auto: CUDA if available).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"{name}={raw!r} is not an integer") from None


def pytest_addoption(parser):
    group = parser.getgroup("zoo", "zoo benchmarks")
    group.addoption("--zoo-size", type=int, default=_env_int("ZOO_BENCH_SIZE", 64),
                    help="image size of the benchmarks (env ZOO_BENCH_SIZE; default 64, the seed's is 256)")
    group.addoption("--zoo-batch", type=int, default=_env_int("ZOO_BENCH_BATCH", 4),
                    help="batch size of the benchmarks (env ZOO_BENCH_BATCH; default 4)")
    group.addoption("--zoo-rounds", type=int, default=_env_int("ZOO_BENCH_ROUNDS", 5),
                    help="timed rounds per benchmark, after one warm-up (env ZOO_BENCH_ROUNDS; default 5)")
    group.addoption("--zoo-device", default=os.environ.get("ZOO_BENCH_DEVICE", "auto"),
                    help="auto (CUDA if available), cpu, cuda (env ZOO_BENCH_DEVICE)")


@dataclass(frozen=True)
class BenchConfig:
    image_size: int
    batch_size: int
    rounds: int
    device: str


@pytest.fixture(scope="session")
def bench_config(request) -> BenchConfig:
    opt = request.config.getoption
    size, batch, rounds = opt("--zoo-size"), opt("--zoo-batch"), opt("--zoo-rounds")
    if size < 16 or batch < 1 or rounds < 1:
        raise pytest.UsageError(f"need --zoo-size >= 16, --zoo-batch >= 1, --zoo-rounds >= 1 (got {size}, {batch}, "
                                f"{rounds})")
    return BenchConfig(size, batch, rounds, opt("--zoo-device"))
