"""``zoo colorize`` of a folder of 640x480 photos with a seed-size model, next to the plain sequential pipeline.

Run (pytest-benchmark; named explicitly because it is not a ``test_*.py`` file)::

    python -m pytest benchmarks/bench_colorize.py --benchmark-enable -p no:cacheprovider

The folder: 32 JPEGs of 640x480 (COCO's size) cut from the nine embedded photos (four flips each). The model:
the seed recipe's U-Net (n_down 8, ngf 64, 54 M parameters) at 256 px, freshly initialised (speed does not
depend on the weights), in the default precision (bf16 on a CPU with AMX/avx512_bf16). Cases, each one timed
round colorizing the whole folder (decode, resize, Lab, the net, the upsampling onto full-resolution L, PNG
encode and write all count):

* ``sequential``: the pipeline written plainly, one photo after another per batch of 8 (what ``zoo colorize``
  did before its writes went through the thread pool): load, one batched forward, compose and save each PNG at
  Pillow's default compression (level 6), in the main thread.
* ``zoo_colorize``: :func:`zoo.batch.colorize_paths`, what ``zoo colorize`` runs.

``extra_info``: ``img_per_s`` and, for ``zoo_colorize``, ``speedup_vs_sequential`` (same session).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

PHOTOS, BATCH = 32, 8
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from PIL import ImageOps

    from zoo.sources import embedded_source

    src = embedded_source()
    root = tmp_path_factory.mktemp("photos")
    images = []
    for item in [*src.train, *src.val]:
        img = item.load()
        images += [img, ImageOps.mirror(img), ImageOps.flip(img), ImageOps.mirror(ImageOps.flip(img))]
    for i, img in enumerate(images[:PHOTOS]):
        ImageOps.fit(img, (640, 480)).save(root / f"p{i:02d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def colorizer(bench_config):
    from zoo.colorize import Colorizer
    from zoo.inference import Predictor
    from zoo.models import build_models
    from zoo.registry import get_registry
    from zoo.runtime import Runtime
    from zoo.spec import build_spec

    spec, _ = build_spec("seed", None, {"data.source": "embedded", "steps": 1, "device": bench_config.device}, [])
    spec = spec.resolved(get_registry())
    runtime = Runtime.resolve(spec.device, "auto")
    return Colorizer(Predictor(build_models(spec, runtime).generator.eval(), runtime, spec=spec), 256)


def _sequential(colorizer, paths: list[Path], out: Path) -> None:
    from zoo.colorize import combine, save_image
    from zoo.image_file import load_rgb

    for start in range(0, len(paths), BATCH):
        chunk = paths[start:start + BATCH]
        rgbs = [np.asarray(load_rgb(p)) for p in chunk]
        ab = colorizer.predict_ab(rgbs)
        for path, rgb, one in zip(chunk, rgbs, ab):
            save_image(combine(rgb, one, colorizer.saturation), out / f"{path.stem}.png", "PNG")


@pytest.mark.parametrize("case", ["sequential", "zoo_colorize"])
def test_colorize_folder_speed(benchmark, bench_config, tmp_path, folder, colorizer, case):
    from zoo.batch import colorize_paths

    paths = sorted(folder.glob("*.jpg"))
    out = tmp_path / "out"

    def once():
        shutil.rmtree(out, ignore_errors=True)
        if case == "sequential":
            out.mkdir()
            _sequential(colorizer, paths, out)
        else:
            result = colorize_paths([folder], colorizer, out, batch_size=BATCH, log=lambda message: None)
            assert len(result.written) == len(paths)

    once()  # warm-up: oneDNN kernels, the thread pool
    rounds = max(bench_config.rounds, 3)
    benchmark.pedantic(once, rounds=rounds, warmup_rounds=0)
    seconds = benchmark.stats.stats.mean if benchmark.stats else _time(once, rounds)
    RESULTS[case] = len(paths) / seconds
    info = {"case": case, "photos": len(paths), "photo_size": "640x480", "model_size": 256,
            "precision": colorizer.precision, "img_per_s": round(RESULTS[case], 3)}
    if case != "sequential" and "sequential" in RESULTS:
        info["speedup_vs_sequential"] = round(RESULTS[case] / RESULTS["sequential"], 3)
    benchmark.extra_info.update(info)


def _time(fn, rounds: int) -> float:
    t0 = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - t0) / rounds
