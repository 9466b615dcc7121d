"""What a leaderboard compares, validated before anything trains: the entries (whole specs: a grid of
``--gens/--discs/--gan-losses/--pixel-losses``, a board file's ``entries:``, ``--preset`` / ``--config``), the
per-model budget and the board's flags (:class:`LeaderboardConfig`), and each entry's spec for a seed
(:func:`entry_spec`: every slot's options fitted to the image size by the depth its component declared, then
``--set``).

Imported by the CLI when it builds its parser (DEFAULT_BUDGET, SORT_KEYS): no torch here.
"""
from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import SpecError
from zoo.metrics import ALL_METRICS
from zoo.registry import get_registry
from zoo.spec import SLOTS, build_spec, read_config
from zoo.text import shown

#: default --budget when neither --preset nor --config gives a length: GAN steps per model
DEFAULT_BUDGET = "300"
SORT_KEYS = list(ALL_METRICS) + ["train_img_per_s", "infer_img_per_s", "params", "train_time_s"]
GRID_FLAGS = {"generator": "--gens", "discriminator": "--discs", "gan_loss": "--gan-losses",
              "pixel_loss": "--pixel-losses"}
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


__all__ = ["Budget", "DEFAULT_BUDGET", "Entry", "GRID_FLAGS", "LeaderboardConfig", "SORT_KEYS", "entry_spec",
           "grid_entries", "read_board_file"]
