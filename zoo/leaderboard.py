"""The leaderboard: named entries (whole specs) trained with N seeds each, scored on one test set, ranked with
error bars.

* **Entries** are whole specs (:class:`Entry`): ``--preset`` / ``--config`` apply to every entry; a board file
  (``--config board.yaml`` holding ``entries:``) names them; ``--gens/--discs/--gan-losses/--pixel-losses`` make a
  grid. Every slot's options are fitted to the image size by the depth each component declared
  (:meth:`zoo.registry.Component.fit_options`), then ``--set`` applies to every entry.
* **Seeds**: each entry trains with seeds ``seed .. seed + N - 1``; every metric is a mean over seeds with a 95 %
  interval (:func:`zoo.stats.seed_interval`), and each entry's difference from the leader gets a paired bootstrap
  interval over (seed, image) cells (:func:`zoo.stats.paired_difference`): entries whose interval on the sort
  metric contains 0 are marked tied with the leader.
* **Reuse**: a run is named by its spec hash (:func:`spec_hash`: the resolved spec, the budget and a fingerprint of
  the training data); a hash the board folder's marker (``.zoo-board.json``) lists as finished is evaluated, not
  retrained; a run folder without that mark is resumed (``Trainer.resume``) or, with no checkpoint, trained anew.
  ``--runs`` ranks finished runs with no training; ``--merge`` combines boards of the same protocol.
* **Outputs**: ``leaderboard.json`` (everything) and, rendered from it alone by :mod:`zoo.leaderboard_render`,
  ``leaderboard.md`` and ``leaderboard.html``.

The training, loading and evaluation modules (torch) are imported when a leaderboard runs, not when the CLI
builds its parser (which reads DEFAULT_BUDGET and SORT_KEYS from here).
"""
from __future__ import annotations

import copy
import difflib
import gc
import hashlib
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import SpecError, ZooError
from zoo.fileio import check_output_file, write_text
from zoo.leaderboard_render import EXTRA_COLUMNS, png_data_uri, render_html, render_markdown
from zoo.metrics import ALL_METRICS, METRICS
from zoo.registry import get_registry
from zoo.spec import SLOTS, build_spec, read_config
from zoo.text import shown

#: default --budget when neither --preset nor --config gives a length: GAN steps per model
DEFAULT_BUDGET = "300"
PREVIEWS = 4  # test images in the HTML's side-by-side grid
MARKER = ".zoo-board.json"  # a board folder zoo made: its finished runs and measured throughputs
MARKER_FORMAT = "zoo-board/1"
OUTPUTS = ("leaderboard.json", "leaderboard.md", "leaderboard.html")

SORT_KEYS = list(ALL_METRICS) + ["train_img_per_s", "infer_img_per_s", "params", "train_time_s"]
GRID_FLAGS = {"generator": "--gens", "discriminator": "--discs", "gan_loss": "--gan-losses",
              "pixel_loss": "--pixel-losses"}
_MISSING = object()


class BoardStopped(ZooError):
    """A board stopped early (Ctrl-C, SIGTERM): what finished is saved; the same command continues."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


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


@dataclass(frozen=True)
class Entry:
    """One leaderboard entry: a name and the layers of its spec (its own preset/config, then its overrides)."""

    name: str
    preset: str | None = None
    config: str | None = None
    overrides: tuple[str, ...] = ()


def _flatten(prefix: str, value: Any) -> list[str]:
    """A nested spec mapping as --set items (a.b=value, values as JSON, which YAML reads back)."""
    if isinstance(value, dict) and value:
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}" if prefix else str(k), v)]
    return [f"{prefix}={json.dumps(value)}"]


ENTRY_KEYS = {"name", "preset", "config", "set", "spec"}


def read_board_file(path: str | Path) -> tuple[dict[str, Any], list[Entry]] | None:
    """A board file's top level (preset, config, set) and entries, or None when ``path`` is a plain spec config.

    ``entries:`` is a list of mappings: ``name`` (required), ``preset``, ``config`` (a path, relative to the board
    file), ``set`` (a list of dotted.key=value) and ``spec`` (a nested spec mapping).
    """
    data = read_config(path)
    if "entries" not in data:
        return None
    base = Path(path).parent
    extra = set(data) - {"entries", "preset", "config", "set"}
    if extra:
        raise SpecError(f"board file {shown(path)}: unknown top-level key {shown(sorted(extra)[0])}: a board file "
                        f"holds entries, preset, config and set")
    raw = data["entries"]
    if not isinstance(raw, list) or not raw:
        raise SpecError(f"board file {shown(path)}: entries must be a non-empty list of mappings with a name")
    entries = []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise SpecError(f"board file {shown(path)}: entry {i} needs a name (a mapping with name: ...)")
        unknown = set(item) - ENTRY_KEYS
        if unknown:
            raise SpecError(f"board file {shown(path)}: entry {shown(item['name'])} has unknown key "
                            f"{shown(sorted(unknown)[0])}; use {', '.join(sorted(ENTRY_KEYS))}")
        sets = item.get("set") or []
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise SpecError(f"board file {shown(path)}: entry {shown(item['name'])}: set must be a list of "
                            f"dotted.key=value strings")
        spec_layer = item.get("spec") or {}
        if not isinstance(spec_layer, dict):
            raise SpecError(f"board file {shown(path)}: entry {shown(item['name'])}: spec must be a mapping")
        config = item.get("config")
        if config is not None:
            config = str(base / config) if not os.path.isabs(str(config)) else str(config)
        entries.append(Entry(item["name"].strip(), item.get("preset"), config,
                             tuple(_flatten("", spec_layer) + list(sets)) if spec_layer else tuple(sets)))
    top_config = data.get("config")
    if top_config is not None and not os.path.isabs(str(top_config)):
        top_config = str(base / top_config)
    top_sets = data.get("set") or []
    if not isinstance(top_sets, list):
        raise SpecError(f"board file {shown(path)}: set must be a list of dotted.key=value strings")
    return {"preset": data.get("preset"), "config": top_config, "set": list(top_sets)}, entries


def grid_entries(choices: dict[str, list[str] | None]) -> list[Entry]:
    """The grid of the given slot choices (slot -> names); each entry named by the names that vary."""
    slots = [s for s in SLOTS if choices.get(s)]
    if not slots:
        return []
    varying = [s for s in slots if len(choices[s]) > 1] or slots[:1]
    entries = []
    for combo in itertools.product(*(choices[s] for s in slots)):
        picked = dict(zip(slots, combo))
        name = "/".join(picked[s] for s in varying)
        entries.append(Entry(name, overrides=tuple(f"{s}.name={picked[s]}" for s in slots)))
    return entries


@dataclass
class LeaderboardConfig:
    entries: list[Entry]
    budget: Budget | None
    out: Path
    seeds: int = 1
    sort: str = "deltae00"
    preset: str | None = None
    config: str | None = None
    flags: dict[str, Any] = field(default_factory=dict)  # data.source, data.image_size, ... shared by every entry
    overrides: list[str] = field(default_factory=list)
    eval_data: str | None = None
    split: str | None = None
    runs: list[str] = field(default_factory=list)  # --runs: rank these, train nothing
    perceptual: bool = True
    progress: bool = True
    command: str = ""
    base_seed: int | None = None  # --seed: the first seed (default: the spec's, 0)

    @classmethod
    def from_cli(cls, gens: list[str] | None = None, disc: str | None = None, budget: str | None = None,
                 data: str | None = None, out: str | None = None, sort: str = "deltae00",
                 image_size: int | None = None, batch_size: int | None = None, seed: int | None = None,
                 overrides: list[str] = (), device: str | None = None, progress: bool = True, command: str = "",
                 discs: list[str] | None = None, gan_losses: list[str] | None = None,
                 pixel_losses: list[str] | None = None, preset: str | None = None, config: str | None = None,
                 seeds: int = 1, eval_data: str | None = None, split: str | None = None,
                 runs: list[str] | None = None, perceptual: bool = True) -> "LeaderboardConfig":
        """Validate names and values before anything trains (one-line errors)."""
        from zoo.evaluate import SPLITS

        registry = get_registry()
        if sort not in SORT_KEYS:
            close = difflib.get_close_matches(sort, SORT_KEYS, n=1)
            hint = f" Did you mean {shown(close[0])}?" if close else ""
            raise SpecError(f"--sort {shown(sort)} is not a column.{hint} Available: {', '.join(SORT_KEYS)}")
        if seeds < 1:
            raise SpecError(f"--seeds must be at least 1, got {seeds}")
        if split is not None and split not in SPLITS:
            raise SpecError(f"--split {shown(split)}: use one of {', '.join(SPLITS)}")
        if discs is None and disc is not None:
            discs = [disc]
        choices = {"generator": gens, "discriminator": discs, "gan_loss": gan_losses, "pixel_loss": pixel_losses}
        for slot, names in choices.items():
            if names is not None and not names:
                raise SpecError(f"{GRID_FLAGS[slot]} is empty: name components separated by commas")
            for name in names or []:
                registry.get(slot, name)
            if names:
                choices[slot] = list(dict.fromkeys(names))
        top: dict[str, Any] = {"preset": preset, "config": config, "set": []}
        board_entries: list[Entry] = []
        if config is not None:
            board = read_board_file(config)
            if board is not None:
                top, board_entries = board
                top["preset"] = preset or top["preset"]
        grid = grid_entries(choices)
        if board_entries and grid:
            entries = [Entry(f"{b.name}/{g.name}", b.preset, b.config, b.overrides + g.overrides)
                       for b in board_entries for g in grid]
        else:
            entries = board_entries or grid
        if not entries and not runs:
            entries = grid_entries({"generator": registry.names("generator")})
        names = [e.name for e in entries]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise SpecError(f"two entries are named {shown(dup)}: give each entry of the board file its own name")
        has_length = top["preset"] is not None or top["config"] is not None or any(
            e.preset or e.config for e in entries)
        parsed = Budget.parse(budget) if budget is not None else (None if has_length else Budget.parse(DEFAULT_BUDGET))
        flags = {"data.source": data, "data.image_size": image_size, "data.batch_size": batch_size, "device": device}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return cls(entries=entries, budget=parsed,
                   out=Path(out) if out else Path("runs") / f"leaderboard-{stamp}", seeds=seeds, sort=sort,
                   preset=top["preset"], config=top["config"], flags={k: v for k, v in flags.items() if v is not None},
                   overrides=list(top["set"]) + list(overrides), eval_data=eval_data, split=split,
                   runs=list(runs or []), perceptual=perceptual, progress=progress, command=command,
                   base_seed=seed)


def entry_spec(config: LeaderboardConfig, entry: Entry, seed_index: int = 0, steps: int | None = None):
    """The TrainSpec of one entry and seed: the entry's preset/config (else the board's) + shared flags + the
    entry's overrides, every slot's options fitted to the image size by its declared depth
    (Component.fit_options), then the board's --set (which wins)."""
    registry = get_registry()
    preset = entry.preset or config.preset
    cfg = entry.config or config.config
    flags = dict(config.flags)
    if config.budget is not None:
        flags["steps"] = steps if steps is not None else (config.budget.steps or 1)
    budget_layer = ["epochs=null"] if config.budget is not None else []
    spec, _ = build_spec(preset, cfg, flags, list(entry.overrides) + budget_layer + list(config.overrides))
    base_seed = config.base_seed if config.base_seed is not None else spec.seed
    fitted = []
    for slot in SLOTS:
        comp = getattr(spec, slot)
        opts = registry.get(slot, comp.name).fit_options(comp.options, spec.data.image_size)
        fitted += [f"{slot}.options.{k}={json.dumps(v)}" for k, v in opts.items() if comp.options.get(k, _MISSING) != v]
    flags["seed"] = base_seed + seed_index
    spec, _ = build_spec(preset, cfg, flags, list(entry.overrides) + budget_layer + fitted + list(config.overrides))
    return spec


# ---------------------------------------------------------------------------------------------------------
# Identity of a run: spec hash and data fingerprint


def data_fingerprint(spec) -> dict[str, Any]:
    """What the training data is: the source, its file list with sizes and mtimes (a folder), or the names of
    the embedded photos; and its sha256."""
    from zoo.data import resolve_source

    src = resolve_source(spec.data.source, seed=spec.data.split_seed, val_fraction=spec.data.val_fraction)
    files = []
    for side, items in (("train", src.train), ("val", src.val)):
        for item in items:
            entry = [side, item.name]
            if item.path is not None:
                try:
                    st = os.stat(item.path)
                    entry += [st.st_size, st.st_mtime_ns]
                except OSError:
                    entry += [None, None]
            files.append(entry)
    digest = hashlib.sha256(json.dumps([src.name, files]).encode("utf-8")).hexdigest()
    return {"source": src.name, "train": len(src.train), "val": len(src.val), "sha256": digest}


def spec_hash(spec, budget: Budget | None, fingerprint: dict[str, Any]) -> str:
    """sha256 of the resolved spec (less where its files go), the budget (a time budget's step count is
    measured, so the budget stands for it) and the data fingerprint."""
    exclude = {"out", "run_name"} | ({"steps"} if budget is not None and budget.seconds is not None else set())
    payload = {"spec": spec.resolved(get_registry()).model_dump(mode="json", exclude=exclude),
               "budget": budget.describe() if budget is not None else None, "data": fingerprint["sha256"]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _probe_key(spec, budget: Budget | None) -> str:
    """Throughput is measured once per entry (seed and data do not change a step's time)."""
    return spec_hash(spec.model_copy(update={"seed": 0}), budget, {"sha256": ""})[:16]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "entry"


# ---------------------------------------------------------------------------------------------------------
# The board folder


def check_board_folder(out: Path, flag: str = "--out") -> dict[str, Any]:
    """Refuse an --out that is not new, empty or a board folder zoo made; return its marker's state."""
    from zoo.fileio import OutputRefused

    out = Path(out)
    if os.path.lexists(out) and not out.is_dir():
        raise OutputRefused(f"{flag} {shown(out)} exists and is not a folder: give a new folder for the board")
    state: dict[str, Any] = {"format": MARKER_FORMAT, "runs": {}, "probes": {}}
    if out.is_dir():
        marker = out / MARKER
        if marker.is_file():
            try:
                loaded = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise OutputRefused(f"{flag} {shown(out)}: its board marker {MARKER} is unreadable ({exc}); move "
                                    f"it away or choose another folder") from None
            if not isinstance(loaded, dict) or loaded.get("format") != MARKER_FORMAT:
                raise OutputRefused(f"{flag} {shown(out)}: {MARKER} is not a zoo board marker; choose another folder")
            state.update(loaded)
        elif any(out.iterdir()):
            raise OutputRefused(f"{flag} {shown(out)} is a non-empty folder zoo did not make as a board (no "
                                f"{MARKER}): nothing in it is touched; choose a new or empty folder")
    for name in OUTPUTS:
        check_output_file(out / name, (Path(name).suffix,), "a leaderboard file", flag=flag)
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    write_text(Path(out) / MARKER, json.dumps(state, indent=2, allow_nan=False))


# ---------------------------------------------------------------------------------------------------------
# Scores -> ranked rows with error bars (from leaderboard.json's data alone: --merge recomputes them)


def _direction(key: str) -> str | None:
    if key in ALL_METRICS:
        return ALL_METRICS[key][1]
    return EXTRA_COLUMNS.get(key, (None, None))[1]


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows ranked by ``key``: ascending unless higher is better; rows without a value go last."""
    sign = -1.0 if _direction(key) == "higher" else 1.0
    return sorted(rows, key=lambda r: (r.get(key) is None, sign * (r.get(key) or 0.0)))


def _cells(images: list[dict[str, Any]], model: str, seeds: list[int], names: list[str], key: str):
    """(seeds, images) array of one entry's per-image ``key`` (the gray baseline: one row, seed None)."""
    import numpy as np

    table = {(r.get("seed"), r["image"]): r.get(key) for r in images if r["model"] == model}
    rows = [[table.get((s, n)) for n in names] for s in seeds]
    if any(v is None for row in rows for v in row):
        return None
    return np.asarray(rows, dtype=np.float64)


def _paired(data: dict[str, Any], a: str, b: str, key: str) -> dict[str, Any] | None:
    """Paired bootstrap of row a - row b on ``key`` over the (seed, image) cells they share."""
    import numpy as np
    from zoo.stats import paired_difference

    names = data["image_names"]
    seeds = {e["name"]: [r["seed"] for r in e["runs"]] for e in data["entries"]}
    sa, sb = seeds.get(a, [None]), seeds.get(b, [None])

    def matrix(model, s, column):
        return _cells(data["images"], model, s, names, column)

    def aligned(column):
        ma, mb = matrix(a, sa, column), matrix(b, sb, column)
        if ma is None or mb is None:
            return None, None
        if ma.shape != mb.shape:  # the gray baseline (one row), or boards with other seeds: per-image means
            if ma.shape[0] == 1 or mb.shape[0] == 1:
                n = max(ma.shape[0], mb.shape[0])
                ma, mb = np.repeat(ma, n // ma.shape[0], 0), np.repeat(mb, n // mb.shape[0], 0)
            else:
                ma, mb = ma.mean(0, keepdims=True), mb.mean(0, keepdims=True)
        return ma, mb

    if key in METRICS or key == "lpips":
        ma, mb = aligned(key)
        return None if ma is None else paired_difference(ma, mb)
    if key == "colorfulness_dataset_abs_diff":
        pa, pb = aligned("colorfulness")
        ta, tb = aligned("colorfulness_truth")
        if pa is None or ta is None:
            return None
        return paired_difference(np.stack([pa, ta]), np.stack([pb, tb]), statistic="abs_mean_gap")
    return None  # FID and non-metric columns: no per-image values to pair


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The ranked rows of a board from its entries and per-image scores: each metric's mean over seeds with its
    95 % interval, the difference from the leader with its paired bootstrap interval, and ties."""
    from zoo.evaluate import GRAY_BASELINE
    from zoo.stats import is_tied, seed_interval

    key = data["sort"]["key"]
    rows = []
    for e in data["entries"]:
        row = {"model": e["name"], "baseline": False, "seeds": [r["seed"] for r in e["runs"]]}
        for k in ALL_METRICS:
            values = [r["means"][k] for r in e["runs"] if k in r["means"]]
            if len(values) == len(e["runs"]) and values:
                ci = seed_interval(values)
                row[k], row[f"{k}_ci"] = ci["mean"], [ci["low"], ci["high"]]
        for k in EXTRA_COLUMNS:
            row[k] = e.get(k)
        rows.append(row)
    gray = data.get("gray_baseline")
    if gray is not None:
        rows.append({"model": GRAY_BASELINE, "baseline": True, "seeds": [],
                     **{k: v for k, v in gray.items() if k in ALL_METRICS}, **{k: None for k in EXTRA_COLUMNS}})
    rows = sort_rows(rows, key)
    leader = rows[0]
    for row in rows:
        row["vs_leader"] = {}
        if row is leader or row.get(key) is None:
            continue
        for k in ALL_METRICS:
            if k in row and k in leader:
                diff = _paired(data, row["model"], leader["model"], k)
                if diff is not None:
                    diff["tied"] = is_tied(diff)
                    row["vs_leader"][k] = diff
    rank = 0
    for i, row in enumerate(rows, 1):
        d = row["vs_leader"].get(key)
        row["tied_with_leader"] = None if row is leader else (d["tied"] if d else None)
        if row is leader or row["tied_with_leader"]:
            row["rank"], row["rank_label"] = 1, "1" if row is leader else "=1"
        else:
            rank = max(rank, i)
            row["rank"], row["rank_label"] = i, str(i)
    return rows


def compare_with_gray(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[str]]]:
    """For each entry: the metrics (with a direction) on which its mean beats / loses to the gray baseline."""
    gray = next((r for r in rows if r["baseline"]), None)
    out = {}
    for row in rows:
        if row["baseline"] or gray is None:
            continue
        better, worse = [], []
        for key, (_, direction, _) in ALL_METRICS.items():
            if direction is None or key not in row or key not in gray or row[key] == gray[key]:
                continue
            wins = row[key] < gray[key] if direction == "lower" else row[key] > gray[key]
            (better if wins else worse).append(key)
        out[row["model"]] = {"better": better, "worse": worse}
    return out


def finish(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """Rank, compare and write the three files of a board's data."""
    data["rows"] = summarize(data)
    data["vs_gray"] = compare_with_gray(data["rows"])
    write_outputs(data, out)
    return data


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
    log = log or (lambda msg: print(msg, file=sys.stderr))
    try:
        return _run(config, log)
    except KeyboardInterrupt:
        raise BoardStopped(f"stopped by Ctrl-C; the finished runs are kept in {config.out}: rerun the same command "
                           f"to continue") from None


def _run(config: LeaderboardConfig, log: Callable[[str], None]) -> LeaderboardResult:
    # torch and the training stack: imported when a leaderboard runs (see the module docstring)
    from zoo import bench
    from zoo.engine import Trainer, TrainingStopped
    from zoo.errors import CheckpointError
    from zoo.evaluate import candidate_from_trained, evaluate
    from zoo.loading import load_trained
    from zoo.runtime import select_device

    registry = get_registry()
    started = time.perf_counter()
    state = check_board_folder(config.out)
    if config.runs:
        return _rank_runs(config, state, log, started)

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
            jobs.append(_Job(entry, k, spec, h, config.out / "runs" / f"{_safe(entry.name)}-seed{spec.seed}-{h[:10]}"))
    first = jobs[0].spec
    sizes = sorted({j.spec.data.image_size for j in jobs})
    if len(sizes) > 1:
        raise SpecError(f"the entries train at different image sizes ({', '.join(map(str, sizes))} px): one board "
                        f"scores every entry on the same images; give --image-size N")
    size, batch = first.data.image_size, first.data.batch_size
    device = select_device(first.device)
    images, eval_rule = _eval_images(config, first, log)
    config.out.mkdir(parents=True, exist_ok=True)
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
            probe_key = _probe_key(job.spec, config.budget)
            probe = state["probes"].get(probe_key)
            if probe is None:
                gan = bench.GanBench.create(job.spec, registry)
                step_s = bench.seconds_per_call(gan.train_step, repeats=2, warmup=1)
                probe = {"seconds_per_step": step_s, "disc_params": bench.count_parameters(gan.discriminator),
                         "precision": gan.precision}
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
                probe_key = _probe_key(job.spec, config.budget)
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
        "sort": {"key": config.sort, "better": _direction(config.sort)},
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


def _rank_runs(config: LeaderboardConfig, state, log, started) -> LeaderboardResult:
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
    config.out.mkdir(parents=True, exist_ok=True)
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

#: protocol keys that may differ between boards of one comparison: what was trained (each entry records its own
#: training data and seeds), not how the test set was scored
_VOLATILE = {"notes", "seeds", "training_data"}


def merge_boards(paths: list[str], out: Path, command: str = "") -> LeaderboardResult:
    """Combine boards (leaderboard.json files) of the same protocol into one, ranked again from their scores."""
    state = check_board_folder(out)
    boards = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            p = p / "leaderboard.json"
        try:
            boards.append((p, json.loads(p.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as exc:
            raise SpecError(f"--merge {shown(p)}: not a readable leaderboard.json ({exc})") from None
        if not isinstance(boards[-1][1], dict) or "entries" not in boards[-1][1]:
            raise SpecError(f"--merge {shown(p)}: not a leaderboard.json written by this zoo (no entries)")
    base_path, base = boards[0]
    proto = {k: v for k, v in base["protocol"].items() if k not in _VOLATILE}
    merged = copy.deepcopy(base)
    for p, board in boards[1:]:
        other = {k: v for k, v in board["protocol"].items() if k not in _VOLATILE}
        if other != proto:
            key = next(k for k in sorted(set(proto) | set(other)) if proto.get(k) != other.get(k))
            raise SpecError(f"--merge: {shown(p)} has another protocol than {shown(base_path)} ({key}: "
                            f"{shown(str(other.get(key))[:80])} vs {shown(str(proto.get(key))[:80])}): boards are "
                            f"combined only when scored the same way on the same images")
        if board["sort"] != base["sort"]:
            pass  # the first board's sort key ranks the merged board
        names = {e["name"] for e in merged["entries"]}
        for e in board["entries"]:
            if e["name"] in names:
                raise SpecError(f"--merge: entry {shown(e['name'])} is in more than one board: rename it in one "
                                f"of them (its leaderboard.json) or merge other boards")
            merged["entries"].append(e)
            merged["images"] += [r for r in board["images"] if r["model"] == e["name"]]
            if e["name"] in board["samples"]["cells"] and board["samples"]["images"] == merged["samples"]["images"]:
                cells = merged["samples"]["cells"]
                truth = cells.pop("ground truth", None)
                cells[e["name"]] = board["samples"]["cells"][e["name"]]
                if truth is not None:
                    cells["ground truth"] = truth
    merged["command"] = command
    merged["created"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    merged["merged_from"] = [str(p) for p, _ in boards]
    merged["hardware_of"] = {str(p): b["hardware"] for p, b in boards}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_state(out, state)
    finish(merged, out)
    return LeaderboardResult(out, merged)


def write_outputs(data: dict[str, Any], out: Path) -> None:
    """leaderboard.json and, rendered from it, leaderboard.md and leaderboard.html, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("leaderboard.json", json.dumps(data, indent=2, allow_nan=False)),
                       ("leaderboard.md", render_markdown(data)), ("leaderboard.html", render_html(data))):
        write_text(out / name, text)


__all__ = ["BoardStopped", "Budget", "DEFAULT_BUDGET", "Entry", "LeaderboardConfig", "LeaderboardResult", "MARKER",
           "SORT_KEYS", "check_board_folder", "compare_with_gray", "data_fingerprint", "entry_spec", "grid_entries",
           "merge_boards", "read_board_file", "render_html", "render_markdown", "run_leaderboard", "sort_rows",
           "spec_hash", "summarize", "write_outputs"]
