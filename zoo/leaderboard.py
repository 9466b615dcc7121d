"""The leaderboard: every chosen generator trained the same way, evaluated on the same held-out images.

Each model is trained by ``zoo.engine.Trainer`` from ``zoo.spec.build_spec`` with the ``cpu`` preset: the same
discriminator, losses, data, seed and budget, only the generator differs (its options are the preset's for
``unet`` and the component's defaults otherwise, with ``zoo.bench.fit_options`` applied so it builds at the
image size). Each is then loaded back from its final checkpoint (``zoo.loading.load_trained``) and scored with
``zoo.evaluate`` next to the gray baseline. Throughput columns come from ``zoo.bench``.

Outputs, in ``--out``: ``leaderboard.json`` (everything), and ``leaderboard.md`` / ``leaderboard.html`` rendered
from it (the HTML is one self-contained file: its images are PNG data URIs).
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import SpecError
from zoo.metrics import METRICS

#: default --budget: GAN steps per model (measured: see README "Leaderboard")
DEFAULT_BUDGET = "300"
PRESET = "cpu"
PREVIEWS = 4  # validation photos in the HTML grid

#: non-metric columns: key -> (title, which direction is better)
EXTRA_COLUMNS: dict[str, tuple[str, str | None]] = {
    "steps": ("steps", None),
    "train_time_s": ("train s", "lower"),
    "train_img_per_s": ("train img/s", "higher"),
    "infer_img_per_s": ("infer img/s", "higher"),
    "params": ("G params", "lower"),
    "disc_params": ("D params", None),
}
SORT_KEYS = list(METRICS) + ["train_img_per_s", "infer_img_per_s", "params", "train_time_s"]
#: column order of the tables (after rank and model)
TABLE_COLUMNS = ["deltae00", "ab_l1", "ab_l2", "ab_l1_lab", "ab_l2_lab", "psnr", "ssim", "colorfulness",
                 "colorfulness_truth", "colorfulness_abs_diff", "steps", "train_time_s", "train_img_per_s",
                 "infer_img_per_s", "params", "disc_params"]
_MISSING = object()
_FORMATS = {"train_time_s": ".1f", "train_img_per_s": ".2f", "infer_img_per_s": ".1f"}


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
            raise SpecError(f"--budget {text!r}: give GAN steps per model (e.g. 300) or wall-clock minutes per "
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
        from zoo.registry import get_registry

        registry = get_registry()
        if gens is not None and not gens:
            raise SpecError("--gens is empty: name generators separated by commas, e.g. --gens unet,resnet18_unet")
        gens = list(dict.fromkeys(gens)) if gens else registry.names("generator")
        for name in gens:
            registry.get("generator", name)
        if disc is not None:
            registry.get("discriminator", disc)
        if sort not in SORT_KEYS:
            import difflib

            close = difflib.get_close_matches(sort, SORT_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SpecError(f"--sort {sort!r} is not a column.{hint} Available: {', '.join(SORT_KEYS)}")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(gens, disc, Budget.parse(budget if budget is not None else DEFAULT_BUDGET), data,
                   Path(out) if out else Path("runs") / f"leaderboard-{stamp}", sort, image_size, batch_size, seed,
                   list(overrides), device, progress, command)


def model_spec(config: LeaderboardConfig, generator: str, steps: int):
    """The TrainSpec of one leaderboard entry: cpu preset + shared flags + fitted options + --set overrides."""
    from zoo.bench import fit_options
    from zoo.spec import build_spec

    flags = {"generator.name": generator, "discriminator.name": config.disc, "data.source": config.data,
             "data.image_size": config.image_size, "data.batch_size": config.batch_size, "seed": config.seed,
             "device": config.device, "steps": steps, "out": str(config.out / "runs"), "run_name": generator}
    spec, _ = build_spec(PRESET, None, flags, [])
    fitted = []
    for slot in ("generator", "discriminator"):
        comp = getattr(spec, slot)
        opts = fit_options(slot, comp.name, spec.data.image_size, comp.options)
        fitted += [f"{slot}.options.{k}={json.dumps(v)}" for k, v in opts.items() if comp.options.get(k, _MISSING) != v]
    spec, _ = build_spec(PRESET, None, flags, fitted + list(config.overrides))  # the user's --set wins
    return spec


@dataclass
class LeaderboardResult:
    out: Path
    data: dict[str, Any]


def _png_data_uri(rgb) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows ranked by ``key``: ascending unless higher is better; rows without a value go last."""
    better = METRICS[key][1] if key in METRICS else EXTRA_COLUMNS.get(key, (None, None))[1]
    sign = -1.0 if better == "higher" else 1.0
    return sorted(rows, key=lambda r: (r.get(key) is None, sign * (r.get(key) or 0.0)))


def compare_with_gray(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For each model: the metrics (with a direction) on which it beats / loses to the gray baseline."""
    from zoo.evaluate import GRAY_BASELINE

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
    import gc

    from zoo import bench
    from zoo.runfolder import list_checkpoints
    from zoo.engine import Trainer
    from zoo.runtime import select_device
    from zoo.evaluate import GRAY_BASELINE, candidate_from_trained, evaluate, load_images
    from zoo.loading import load_trained
    from zoo.registry import get_registry

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
        samples.append({"image": name, "cells": [{"title": t, "png": _png_data_uri(img)} for t, img in cells]})
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
    from zoo.fileio import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("leaderboard.json", json.dumps(data, indent=2, allow_nan=False)),
                       ("leaderboard.md", render_markdown(data)), ("leaderboard.html", render_html(data))):
        atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# Rendering (from the JSON data alone)


def _title(key: str) -> str:
    if key in METRICS:
        title, better, _ = METRICS[key]
    else:
        title, better = EXTRA_COLUMNS[key]
    return title + {"lower": " ↓", "higher": " ↑"}.get(better, "")


def _cell(key: str, value: Any) -> str:
    from zoo.evaluate import format_value

    if value is None:
        return "-"
    if key in ("params", "disc_params"):
        return f"{value / 1e6:.2f} M"
    if key in _FORMATS:
        return format(value, _FORMATS[key])
    return format_value(key, value)


def _summary_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    for model, cmp in data["vs_gray"].items():
        titles = lambda keys: ", ".join(METRICS[k][0] for k in keys) or "nothing"  # noqa: E731
        lines.append(f"{model} beats the gray baseline on {titles(cmp['better'])}; loses on {titles(cmp['worse'])}.")
    return lines


def _hardware_line(hw: dict[str, Any]) -> str:
    gpus = ", ".join(hw.get("gpus") or []) or "none"
    return (f"{hw['cpu']}, {hw['cpu_cores']} cores ({hw['torch_threads']} torch threads); GPU: {gpus}; "
            f"device used: {hw['device']}; {hw['platform']}, Python {hw['python']}")


def render_markdown(data: dict[str, Any]) -> str:
    """leaderboard.md: the ranked table, how the numbers were made, hardware and versions."""
    p, tr = data["protocol"], data["training"]["spec"]
    headers = [h.replace("|", "\\|") for h in ["rank", "model"] + [_title(k) for k in TABLE_COLUMNS]]
    lines = [f"# {data['title']}", "",
             f"Ranked by {_title(data['sort']['key'])}; {data['created']}; made with `{data['command']}`.", "",
             "| " + " | ".join(headers) + " |", "|" + "|".join(["---:", ":---"] + ["---:"] * len(TABLE_COLUMNS)) + "|"]
    for r in data["rows"]:
        name = r["model"].replace("|", "\\|")
        name = f"**{name}**" if r["generator"] is None else name
        lines.append("| " + " | ".join([str(r["rank"]), name] + [_cell(k, r.get(k)) for k in TABLE_COLUMNS]) + " |")
    lines += ["", *(f"- {s}" for s in _summary_lines(data)), "",
              "## How", "",
              f"- Budget: {data['budget']['description']}; total time {data['elapsed_s']:.0f} s.",
              f"- Training: preset `{data['training']['preset']}`, discriminator `{tr['discriminator']['name']}` "
              f"{json.dumps(tr['discriminator']['options'])}, GAN loss `{tr['gan_loss']['name']}`, pixel loss "
              f"`{tr['pixel_loss']['name']}` x {tr['pixel_weight']:g}, data `{tr['data']['source']}` "
              f"({tr['data']['image_size']} px, load {tr['data']['load_size']}, batch {tr['data']['batch_size']}), "
              f"seed {tr['seed']}; overrides: {' '.join(data['training']['overrides']) or 'none'}.",
              f"- Evaluation: {p['images']} {p['split']} images of `{p['data']}` at {p['image_size']} px; "
              f"{p['resize']}.",
              f"- Ground truth: {p['ground_truth']}. Prediction: {p['prediction']}.",
              f"- Means: {p['means']}. {p['psnr_rule']}.",
              "- Throughput: train img/s from the engine's GAN step on a fixed batch (median of 2 after a "
              "warm-up); infer img/s from the trained generator in eval mode (median of 3), both in the training "
              f"precision ({', '.join(sorted({str(r['precision']) for r in data['rows'] if r.get('precision')}))}); "
              "evaluation runs in float32.", "",
              "## Hardware and versions", "", f"- {_hardware_line(data['hardware'])}",
              "- " + ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v), ""]
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1a1a1a; background: #fff; }
table { border-collapse: collapse; font-size: 13px; margin: 12px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #24476b; color: #fff; }
td.name { text-align: left; font-weight: 600; }
tr.baseline td { background: #eee; font-style: italic; }
tr:nth-child(even) td { background: #f4f8fc; }
th.name { text-align: left; }
.grid th { text-align: center; }
.grid td { text-align: center; vertical-align: top; border: none; font-size: 12px; }
.grid img { width: 160px; height: 160px; image-rendering: pixelated; display: block; margin: 2px auto; }
.small { color: #555; font-size: 12px; }
"""


def render_html(data: dict[str, Any]) -> str:
    """leaderboard.html: one self-contained page (inline CSS, images as PNG data URIs, no scripts)."""
    e = html.escape
    head = "<th>rank</th><th class=\"name\">model</th>" + "".join(f"<th>{e(_title(k))}</th>" for k in TABLE_COLUMNS)
    body = []
    for r in data["rows"]:
        cls = ' class="baseline"' if r["generator"] is None else ""
        cells = "".join(f"<td>{e(_cell(k, r.get(k)))}</td>" for k in TABLE_COLUMNS)
        body.append(f"<tr{cls}><td>{r['rank']}</td><td class=\"name\">{e(r['model'])}</td>{cells}</tr>")
    grid = []
    if data["samples"]:
        titles = "".join(f"<th>{e(c['title'])}</th>" for c in data["samples"][0]["cells"])
        grid.append(f"<table class=\"grid\"><tr>{titles}</tr>")
        for s in data["samples"]:
            cells = "".join(f"<td><img alt=\"{e(c['title'])}: {e(s['image'])}\" src=\"{c['png']}\"></td>"
                            for c in s["cells"])
            grid.append(f"<tr>{cells}</tr><tr><td class=\"small\" colspan=\"{len(s['cells'])}\">{e(s['image'])}"
                        f"</td></tr>")
        grid.append("</table>")
    p = data["protocol"]
    protocol = "".join(f"<li><b>{e(k)}</b>: {e(str(p[k]))}</li>" for k in
                       ("image_size", "data", "split", "images", "resize", "ground_truth", "model_input", "prediction",
                        "gray_baseline", "means", "psnr_rule"))
    versions = ", ".join(f"{e(k)} {e(str(v))}" for k, v in data["versions"].items() if v)
    summary = "".join(f"<li>{e(s)}</li>" for s in _summary_lines(data))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(data['title'])}</title><style>{_CSS}</style></head>
<body>
<h1>{e(data['title'])}</h1>
<p>Ranked by {e(_title(data['sort']['key']))}. {e(data['budget']['description'])}; total time
{data['elapsed_s']:.0f} s. Made {e(data['created'])} with <code>{e(data['command'])}</code>.</p>
<table><tr>{head}</tr>
{''.join(body)}
</table>
<ul>{summary}</ul>
<h2>Validation photos</h2>
{''.join(grid)}
<h2>Protocol</h2>
<ul>{protocol}</ul>
<h2>Hardware and versions</h2>
<p>{e(_hardware_line(data['hardware']))}</p>
<p>{versions}</p>
</body></html>
"""


__all__ = ["Budget", "DEFAULT_BUDGET", "LeaderboardConfig", "LeaderboardResult", "SORT_KEYS", "compare_with_gray",
           "model_spec", "render_html", "render_markdown", "run_leaderboard", "sort_rows", "write_outputs"]
