"""A tiny smoke of the benchmark suite and of the measuring helpers it shares with the leaderboard.

The suite itself (``python -m pytest benchmarks/ --benchmark-enable``) is not part of the tests' time budget.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from zoo import bench

from conftest import REPO


def test_one_benchmark_case_runs_enabled_and_records_extra_info(tmp_path):
    report = tmp_path / "bench.json"
    case = "benchmarks/test_bench_components.py::test_discriminator_inference[patch]"
    # one process, as the benchmarks run (pytest-benchmark turns itself off inside a pytest-xdist worker)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    proc = subprocess.run([sys.executable, "-m", "pytest", case, "--benchmark-enable", "--zoo-size", "32",
                           "--zoo-rounds", "1", f"--benchmark-json={report}", "-q", "-p", "no:cacheprovider",
                           "-p", "no:xdist"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (result,) = json.loads(report.read_text())["benchmarks"]  # enabled despite the root --benchmark-disable
    assert result["name"] == "test_discriminator_inference[patch]" and result["stats"]["rounds"] == 1
    info = result["extra_info"]
    assert info["name"] == "patch" and info["generator"] == "unet" and info["image_size"] == 32
    assert info["generator_options"]["n_down"] == 5  # unet's default 8 fitted to 32 px
    # patch's defaults (ndf 64, 3 layers) on L + ab: the pix2pix 70x70 PatchGAN, convs without bias before a norm
    convs = [(3, 64, True), (64, 128, False), (128, 256, False), (256, 512, False), (512, 1, True)]
    assert info["discriminator_params"] == sum(16 * a * b + (b if bias else 2 * b) for a, b, bias in convs)
    # img/s is the batch over the measured mean time of one round
    assert info["img_per_s"] == pytest.approx(info["batch_size"] / result["stats"]["mean"], rel=1e-6)
    # at least the first layer's output is alive at the peak: batch x 64 channels x 16 x 16 fp32 values
    assert info["peak_memory_bytes"] >= info["batch_size"] * 64 * 16 * 16 * 4
    assert info["memory_method"].startswith(("torch.profiler", "torch.cuda"))


def test_fit_options_lowers_n_down_only_when_needed():
    assert bench.fit_options("generator", "unet", 64)["n_down"] == 6
    assert bench.fit_options("generator", "unet", 256) == {}  # the default n_down 8 fits 256 px
    assert bench.fit_options("generator", "unet", 96, {"n_down": 7, "ngf": 8}) == {"n_down": 5, "ngf": 8}
    assert bench.fit_options("discriminator", "patch", 64, {"ndf": 8}) == {"ndf": 8}


def test_peak_memory_sees_torch_cpu_allocations():
    def allocate():
        a = torch.empty(1_000_000)  # 4 MB
        b = torch.empty(2_000_000)  # 8 MB, while a is alive: peak 12 MB
        del a
        c = torch.empty(500_000)  # 2 MB, after a is freed: no new peak
        return b, c

    allocate()
    peak, method = bench.peak_memory(allocate, "cpu")
    assert 12_000_000 <= peak < 12_100_000
    assert "torch.profiler" in method


def test_gan_bench_runs_the_engine_step_and_counts_parameters():
    spec = bench.bench_spec("unet", "patch", image_size=32, batch_size=2, gen_options={"n_down": 3, "ngf": 8},
                            disc_options={"ndf": 8})
    case = bench.GanBench.create(spec)
    assert case.L.shape == (2, 1, 32, 32) and case.ab.shape == (2, 2, 32, 32)
    before = [p.detach().clone() for p in case.generator.parameters()]
    case.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, case.generator.parameters()))
    assert bench.count_parameters(nn.Linear(3, 4)) == 3 * 4 + 4
    assert bench.count_parameters(case.generator) == sum(p.numel() for p in before)
    # batch_size images per call: a call that takes at least 50 ms gives at most 2 / 0.05 img/s at batch 2
    assert 0 < bench.throughput(lambda: time.sleep(0.05), 2, repeats=2, warmup=0) <= 40
    case.train_step()
    peak, _ = bench.peak_memory(case.train_step, case.device, prepare=case.release_gradients)
    grads = 4 * (bench.count_parameters(case.generator) + bench.count_parameters(case.discriminator))
    assert peak >= grads  # a training step allocates at least both nets' gradients


def test_loss_cases_pair_each_loss_with_the_nets_it_declared():
    assert bench.loss_case("gan_loss", "hinge") == {"generator": "unet", "discriminator": "patch",
                                                    "gan_loss": "hinge"}
    assert bench.loss_case("pixel_loss", "eccv16_ce")["generator"] == "eccv16"  # it reads eccv16's logits
    fm = bench.loss_case("loss", "feature_matching")
    assert fm["discriminator"] == "multiscale" and fm["losses"] == ("feature_matching",)
    spec = bench.bench_spec(image_size=32, **fm)
    assert [t.name for t in spec.losses] == ["feature_matching"] and spec.discriminator.name == "multiscale"
