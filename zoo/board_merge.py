"""``zoo leaderboard --merge A B ... --out C``: boards of one protocol, made on several machines or at several
times, combined into one board and ranked again from their per-image scores.

Boards combine only when scored the same way on the same images (their protocols agree on every key but what was
trained: :data:`_VOLATILE`); an entry name may be in one board only. The merged board records where each part came
from (``merged_from``) and each part's hardware (``hardware_of``). The output folder follows the board-folder rule
(:mod:`zoo.board_folder`: new, empty or a board zoo made; locked while it is written).
"""
from __future__ import annotations

import contextlib
import copy
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from zoo.board_folder import check_board_folder, finish, lock_board_folder, read_board_json, save_state
from zoo.component import format_validation_error
from zoo.errors import SpecError
from zoo.leaderboard import LeaderboardResult
from zoo.metrics import ALL_METRICS
from zoo.text import one_line, shown


class _Part(BaseModel):
    """What a merge reads of a leaderboard.json, checked before anything is combined (other keys are kept)."""

    model_config = ConfigDict(extra="allow")


def _numbers(values: dict[str, Any], what: str) -> None:
    for k in ALL_METRICS:
        v = values.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ValueError(f"{what} {k} is {type(v).__name__}, not a number")


class _Run(_Part):
    seed: int | None
    means: dict[str, Any]

    @model_validator(mode="after")
    def _scores(self):
        _numbers(self.means, "means")
        return self


class _Entry(_Part):
    name: str
    runs: list[_Run]


class _ImageRow(_Part):
    model: str

    @model_validator(mode="after")
    def _scores(self):
        _numbers(self.model_extra or {}, "score")
        return self


class _Samples(_Part):
    images: list[Any]
    cells: dict[str, Any]


class _Sort(_Part):
    key: str


class _Board(_Part):
    protocol: dict[str, Any]
    sort: _Sort
    entries: list[_Entry]
    images: list[_ImageRow]
    samples: _Samples
    gray_baseline: dict[str, Any] | None = None
    hardware: Any = None

#: protocol keys that may differ between boards of one comparison: what was trained (each entry records its own
#: training data and seeds), not how the test set was scored
_VOLATILE = {"notes", "seeds", "training_data"}


def merge_boards(paths: list[str], out: Path, command: str = "") -> LeaderboardResult:
    """Combine boards (leaderboard.json files) of the same protocol into one, ranked again from their scores."""
    with contextlib.ExitStack() as held:
        return _merge(paths, Path(out), command, held)


def _merge(paths: list[str], out: Path, command: str, held: contextlib.ExitStack) -> LeaderboardResult:
    check_board_folder(out)
    boards = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            p = p / "leaderboard.json"
        try:
            boards.append((p, read_board_json(p)))
        except (OSError, ValueError) as exc:
            raise SpecError(f"--merge {shown(p)}: not a readable leaderboard.json ({one_line(exc)})") from None
        try:
            _Board.model_validate(boards[-1][1])
        except ValidationError as exc:
            raise SpecError(f"--merge {shown(p)}: not a leaderboard.json written by this zoo: "
                            f"{format_validation_error(exc, limit=3)}") from None
    base_path, base = boards[0]
    proto = {k: v for k, v in base["protocol"].items() if k not in _VOLATILE}
    merged = copy.deepcopy(base)  # the first board's sort key ranks the merged board
    for p, board in boards[1:]:
        other = {k: v for k, v in board["protocol"].items() if k not in _VOLATILE}
        if other != proto:
            key = next(k for k in sorted(set(proto) | set(other)) if proto.get(k) != other.get(k))
            raise SpecError(f"--merge: {shown(p)} has another protocol than {shown(base_path)} ({key}: "
                            f"{shown(str(other.get(key))[:80])} vs {shown(str(proto.get(key))[:80])}): boards are "
                            f"combined only when scored the same way on the same images")
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
    save_state(out, lock_board_folder(out, held))
    finish(merged, out)
    return LeaderboardResult(out, merged)


__all__ = ["merge_boards"]
