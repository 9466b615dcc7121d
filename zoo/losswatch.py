"""A step's losses kept on the device between the points where the trainer reads them (no host sync per step).

``gan_step`` returns its losses as 0-dim tensors. Reading one (``.item()``, ``.tolist()``) waits for the
device to finish the step; on a GPU that stall, once per step, is what keeps the next step's kernels from being
queued while this one runs. :class:`LossWatch` keeps, on the device, the last step's losses and, per loss, the
first step at which it was not finite and its value; :meth:`LossWatch.read` gets all of it to the host in one
copy. The trainer reads at each log, sample and checkpoint step, at a stop signal and at the end, so a NaN is
still reported at the step where it happened and no checkpoint of a non-finite step is ever written.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NonFiniteLoss:
    """The first non-finite loss since the last read: its name, the step (1-based) and the value."""

    name: str
    step: int
    value: float


class LossWatch:
    """Holds the latest losses on the device and watches every step's losses for NaN/inf without a host sync."""

    def __init__(self) -> None:
        self._names: tuple[str, ...] = ()
        self._last: torch.Tensor | None = None
        self._bad_step: torch.Tensor | None = None
        self._bad_value: torch.Tensor | None = None
        self._pending: NonFiniteLoss | None = None  # found at a change of loss names (a stage change)

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Record the losses of ``step`` (1-based); device ops only."""
        names = tuple(losses)
        if names != self._names:
            if self._last is not None and self._pending is None:  # new stage: settle the old window first
                self._pending = self.read()[1]
            self._names = names
            self._bad_step = None
        stacked = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
        bad = ~torch.isfinite(stacked)
        if self._bad_step is None:
            self._bad_step = torch.full_like(stacked, -1.0)  # float32: steps exact to 2**24; MPS has no float64
            self._bad_value = torch.zeros_like(stacked)
        first = bad & (self._bad_step < 0)
        self._bad_step = torch.where(first, float(step), self._bad_step)
        self._bad_value = torch.where(first, stacked, self._bad_value)
        self._last = stacked

    def read(self) -> tuple[dict[str, float], NonFiniteLoss | None]:
        """The last step's losses as floats and the first non-finite loss since the last read (or None); one
        device-to-host copy. Starts a new watch window."""
        if self._last is None:
            return {}, None
        host = torch.cat([self._last, self._bad_step, self._bad_value]).tolist()
        n = len(self._names)
        last, steps, values = host[:n], host[n:2 * n], host[2 * n:]
        found = self._pending
        self._pending = None
        if found is None:
            seen = [(int(s), i) for i, s in enumerate(steps) if s >= 0]
            if seen:
                step, i = min(seen)
                found = NonFiniteLoss(self._names[i], step, values[i])
        self._bad_step = torch.full_like(self._bad_step, -1.0)
        return dict(zip(self._names, last)), found


__all__ = ["LossWatch", "NonFiniteLoss"]
