"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, stop (a second Ctrl-C stops now).

``with StopSignals(log) as stop: ... if stop.name: ...``: the handlers are installed for the block and the
previous ones restored after it. Outside the main thread (where Python cannot install handlers) it does nothing.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable


class StopSignals:
    """Record the first SIGINT / SIGTERM in ``name`` instead of dying; a second one raises KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log: Callable[[str], None], what_now: Callable[[], str] = lambda: "stopping"):
        self.log, self.what_now = log, what_now
        self.name: str | None = None
        self._old: dict = {}

    def _handler(self, signum, _frame) -> None:
        name = signal.Signals(signum).name
        if self.name:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.name = name
        self.log(f"\nzoo: {name} received: {self.what_now()}")

    def __enter__(self) -> "StopSignals":
        self.name = None
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


__all__ = ["StopSignals"]
