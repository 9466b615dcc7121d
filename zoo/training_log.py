"""The record a run keeps while it trains (rank 0): rows appended to ``losses.jsonl`` and TensorBoard events.

``TrainingLogWriter(folder, log, active)`` is opened by the trainer at the start of ``fit()`` and closed at its
end. Each :meth:`TrainingLogWriter.write` appends one JSON row to the run folder's ``losses.jsonl`` (the file
:func:`zoo.plot.read_log` reads) and, with ``spec.tensorboard``, gives TensorBoard the same numbers plus any
extra scalars (the learning rates; :mod:`zoo.tensorboard` names the tags). Logging is a view of the run: a row that
cannot be appended (disk full) is one warning line, once, and training goes on; checkpoints are what stop a run.
Ranks other than 0 hold an inactive log that writes nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from zoo.runfolder import RunFolder
from zoo.text import shown


class TrainingLogWriter:
    """``losses.jsonl`` and ``tb/`` of one run folder; ``active=False`` (ranks other than 0) writes nothing."""

    def __init__(self, folder: RunFolder, log: Callable[[str], None], active: bool = True):
        self.folder, self.log, self.active = folder, log, active
        self._tb = None  # zoo.tensorboard.TensorBoardLog while open
        self._append_failed = False

    def open(self, tensorboard: bool, step: int, spec_json: str) -> None:
        """Start the TensorBoard events (when ``tensorboard``) at ``step``; a new run (step 0) records its spec."""
        if not self.active or not tensorboard or self._tb is not None:
            return
        from zoo.tensorboard import TensorBoardLog

        self._tb = TensorBoardLog(self.folder.tensorboard, step, self.log)
        if self._tb.active and step == 0:
            self._tb.text("spec", spec_json)

    def write(self, row: dict[str, Any], tensorboard_only: dict[str, float] | None = None) -> None:
        """Append ``row`` (it has a ``step``) to losses.jsonl; TensorBoard gets it and ``tensorboard_only``."""
        if not self.active:
            return
        if self._tb is not None:
            self._tb.row(row["step"], {**row, **(tensorboard_only or {})})
        try:
            with open(self.folder.losses, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError as exc:
            if not self._append_failed:
                self.log(f"zoo: warning: cannot append to {shown(self.folder.losses)} ({exc.strerror or exc}) at "
                         f"step {row['step']}; training goes on (checkpoints are still saved)")
            self._append_failed = True

    def image(self, tag: str, step: int, path: Path) -> None:
        """A written image file (the sample grid) as a TensorBoard image of ``step``."""
        if self._tb is not None:
            self._tb.image(tag, step, path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


__all__ = ["TrainingLogWriter"]
