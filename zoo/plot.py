"""Training curves of one or more runs, drawn from each run's ``losses.jsonl`` to a PNG (matplotlib, Agg).

``losses.jsonl`` has one JSON object per line: training rows (``step``, ``stage``, the losses ``d_real``,
``d_fake``, ``g_gan``, ``g_pixel``, ``img_per_s``, ``time``) and validation rows (``step``, ``val_l1``,
``val_images`` and any other ``val_*`` metric). Every numeric key gets a panel (losses first, then img/s, then
validation metrics); each run has one colour in every panel. Lines that are not JSON objects (a crash mid-write,
an edit by hand) are skipped and counted.

    from zoo.plot import plot_runs, write_curves
    plot_runs(["runs/a", "runs/b"], "curves.png")
    write_curves("runs/a")          # runs/a/curves.png, as the engine does at every sample step
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from zoo.errors import ZooError
from zoo.runfolder import CURVES as CURVES_FILE, LOSSES  # the run folder's layout has one owner
from zoo.text import escape, shown

LOSS_KEYS = ("d_real", "d_fake", "g_gan", "g_pixel")
SPEED_KEY = "img_per_s"
#: keys of a row that are bookkeeping, not curves
NOT_CURVES = {"step", "stage", "epoch", "time", "val_images"}
TITLES = {"img_per_s": "throughput (img/s)", "val_l1": "validation ab L1"}


class PlotError(ZooError):
    """A run folder cannot be plotted (missing, not a run, no log rows)."""


@dataclass
class RunLog:
    """The rows of one run's ``losses.jsonl``: ``series[key]`` = (steps, values); ``skipped`` corrupt lines."""

    name: str
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    skipped: int = 0


def read_log(run_dir: str | os.PathLike) -> RunLog:
    """Read ``RUN/losses.jsonl``; raises PlotError for a folder without one or with no usable row."""
    run = Path(run_dir)
    path = run / LOSSES
    if not run.is_dir():
        raise PlotError(f"run folder {shown(run)} does not exist: give a zoo run folder (made by zoo train)")
    if not path.is_file():
        raise PlotError(f"{shown(run)} is not a zoo run folder (no losses.jsonl): give a folder made by zoo train")
    log = RunLog(run.resolve().name)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PlotError(f"cannot read {shown(path)}: {exc.strerror or exc}") from exc
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            step = int(row["step"])
            if not 0 <= step < 2**63:
                raise ValueError("step out of range")
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError):  # not JSON, 1e400, [[[... deep
            log.skipped += 1
            continue
        if not isinstance(row, dict):
            log.skipped += 1
            continue
        for key, value in row.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            try:
                value = float(value)  # an integer of 400 digits does not fit a float
            except OverflowError:
                continue
            if not math.isfinite(value):
                continue
            steps, values = log.series.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
    if not log.series:
        what = f"{log.skipped} corrupt line(s), no usable row" if log.skipped else "no rows yet"
        raise PlotError(f"{shown(path)} has {what}: nothing to plot (train for at least log_every steps)")
    return log


def _order(keys: set[str]) -> list[str]:
    losses = [k for k in LOSS_KEYS if k in keys]
    val = sorted(k for k in keys if k.startswith("val_"))
    speed = [SPEED_KEY] if SPEED_KEY in keys else []
    other = sorted(keys - set(losses) - set(val) - set(speed))
    return losses + other + speed + val


def _label(name: str) -> str:
    """A name from outside (run folder, log key) as plot text: escaped like in messages (an undecodable byte
    cannot be drawn) and with ``$`` escaped, so matplotlib does not read it as mathtext."""
    return escape(name).replace("$", r"\$")


def render(logs: Sequence[RunLog], out: str | os.PathLike) -> Path:
    """Draw the logs to a PNG at ``out`` (written atomically); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, safe in a training thread

    from zoo.fileio import IMAGE_MARK, atomic_write

    keys = _order(set().union(*(log.series for log in logs)))
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100, layout="constrained")
    colours = [f"C{i % 10}" for i in range(len(logs))]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, i + 1)
        lo, hi = math.inf, 0.0
        for log, colour in zip(logs, colours):
            if key not in log.series:
                continue
            steps, values = log.series[key]
            marker = "o" if len(steps) < 20 else None
            ax.plot(steps, values, color=colour, label=_label(log.name), marker=marker, markersize=3, linewidth=1.4)
            lo, hi = min(lo, min(values)), max(hi, max(values))
        if key != SPEED_KEY and lo > 0 and hi / lo > 10:
            ax.set_yscale("log")  # losses spanning decades; img/s and narrow ranges read better linearly
        ax.set_title(TITLES.get(key, _label(key)))
        ax.set_xlabel("step")
        ax.set_ylabel("img/s" if key == SPEED_KEY else _label(key))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": IMAGE_MARK}))
    return out


def plot_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike, force: bool = False) -> tuple[Path, int]:
    """Plot the curves of ``runs`` to the PNG ``out``; returns (path, corrupt lines skipped in all runs).

    ``out`` is refused if it exists and is not a PNG zoo could have written (``zoo.fileio.check_output_file``).
    """
    from zoo.fileio import check_output_file, has_image_mark

    if not runs:
        raise PlotError("give at least one run folder to plot")
    out = check_output_file(out, (".png",), "a PNG plot", force=force, made_by_zoo=has_image_mark)
    if out.suffix.lower() != ".png":
        raise PlotError(f"--out {shown(out)} must end in .png (zoo plot writes PNG)")
    logs = [read_log(run) for run in runs]
    return render(logs, out), sum(log.skipped for log in logs)


def write_curves(run_dir: str | os.PathLike) -> Path | None:
    """Write ``RUN/curves.png`` from the run's own log (the engine calls this at each sample step and at the end).

    Returns None, writing nothing, while no curve has two points yet (a log of one row is no curve, and
    drawing takes a second or two of the training thread).
    """
    try:
        log = read_log(run_dir)
    except PlotError:
        return None
    if all(len(steps) < 2 for steps, _ in log.series.values()):
        return None
    return render([log], Path(run_dir) / CURVES_FILE)


__all__ = ["CURVES_FILE", "PlotError", "RunLog", "plot_runs", "read_log", "render", "write_curves"]
