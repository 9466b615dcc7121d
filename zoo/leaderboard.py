"""The leaderboard run: named entries (whole specs) trained with N seeds each, scored on one test set, ranked with
error bars; ``--runs`` ranks finished runs with no training; ``--merge`` combines boards of one protocol.

The parts live in their own modules:

* :mod:`zoo.board_entries`: what a board compares (entries as whole specs from a grid, a board file,
  ``--preset`` / ``--config``; the budget; each entry's spec for a seed, fitted to the image size).
* :mod:`zoo.board_folder`: the ``--out`` folder (new, empty or one zoo made, with its marker ``.zoo-board.json``),
  the identity of a run (:func:`~zoo.board_folder.spec_hash`: resolved spec, budget, data fingerprint) and the
  three output files.
* :mod:`zoo.board_ranking`: seed intervals, paired bootstrap differences from the leader, ties.
* :mod:`zoo.leaderboard_render`: ``leaderboard.md`` and ``leaderboard.html`` from ``leaderboard.json`` alone.
* :mod:`zoo.board_merge`: ``--merge``, boards of one protocol combined and ranked again.

Here: planning the runs (every problem found before the first model trains), training them (a hash the board's
marker lists as finished is evaluated, not retrained; a run folder without that mark is resumed, or trained anew
with no checkpoint), evaluating every run and the gray baseline on the same images, and Ctrl-C/SIGTERM (what
finished is kept; the same command continues). Torch and the training stack are imported when a board runs.
"""
from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.board_entries import Entry, LeaderboardConfig, entry_spec
from zoo.board_folder import (check_board_folder, data_fingerprint, finish, lock_board_folder, run_folder_name,
                              save_state, spec_hash, throughput_key)
from zoo.board_ranking import direction
from zoo.errors import SpecError, ZooError
from zoo.leaderboard_render import png_data_uri
from zoo.registry import get_registry
from zoo.text import shown

PREVIEWS = 4  # test images in the HTML's side-by-side grid


class BoardStopped(ZooError):
    """A board stopped early (Ctrl-C, SIGTERM): what finished is saved; the same command continues."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------------------
# Running a board


@dataclass
class LeaderboardResult:
    out: Path
    data: dict[str, Any]


@dataclass
class _Job:
    entry: Entry
    seed_index: int
    spec: Any
    hash: str
    run_dir: Path


def _versions() -> dict[str, str | None]:
    import importlib.metadata as metadata
    from zoo import bench

    out = bench.versions()
    for dist in ("scipy", "torchmetrics", "torch-fidelity", "lpips"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def run_leaderboard(config: LeaderboardConfig, log: Callable[[str], None] | None = None) -> LeaderboardResult:
    """Train (or reuse), evaluate and rank every entry x seed of ``config``; write the three files."""
    if log is None:
        from zoo.text import log_line as log
    try:
        with contextlib.ExitStack() as held:  # the board folder's lock, taken before anything is written
            return _run(config, log, held)
    except KeyboardInterrupt:
        raise BoardStopped(f"stopped by Ctrl-C; the finished runs are kept in {config.out}: rerun the same command "
                           f"to continue") from None


def _run(config: LeaderboardConfig, log: Callable[[str], None], held: contextlib.ExitStack) -> LeaderboardResult:
    # torch and the training stack: imported when a leaderboard runs (see the module docstring)
    from zoo import bench
    from zoo.engine import Trainer, TrainingStopped
    from zoo.errors import CheckpointError
    from zoo.evaluate import candidate_from_trained, evaluate
    from zoo.loading import load_trained
    from zoo.runtime import select_device

    registry = get_registry()
    started = time.perf_counter()
    check_board_folder(config.out)  # refused at once; checked again under the lock before anything is written
    if config.runs:
        return _rank_runs(config, log, started, held)

    # Everything that can be wrong is checked before the first model trains.
    jobs: list[_Job] = []
    fingerprints: dict[str, dict[str, Any]] = {}
    for entry in config.entries:
        for k in range(config.seeds):
            spec = entry_spec(config, entry, k).resolved(registry)
            if k == 0:
                registry.create("generator", spec.generator.name, spec.generator.options, spec.context(),
                                provider=spec.generator.provider)
            fp = fingerprints.get(spec.data.source)
            if fp is None:
                fp = fingerprints[spec.data.source] = data_fingerprint(spec)
            h = spec_hash(spec, config.budget, fp)
            jobs.append(_Job(entry, k, spec, h, config.out / "runs" / run_folder_name(entry.name, spec.seed, h)))
    first = jobs[0].spec
    sizes = sorted({j.spec.data.image_size for j in jobs})
    if len(sizes) > 1:
        raise SpecError(f"the entries train at different image sizes ({', '.join(map(str, sizes))} px): one board "
                        f"scores every entry on the same images; give --image-size N")
    size, batch = first.data.image_size, first.data.batch_size
    device = select_device(first.device)
    images, eval_rule = _eval_images(config, first, log)
    state = lock_board_folder(config.out, held)
    save_state(config.out, state)  # the folder is a board from now on: the same command continues it
    log(f"zoo: leaderboard of {len(config.entries)} entries x {config.seeds} seed(s) = {len(jobs)} runs, "
        f"{config.budget.describe() if config.budget else 'the length of each spec'}, {size} px; training data "
        f"{first.data.source}; test set {images.source} ({len(images.names)} images, {eval_rule}) -> {config.out}")

    # Training: finished runs are reused, interrupted ones resumed.
    bar = None
    if config.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="board", unit="run", position=0, file=sys.stderr, dynamic_ncols=True)
    trained_times: dict[str, list[float]] = {}  # entry -> seconds of each run it trained here
    try:
        for i, job in enumerate(jobs, 1):
            done = state["runs"].get(job.hash)
            label = f"[{i}/{len(jobs)}] {job.entry.name} seed {job.spec.seed}"
            if done and (config.out / done["checkpoint"]).is_file():
                log(f"zoo: {label}: finished run reused ({done['run_dir']})")
                if bar is not None:
                    bar.update(1)
                continue
            probe_key = throughput_key(job.spec, config.budget)
            probe = state["probes"].get(probe_key)
            if probe is None or probe.get("seconds_per_step") is None:  # an eval-only probe has no step time
                gan = bench.GanBench.create(job.spec, registry)
                step_s = bench.seconds_per_call(gan.train_step, repeats=2, warmup=1)
                probe = {**(probe or {}), "seconds_per_step": step_s,
                         "disc_params": bench.count_parameters(gan.discriminator), "precision": gan.precision}
                del gan
                gc.collect()
                state["probes"][probe_key] = probe
            steps = config.budget.steps_for(probe["seconds_per_step"]) if config.budget else None
            spec = entry_spec(config, job.entry, job.seed_index, steps) if config.budget else job.spec
            spec = spec.model_copy(update={"out": str(config.out / "runs"), "run_name": job.run_dir.name})
            t0 = time.perf_counter()
            try:
                trainer = None
                if (job.run_dir / "spec.json").is_file():
                    try:
                        trainer = Trainer.resume(job.run_dir, registry=registry, log=log, progress=config.progress)
                    except CheckpointError:
                        trainer = None  # no checkpoint yet: train it anew in the same folder
                if trainer is None:
                    trainer = Trainer.create(spec, run_dir=job.run_dir, registry=registry, log=log,
                                             progress=config.progress)
                checkpoint = trainer.fit()
                steps_done = trainer.step
            except TrainingStopped as exc:
                raise BoardStopped(f"{exc}; the board keeps its {len(state['runs'])} finished runs: rerun the same "
                                   f"command to continue", exit_code=exc.exit_code) from None
            del trainer
            gc.collect()
            took = time.perf_counter() - t0
            trained_times.setdefault(job.entry.name, []).append(took)
            todo = [j for j in jobs[i:] if j.hash not in state["runs"]]
            left = len(todo)
            state["runs"][job.hash] = {
                "entry": job.entry.name, "seed": job.spec.seed, "seed_index": job.seed_index,
                "run_dir": os.path.relpath(job.run_dir, config.out),
                "checkpoint": os.path.relpath(checkpoint, config.out), "steps": steps_done,
                "train_time_s": took}
            save_state(config.out, state)
            every = [t for ts in trained_times.values() for t in ts]
            eta = sum(sum(trained_times.get(j.entry.name, every)) / len(trained_times.get(j.entry.name, every))
                      for j in todo)  # an entry's own runs so far, else the mean of all
            log(f"zoo: {label}: trained {steps_done} steps in {_fmt_s(took)}; about {_fmt_s(eta)} of training left "
                f"({left} runs)")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    # Evaluation: every run of every entry on the same images; the gray baseline once.
    scorer = None
    if config.perceptual:
        from zoo.perceptual import Perceptual

        scorer = Perceptual(device)
        for key, status in scorer.status.items():
            if status.startswith("skipped"):
                log(f"zoo: {key.upper()} {status}")
    gray_eval = evaluate([], images, device, batch_size=batch, previews=PREVIEWS, perceptual=scorer)
    from zoo.evaluate import GRAY_BASELINE

    image_rows = [{**r, "seed": None} for r in gray_eval.rows]
    samples = {"images": images.names[:PREVIEWS],
               "cells": {"gray input": [png_data_uri(x) for x in gray_eval.previews[GRAY_BASELINE]]}}
    entries = []
    for entry in config.entries:
        entry_jobs = [j for j in jobs if j.entry == entry]
        runs = []
        info: dict[str, Any] = {}
        for job in entry_jobs:
            done = state["runs"][job.hash]
            model = load_trained(config.out / done["checkpoint"], device=device, registry=registry)
            cand = candidate_from_trained(model, entry.name)
            ev = evaluate([cand], images, device, batch_size=batch, baseline=False,
                          previews=PREVIEWS if job.seed_index == 0 else 0, perceptual=scorer)
            image_rows += [{**r, "seed": job.spec.seed} for r in ev.rows]
            runs.append({"seed": job.spec.seed, "spec_hash": job.hash, "run_dir": done["run_dir"],
                         "checkpoint": done["checkpoint"], "steps": done["steps"],
                         "train_time_s": done["train_time_s"], "means": ev.means[entry.name]})
            if job.seed_index == 0:
                samples["cells"][entry.name] = [png_data_uri(x) for x in ev.previews[entry.name]]
                probe_key = throughput_key(job.spec, config.budget)
                probe = state["probes"].get(probe_key, {})
                if "infer_img_per_s" not in probe:
                    probe["infer_img_per_s"] = bench.generator_throughput(model.generator, size, batch, device,
                                                                          cand.info["precision"])
                    state["probes"][probe_key] = probe
                    save_state(config.out, state)
                info = {**cand.info, "params": bench.count_parameters(model.generator), **probe,
                        "spec": job.spec.model_dump(mode="json")}
            del model, cand
            gc.collect()
        entries.append({
            "name": entry.name, "preset": entry.preset or config.preset, "config": entry.config or config.config,
            "overrides": list(entry.overrides) + list(config.overrides), "runs": runs,
            "spec": info["spec"], "generator": info["generator"], "discriminator": info["discriminator"],
            "params": info["params"], "disc_params": info.get("disc_params"), "precision": info.get("precision"),
            "train_img_per_s": batch / info["seconds_per_step"] if info.get("seconds_per_step") else None,
            "infer_img_per_s": info.get("infer_img_per_s"),
            "steps": runs[0]["steps"], "train_time_s": sum(r["train_time_s"] for r in runs) / len(runs)})
    samples["cells"]["ground truth"] = [png_data_uri(x) for x in gray_eval.previews["ground truth"]]

    protocol = {**gray_eval.protocol, **_board_protocol(config, first, images, eval_rule)}
    data = _board_data(config, protocol, entries, gray_eval.means[GRAY_BASELINE], image_rows, images.names,
                       samples, device, time.perf_counter() - started)
    finish(data, config.out)
    log(f"zoo: leaderboard written to {config.out} in {data['elapsed_s']:.0f} s "
        f"(leaderboard.md, leaderboard.json, leaderboard.html)")
    return LeaderboardResult(config.out, data)


def _eval_images(config: LeaderboardConfig, first, log):
    """The test set: --eval-data (all its images unless --split) or the training source's held-out split."""
    from zoo.evaluate import load_images

    size = first.data.image_size
    if config.eval_data is not None:
        split = config.split or "all"
        images = load_images(config.eval_data, split, size, first.data.split_seed, first.data.val_fraction, log=log)
        rule = "all of its images" if split == "all" else \
            f"its {split} split (zoo.data split rule, seed {first.data.split_seed}, val fraction " \
            f"{first.data.val_fraction})"
    else:
        split = config.split or "val"
        images = load_images(first.data.source, split, size, first.data.split_seed, first.data.val_fraction, log=log)
        rule = f"the training source's {split} split (held out from training)" if split == "val" else \
            f"the training source's {split} split (NOT held out from training)"
    return images, rule


def _board_protocol(config: LeaderboardConfig, first, images, eval_rule: str) -> dict[str, Any]:
    from zoo.stats import CONFIDENCE, N_RESAMPLES, RANDOM_STATE

    return {
        "training_data": first.data.source,
        "eval_data": images.source,
        "eval_images": len(images.names),
        "split_rule": eval_rule,
        "seeds": config.seeds,
        "intervals": f"mean over seeds with a Student-t {CONFIDENCE:.0%} interval (scipy.stats.t); differences "
                     f"from the leader: scipy.stats.bootstrap (paired over (seed, image) cells, vectorized, BCa, "
                     f"percentile where BCa is undefined, {N_RESAMPLES} resamples, random_state {RANDOM_STATE}); "
                     f"tied = the {CONFIDENCE:.0%} interval of the difference contains 0",
    }


def _board_data(config, protocol, entries, gray_means, image_rows, names, samples, device, elapsed):
    from zoo import bench

    return {
        "title": "zoo leaderboard",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": config.command,
        "budget": {"steps": config.budget.steps if config.budget else None,
                   "seconds": config.budget.seconds if config.budget else None,
                   "description": config.budget.describe() if config.budget else "each spec's own length"},
        "sort": {"key": config.sort, "better": direction(config.sort)},
        "training": {"preset": config.preset, "config": config.config, "overrides": list(config.overrides)},
        "protocol": protocol,
        "hardware": bench.hardware(device),
        "versions": _versions(),
        "entries": entries,
        "gray_baseline": gray_means,
        "image_names": list(names),
        "images": image_rows,
        "samples": samples,
        "elapsed_s": elapsed,
    }


def _rank_runs(config: LeaderboardConfig, log, started, held: contextlib.ExitStack) -> LeaderboardResult:
    """--runs: evaluate and rank finished run folders (runs whose specs differ only by seed are one entry)."""
    from zoo import bench
    from zoo.evaluate import GRAY_BASELINE, candidate_from_trained, evaluate, model_label
    from zoo.loading import load_trained
    from zoo.runtime import select_device

    registry = get_registry()
    device = select_device(config.flags.get("device", "auto"))
    models = [(path, load_trained(path, device=device, registry=registry)) for path in config.runs]
    sizes = sorted({m.image_size for _, m in models})
    if len(sizes) > 1:
        raise SpecError(f"the runs were trained at different image sizes ({', '.join(map(str, sizes))} px): rank "
                        f"runs of one size together")
    groups: dict[str, list] = {}
    for path, model in models:
        key = json.dumps(model.spec.model_dump(mode="json", exclude={"seed", "out", "run_name", "device"}),
                         sort_keys=True)
        groups.setdefault(key, []).append((path, model))
    first = models[0][1].spec
    batch = first.data.batch_size
    images, rule = _eval_images(config, first, log)
    scorer = None
    if config.perceptual:
        from zoo.perceptual import Perceptual

        scorer = Perceptual(device)
    state = lock_board_folder(config.out, held)
    save_state(config.out, state)
    gray_eval = evaluate([], images, device, batch_size=batch, previews=PREVIEWS, perceptual=scorer)
    image_rows = [{**r, "seed": None} for r in gray_eval.rows]
    samples = {"images": images.names[:PREVIEWS],
               "cells": {"gray input": [png_data_uri(x) for x in gray_eval.previews[GRAY_BASELINE]]}}
    entries, seen = [], set()
    for group in groups.values():
        name = model_label(group[0][0])
        while name in seen:
            name += "'"
        seen.add(name)
        runs = []
        for k, (path, model) in enumerate(sorted(group, key=lambda pm: pm[1].spec.seed)):
            cand = candidate_from_trained(model, name)
            ev = evaluate([cand], images, device, batch_size=batch, baseline=False,
                          previews=PREVIEWS if k == 0 else 0, perceptual=scorer)
            image_rows += [{**r, "seed": model.spec.seed} for r in ev.rows]
            runs.append({"seed": model.spec.seed, "run_dir": str(path), "checkpoint": str(model.checkpoint.path),
                         "steps": model.checkpoint.step, "train_time_s": None, "means": ev.means[name],
                         "spec_hash": None})
            if k == 0:
                samples["cells"][name] = [png_data_uri(x) for x in ev.previews[name]]
                entry = {"name": name, "preset": None, "config": None, "overrides": [], "runs": runs,
                         "spec": model.spec.model_dump(mode="json"), "generator": model.spec.generator.name,
                         "discriminator": model.spec.discriminator.name,
                         "params": bench.count_parameters(model.generator), "disc_params": None,
                         "precision": cand.info["precision"], "train_img_per_s": None,
                         "infer_img_per_s": bench.generator_throughput(model.generator, model.image_size, batch,
                                                                       device, cand.info["precision"]),
                         "steps": model.checkpoint.step, "train_time_s": None}
        entries.append(entry)
    samples["cells"]["ground truth"] = [png_data_uri(x) for x in gray_eval.previews["ground truth"]]
    protocol = {**gray_eval.protocol, "training_data": first.data.source, "eval_data": images.source,
                "eval_images": len(images.names), "split_rule": rule, "seeds": None,
                "intervals": _board_protocol(config, first, images, rule)["intervals"]}
    data = _board_data(config, protocol, entries, gray_eval.means[GRAY_BASELINE], image_rows, images.names,
                       samples, device, time.perf_counter() - started)
    data["budget"]["description"] = "existing runs (no training)"
    finish(data, config.out)
    log(f"zoo: leaderboard of {len(config.runs)} runs written to {config.out}")
    return LeaderboardResult(config.out, data)


# ---------------------------------------------------------------------------------------------------------
# Merging boards

__all__ = ["BoardStopped", "LeaderboardResult", "run_leaderboard"]
