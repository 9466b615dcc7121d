"""The board folder (``--out``) and the identity of its runs.

* A board folder is new, empty, or one zoo made: its marker ``.zoo-board.json`` lists the finished runs (by spec
  hash) and the measured throughputs, so the same command continues a board and reuses what finished. One process
  writes a board at a time: it holds ``.zoo-board.lock`` (:func:`lock_board_folder`) from before the marker is
  written to the end.
* A run is named by :func:`spec_hash`: the resolved spec (less where its files go), the budget and a fingerprint
  of the training data (:func:`data_fingerprint`).
* The outputs: ``leaderboard.json`` (everything) and, rendered from it alone by :mod:`zoo.leaderboard_render`,
  ``leaderboard.md`` and ``leaderboard.html``, each written atomically (:func:`finish` ranks, then writes).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from zoo.board_entries import Budget
from zoo.board_ranking import compare_with_gray, pairwise, summarize
from zoo.fileio import check_output_file, write_text
from zoo.leaderboard_render import render_html, render_markdown
from zoo.registry import get_registry
from zoo.text import one_line, shown

MARKER = ".zoo-board.json"  # a board folder zoo made: its finished runs and measured throughputs
BOARD_LOCK = ".zoo-board.lock"  # held by the one zoo process writing the board (lock_board_folder)
MARKER_FORMAT = "zoo-board/1"
OUTPUTS = ("leaderboard.json", "leaderboard.md", "leaderboard.html")


# ---------------------------------------------------------------------------------------------------------
# Identity of a run: spec hash and data fingerprint


def data_fingerprint(spec) -> dict[str, Any]:
    """What the training data is: the source, its file list with sizes and mtimes (a folder), or the names of
    the embedded photos; and its sha256."""
    from zoo.sources import resolve_source

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


def throughput_key(spec, budget: Budget | None) -> str:
    """Throughput is measured once per entry (seed and data do not change a step's time)."""
    return spec_hash(spec.model_copy(update={"seed": 0}), budget, {"sha256": ""})[:16]


def run_folder_name(entry: str, seed: int, hash_: str) -> str:
    """The folder (under the board's ``runs/``) of one entry and seed: the entry name made safe for a path (any
    character outside ``A-Za-z0-9._-`` becomes ``_``; never empty, never ``.``/``..``), the seed and the hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", entry).strip("._") or "entry"
    return f"{safe}-seed{seed}-{hash_[:10]}"


# ---------------------------------------------------------------------------------------------------------
# The board folder


def _relative_inside(path: str) -> str:
    if os.path.isabs(path) or ".." in Path(path).parts or not path:
        raise ValueError(f"{shown(path)} is not a path inside the board folder")
    return path


class _MarkerRun(BaseModel):
    """A finished run as the marker records it (leaderboard.py writes it; every field is read back)."""

    model_config = ConfigDict(extra="allow", strict=True)
    entry: str
    seed: int
    seed_index: int
    run_dir: Annotated[str, AfterValidator(_relative_inside)]
    checkpoint: Annotated[str, AfterValidator(_relative_inside)]
    steps: int
    train_time_s: float


class _MarkerProbe(BaseModel):
    """A measured throughput: the numbers the board reads, each optional (an eval-only probe has no step time)."""

    model_config = ConfigDict(extra="allow", strict=True)
    seconds_per_step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    infer_img_per_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    disc_params: int | None = None
    precision: str | None = None


class _Marker(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    runs: dict[str, _MarkerRun] = {}
    probes: dict[str, _MarkerProbe] = {}


def _marker_problem(loaded: dict[str, Any]) -> str | None:
    """What is wrong with a marker's shape (at most three problems), or None: a hand-edited or damaged marker is
    refused in one line before the board reads it (a list for ``runs`` used to be a traceback)."""
    from zoo.component import format_validation_error

    try:
        _Marker.model_validate(loaded)
    except ValidationError as exc:
        return format_validation_error(exc, limit=3)
    return None


def read_board_json(path: Path) -> Any:
    """The JSON of a board file (the marker, a leaderboard.json); OSError, or ValueError whose text is the one-line
    reason (JSON nested too deeply for the decoder included)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:  # json's decoder recurses per level: [[[[... 100,000 deep
        raise ValueError("nested too deeply") from None


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
                loaded = read_board_json(marker)
            except (OSError, ValueError) as exc:
                raise OutputRefused(f"{flag} {shown(out)}: its board marker {MARKER} is unreadable ({one_line(exc)}); "
                                    f"move it away or choose another folder") from None
            if not isinstance(loaded, dict) or loaded.get("format") != MARKER_FORMAT:
                raise OutputRefused(f"{flag} {shown(out)}: {MARKER} is not a zoo board marker; choose another folder")
            problem = _marker_problem(loaded)
            if problem:
                raise OutputRefused(f"{flag} {shown(out)}: its board marker {MARKER} is damaged ({problem}): move it "
                                    f"away (its finished runs are then trained again) or choose another folder")
            state.update(loaded)
        elif any(p.name != BOARD_LOCK for p in out.iterdir()):
            raise OutputRefused(f"{flag} {shown(out)} is a non-empty folder zoo did not make as a board (no "
                                f"{MARKER}): nothing in it is touched; choose a new or empty folder")
    for name in OUTPUTS:
        check_output_file(out / name, (Path(name).suffix,), "a leaderboard file", flag=flag)
    return state


def lock_board_folder(out: Path, stack: contextlib.ExitStack, flag: str = "--out") -> dict[str, Any]:
    """Make ``out``, take its lock (released when ``stack`` closes) and check it again under the lock: a second
    board writing the same folder is refused in one line (naming the PID) before it writes anything."""
    from zoo.runfolder import RunLock

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stack.enter_context(RunLock.take(out / BOARD_LOCK, out, what="leaderboard folder"))
    return check_board_folder(out, flag)


def save_state(out: Path, state: dict[str, Any]) -> None:
    write_text(Path(out) / MARKER, json.dumps(state, indent=2, allow_nan=False))


# ---------------------------------------------------------------------------------------------------------
# The three files


def finish(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """Rank, compare and write the three files of a board's data."""
    data["rows"] = summarize(data)
    data["vs_gray"] = compare_with_gray(data["rows"])
    data["pairwise"] = pairwise(data, data["rows"])
    write_outputs(data, out)
    return data


def write_outputs(data: dict[str, Any], out: Path) -> None:
    """leaderboard.json and, rendered from it, leaderboard.md and leaderboard.html, each written atomically."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("leaderboard.json", json.dumps(data, indent=2, allow_nan=False)),
                       ("leaderboard.md", render_markdown(data)), ("leaderboard.html", render_html(data))):
        write_text(out / name, text)


__all__ = ["BOARD_LOCK", "MARKER", "OUTPUTS", "check_board_folder", "data_fingerprint", "finish", "lock_board_folder",
           "read_board_json", "run_folder_name", "save_state", "spec_hash", "throughput_key", "write_outputs"]
