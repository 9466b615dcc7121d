"""The leaderboard: every chosen generator trained the same way, evaluated on the same held-out images.

Each model is trained by ``zoo.engine.Trainer`` from ``zoo.spec.build_spec`` with the ``cpu`` preset: the same
discriminator, losses, data, seed and budget, only the generator differs (its options are the preset's for
``unet`` and the component's defaults otherwise, fitted to the image size by the depth option each component
declared: :meth:`zoo.registry.Component.fit_options`). Each is then loaded back from its final checkpoint
(``zoo.loading.load_trained``) and scored with ``zoo.evaluate`` next to the gray baseline. Throughput columns
come from ``zoo.bench``.

Outputs, in ``--out``: ``leaderboard.json`` (everything), and ``leaderboard.md`` / ``leaderboard.html`` rendered
from it by :mod:`zoo.leaderboard_render` (the HTML is one self-contained file: its images are PNG data URIs).
The training, loading and evaluation modules (torch) are imported when a leaderboard runs, not when the CLI
builds its parser (which reads DEFAULT_BUDGET and SORT_KEYS from here).
"""
from __future__ import annotations

import difflib
import gc
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import SpecError
from zoo.fileio import write_text
from zoo.leaderboard_render import EXTRA_COLUMNS, png_data_uri, render_html, render_markdown
from zoo.metrics import METRICS
from zoo.registry import get_registry
from zoo.spec import build_spec
from zoo.text import shown

#: default --budget: GAN steps per model (measured: see README "Leaderboard")
DEFAULT_BUDGET = "300"
PRESET = "cpu"
PREVIEWS = 4  # validation photos in the HTML grid

SORT_KEYS = list(METRICS) + ["train_img_per_s", "infer_img_per_s", "params", "train_time_s"]
_MISSING = object()


@dataclass(frozen=True)
class Budget:
    """Per-model training budget: a GAN step count, or wall-clock seconds turned into steps."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str | int) -> "Budget":
        """'300' -> 300 steps; '3m' / '2.5min' -> minutes; '90s' -> seconds."""
        raw = str(text).strip().lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|s|sec)?", raw)
        if m is None or (m.group(2) is None and "." in m.group(1)) or float(m.group(1)) <= 0:
            raise SpecError(f"--budget {shown(text)}: give GAN steps per model (e.g. 300) or wall-clock minutes per "
                            f"model (e.g. 3m, or 90s)")
        value, unit = float(m.group(1)), m.group(2)
        if unit is None:
            return cls(steps=int(value))
        return cls(seconds=value * 60.0 if unit.startswith("m") else value)

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} GAN steps per model"
        return f"{self.seconds / 60:g} min of training per model (wall clock, turned into steps from a measured step time)"

    def steps_for(self, seconds_per_step: float) -> int:
        """The step count of this budget for a model taking ``seconds_per_step``."""
        if self.steps is not None:
            return self.steps
        return max(1, int(self.seconds / max(seconds_per_step, 1e-9)))


@dataclass
class LeaderboardConfig:
    gens: list[str]
    disc: str | None
    budget: Budget
    data: str | None
    out: Path
    sort: str = "deltae00"
    image_size: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    overrides: list[str] = field(default_factory=list)
    device: str | None = None
    progress: bool = True
    command: str = ""

    @classmethod
    def from_cli(cls, gens: list[str] | None, disc: str | None, budget: str | None, data: str | None,
                 out: str | None, sort: str = "deltae00", image_size: int | None = None,
                 batch_size: int | None = None, seed: int | None = None, overrides: list[str] = (),
                 device: str | None = None, progress: bool = True, command: str = "") -> "LeaderboardConfig":
        """Validate names and values before anything trains (one-line errors)."""
        registry = get_registry()
        if gens is not None and not gens:
            raise SpecError("--gens is empty: name generators separated by commas, e.g. --gens unet,resnet18_unet")
        gens = list(dict.fromkeys(gens)) if gens else registry.names("generator")
        for name in gens:
            registry.get("generator", name)
        if disc is not None:
            registry.get("discriminator", disc)
        if sort not in SORT_KEYS:
            close = difflib.get_close_matches(sort, SORT_KEYS, n=1)
            hint = f" Did you mean {shown(close[0])}?" if close else ""
            raise SpecError(f"--sort {shown(sort)} is not a column.{hint} Available: {', '.join(SORT_KEYS)}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(gens, disc, Budget.parse(budget if budget is not None else DEFAULT_BUDGET), data,
                   Path(out) if out else Path("runs") / f"leaderboard-{stamp}", sort, image_size, batch_size, seed,
                   list(overrides), device, progress, command)


def model_spec(config: LeaderboardConfig, generator: str, steps: int):
    """The TrainSpec of one leaderboard entry: cpu preset + shared flags + options fitted to the image size by the
    components' declared depth (Component.fit_options) + --set overrides."""
    registry = get_registry()
    flags = {"generator.name": generator, "discriminator.name": config.disc, "data.source": config.data,
             "data.image_size": config.image_size, "data.batch_size": config.batch_size, "seed": config.seed,
             "device": config.device, "steps": steps, "out": str(config.out / "runs"), "run_name": generator}
    spec, _ = build_spec(PRESET, None, flags, [])
    fitted = []
    for slot in ("generator", "discriminator"):
        comp = getattr(spec, slot)
        opts = registry.get(slot, comp.name).fit_options(comp.options, spec.data.image_size)
        fitted += [f"{slot}.options.{k}={json.dumps(v)}" for k, v in opts.items() if comp.options.get(k, _MISSING) != v]
    spec, _ = build_spec(PRESET, None, flags, fitted + list(config.overrides))  # the user's --set wins
    return spec


@dataclass
class LeaderboardResult:
    out: Path
    data: dict[str, Any]


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows ranked by ``key``: ascending unless higher is better; rows without a value go last."""
    better = METRICS[key][1] if key in METRICS else EXTRA_COLUMNS.get(key, (None, None))[1]
    sign = -1.0 if better == "higher" else 1.0
    return sorted(rows, key=lambda r: (r.get(key) is None, sign * (r.get(key) or 0.0)))


def compare_with_gray(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For each model: the metrics (with a direction) on which it beats / loses to the gray baseline."""
    from zoo.evaluate import GRAY_BASELINE  # torch: see the module docstring

    gray = next(r for r in rows if r["model"] == GRAY_BASELINE)
    out = {}
    for row in rows:
        if row["model"] == GRAY_BASELINE:
            continue
        better, worse = [], []
        for key, (_, direction, _) in METRICS.items():
            if direction is None or row[key] == gray[key]:
                continue
            wins = row[key] < gray[key] if direction == "lower" else row[key] > gray[key]
            (better if wins else worse).append(key)
        out[row["model"]] = {"better": better, "worse": worse}
    return out


def run_leaderboard(config: LeaderboardConfig, log: Callable[[str], None] | None = None) -> LeaderboardResult:
    """Train, evaluate and rank every generator of ``config``; write the three files; return their folder."""
    # torch and the training stack: imported when a leaderboard runs (see the module docstring)
    from zoo import bench
    from zoo.runfolder import list_checkpoints
    from zoo.engine import Trainer
    from zoo.runtime import select_device
    from zoo.evaluate import GRAY_BASELINE, candidate_from_trained, evaluate, load_images
    from zoo.loading import load_trained

    log = log or (lambda msg: print(msg, file=sys.stderr))
    registry = get_registry()
    started = time.perf_counter()

    # Everything that can be wrong is checked before the first model trains.
    specs = {}
    for gen in config.gens:
        spec = model_spec(config, gen, config.budget.steps or 1).resolved(registry)
        registry.create("generator", gen, spec.generator.options, spec.context())  # builds at this size?
        run_dir = config.out / "runs" / gen
        if list_checkpoints(run_dir / "checkpoints"):
            raise SpecError(f"{config.out} already holds a leaderboard run of {gen} ({run_dir}): choose another --out")
        specs[gen] = spec
    first = next(iter(specs.values()))
    size, batch = first.data.image_size, first.data.batch_size
    device = select_device(first.device)
    images = load_images(first.data.source, "val", size, first.data.split_seed, first.data.val_fraction, log=log)
    log(f"zoo: leaderboard of {', '.join(config.gens)} x {first.discriminator.name}: {config.budget.describe()}, "
        f"{size} px, batch {batch}, data {first.data.source} ({len(images.names)} held-out images) -> {config.out}")

    rows, candidates = [], []
    for i, gen in enumerate(config.gens, 1):
        # Train throughput from the engine's own GAN step on a fixed batch (and the step count of a time budget).
        probe = bench.GanBench.create(specs[gen], registry)
        step_s = bench.seconds_per_call(probe.train_step, repeats=2, warmup=1)
        disc_params, precision = bench.count_parameters(probe.discriminator), probe.precision
        del probe
        gc.collect()
        steps = config.budget.steps_for(step_s)
        spec = model_spec(config, gen, steps)
        log(f"zoo: [{i}/{len(config.gens)}] {gen}: {steps} steps ({batch / step_s:.2f} img/s measured)")
        trainer = Trainer.create(spec, run_dir=config.out / "runs" / gen, registry=registry, log=log,
                                 progress=config.progress)
        t0 = time.perf_counter()
        checkpoint = trainer.fit()
        train_time = time.perf_counter() - t0
        del trainer
        gc.collect()
        model = load_trained(checkpoint, device=device, registry=registry)
        infer = bench.generator_throughput(model.generator, size, batch, device, precision)
        candidates.append(candidate_from_trained(model, gen))
        rows.append({"model": gen, "generator": gen, "generator_options": model.spec.generator.options,
                     "discriminator": spec.discriminator.name, "steps": steps, "train_time_s": train_time,
                     "train_img_per_s": batch / step_s, "infer_img_per_s": infer,
                     "params": bench.count_parameters(model.generator), "disc_params": disc_params,
                     "precision": precision,
                     "checkpoint": str(checkpoint)})

    evaluation = evaluate(candidates, images, device, batch_size=batch, previews=PREVIEWS)
    for row in rows:
        row.update(evaluation.means[row["model"]])
    rows.append({"model": GRAY_BASELINE, "generator": None, **evaluation.means[GRAY_BASELINE],
                 **{k: None for k in EXTRA_COLUMNS}})
    rows = sort_rows(rows, config.sort)
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank

    shared = first.model_dump(mode="json", exclude={"generator", "steps", "out", "run_name"})
    previews = evaluation.previews
    order = [r["model"] for r in rows if r["model"] != GRAY_BASELINE]
    samples = []
    for k, name in enumerate(images.names[:PREVIEWS]):
        cells = [("gray input", previews[GRAY_BASELINE][k])] + [(m, previews[m][k]) for m in order]
        cells.append(("ground truth", previews["ground truth"][k]))
        samples.append({"image": name, "cells": [{"title": t, "png": png_data_uri(img)} for t, img in cells]})
    data = {
        "title": "zoo leaderboard",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": config.command,
        "budget": {"steps": config.budget.steps, "seconds": config.budget.seconds,
                   "description": config.budget.describe()},
        "sort": {"key": config.sort, "better": (METRICS.get(config.sort) or (None, None, None))[1]
                 or EXTRA_COLUMNS.get(config.sort, (None, None))[1]},
        "training": {"preset": PRESET, "overrides": list(config.overrides), "spec": shared},
        "protocol": evaluation.protocol,
        "hardware": bench.hardware(device),
        "versions": bench.versions(),
        "rows": rows,
        "vs_gray": compare_with_gray(rows),
        "model_info": evaluation.info,
        "images": evaluation.rows,
        "samples": samples,
        "elapsed_s": time.perf_counter() - started,
    }
    write_outputs(data, config.out)
    log(f"zoo: leaderboard written to {config.out} in {data['elapsed_s']:.0f} s "
        f"(leaderboard.md, leaderboard.json, leaderboard.html)")
    return LeaderboardResult(config.out, data)


def write_outputs(data: dict[str, Any], out: Path) -> None:
    """leaderboard.json and, rendered from it, leaderboard.md and leaderboard.html, each written atomically."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("leaderboard.json", json.dumps(data, indent=2, allow_nan=False)),
                       ("leaderboard.md", render_markdown(data)), ("leaderboard.html", render_html(data))):
        write_text(out / name, text)


__all__ = ["Budget", "DEFAULT_BUDGET", "LeaderboardConfig", "LeaderboardResult", "SORT_KEYS", "compare_with_gray",
           "model_spec", "render_html", "render_markdown", "run_leaderboard", "sort_rows", "write_outputs"]
