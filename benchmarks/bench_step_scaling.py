"""Does the cost of a step grow linearly with batch and pixels? One net at seed width (U-Net ngf 64 with n_down 6,
so the same net runs at every size; PatchGAN ndf 64 x 3), timed at batch 1 / 4 / 16 and 64 / 128 / 256 px: the GAN
training step of the engine and the generator's inference pass, in the training precision (``auto``: bf16 on a
CPU with AMX, else fp32; CUDA with AMP).

Run (the file is named explicitly because it is not a ``test_*.py`` file)::

    python -m pytest benchmarks/bench_step_scaling.py --benchmark-enable -p no:cacheprovider -p no:xdist

``extra_info`` per case: ``us_per_kpixel`` (microseconds per 1000 pixels of the batch: constant if the cost is
linear in batch x pixels), ``img_per_s``, ``gflop`` of one call (``torch.utils.flop_counter`` on the same call)
and ``tflop_per_s`` achieved. A table of every case with its cost relative to the largest case of its kind
(batch 16 at 256 px) is printed at the end. Where the ratio is far above 1 the machine is under-used at that
size (fixed per-call overhead, kernels too small to fill the cores or the matrix units), not doing more work:
the FLOPs per pixel are the same in every case, which the ``gflop`` column shows.
"""
from __future__ import annotations

import itertools

import pytest

BATCHES = (1, 4, 16)
SIZES = (64, 128, 256)
WHAT = ("train_step", "inference")
_ROWS: list[dict] = []


def _bench(batch: int, size: int, device: str):
    from zoo import bench

    spec = bench.bench_spec("unet", "patch", image_size=size, batch_size=batch, device=device,
                            gen_options={"n_down": 6, "ngf": 64}, disc_options={"ndf": 64, "n_layers": 3})
    return bench.GanBench.create(spec)


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@pytest.mark.parametrize("what", WHAT)
@pytest.mark.parametrize("batch,size", list(itertools.product(BATCHES, SIZES)))
def test_step_cost_in_batch_and_pixels(benchmark, bench_config, what, batch, size):
    case = _bench(batch, size, bench_config.device)
    fn = case.train_step if what == "train_step" else case.generator_inference
    fn()  # warm-up: optimizer state, allocator pools, oneDNN primitives
    gflop = _flops(fn) / 1e9
    benchmark.pedantic(fn, rounds=bench_config.rounds, warmup_rounds=1)
    seconds = benchmark.stats.stats.mean
    kpixels = batch * size * size / 1000
    row = {"what": what, "batch": batch, "size": size, "precision": case.precision, "device": str(case.device),
           "seconds": seconds, "img_per_s": batch / seconds, "us_per_kpixel": seconds * 1e6 / kpixels,
           "gflop": gflop, "tflop_per_s": gflop / seconds / 1e3}
    benchmark.extra_info.update(row)
    _ROWS.append(row)


def scaling_table() -> str:
    """The table of every case, the cost per pixel relative to batch 16 at 256 px of the same kind."""
    lines = ["bench_step_scaling (us per 1000 pixels; ratio to batch 16 x 256 px; achieved TFLOP/s):",
             f"{'what':>10} {'batch':>5} {'size':>4} {'us/kpx':>8} {'ratio':>6} {'img/s':>8} {'GFLOP':>8} {'TFLOP/s':>7}"]
    for what in WHAT:
        rows = [r for r in _ROWS if r["what"] == what]
        base = next((r for r in rows if r["batch"] == max(BATCHES) and r["size"] == max(SIZES)), None)
        for r in sorted(rows, key=lambda r: (r["batch"], r["size"])):
            ratio = r["us_per_kpixel"] / base["us_per_kpixel"] if base else float("nan")
            lines.append(f"{what:>10} {r['batch']:>5} {r['size']:>4} {r['us_per_kpixel']:>8.1f} {ratio:>6.2f} "
                         f"{r['img_per_s']:>8.1f} {r['gflop']:>8.1f} {r['tflop_per_s']:>7.3f}")
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def _print_table():
    yield
    if _ROWS:
        print("\n" + scaling_table())
