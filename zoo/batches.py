"""A step's batch: this rank's rows of the global batch, read by :mod:`zoo.loader` (in memory, from the decoded
cache or decoded from the files, in worker processes), moved to the compute device, augmented there (seeded by
the step: crop offsets and flips drawn for the whole global batch, this rank's share used) and converted to Lab,
in the runtime's memory layout.

The rows of step ``s`` depend only on (spec, number of training images, s) (:class:`zoo.schedule.Schedule`), the
pixels only on the files, so a resumed run, any number of workers and any store give the same batches.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable

import torch

from zoo.distributed import SINGLE, World
from zoo.errors import DataError
from zoo.runtime import Runtime
from zoo.schedule import Schedule
from zoo.spec import TrainSpec


def augment_seed(spec: TrainSpec, step: int) -> int:
    """The seed of a step's augmentation (crop offsets, flips): the same on every rank and after a resume."""
    return spec.seed * 1_000_003 + step


class Batches:
    """``Batches(spec, train, schedule, runtime, world, log)(step)`` -> (L, ab) of this rank for a global step.

    ``train``: a :class:`zoo.loader.TrainImages` (or a uint8 (N, 3, S, S) tensor, held in memory). The loader
    starts at the first step asked for and reads ahead; asking for another step than the next restarts it there.
    """

    def __init__(self, spec: TrainSpec, train, schedule: Schedule, runtime: Runtime,
                 world: World = SINGLE, log: Callable[[str], None] = lambda msg: None):
        from zoo.loader import TrainImages

        if isinstance(train, torch.Tensor):
            train = TrainImages.in_memory(train)
        self.spec, self.schedule, self.runtime, self.world = spec, schedule, runtime, world
        self.train, self._log = train, log
        self._loader = self._iter = self._sampler = None
        self._next = -1
        self.replaced: dict[str, str] = {}  # unreadable training file -> reason, found while training

    def _start(self, step: int) -> None:
        from zoo.loader import StepRows, make_loader, resolve_workers

        if self._loader is None:
            workers = resolve_workers(getattr(self.spec.data, "workers", "auto"), self.train)
            self._sampler = StepRows(self.schedule.rows, self.spec.data.batch_size, self.world.rank, self.world.size)
            self._loader = make_loader(self.train, self._sampler, workers, pin=self.runtime.device.type == "cuda")
            if workers:
                self._log(f"zoo: {len(self.train):,} training images {self.train.how}, decoded by {workers} worker "
                          f"process{'es' * (workers > 1)}")
        self._sampler.start = step
        self._iter = iter(self._loader)
        self._next = step
        if self._loader.num_workers and threading.current_thread() is threading.main_thread():
            # torch's SIGCHLD handler raises wherever the main thread is (mid-optimizer step); without it a dead
            # worker is found at the next batch fetch, between steps, where the run can stop cleanly.
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def rows(self, step: int) -> torch.Tensor:
        """This rank's uint8 rows of a step's global batch, on the CPU (pinned on CUDA)."""
        from zoo.loader import DataWorkerDied, is_worker_death

        try:
            if self._iter is None or step != self._next:
                self._start(step)
            images, notes = next(self._iter)
        except RuntimeError as exc:
            self._iter = self._loader = None  # a later call starts new workers
            if is_worker_death(exc):
                raise DataWorkerDied(f"a data loader worker process died at step {step + 1} "
                                     f"({str(exc).splitlines()[0]})") from None
            raise
        self._next = step + 1
        for name, reason, replacement in notes:
            if replacement is None:
                raise DataError(f"none of the {len(self.train):,} training images can be read (the first tried: "
                                f"{name}: {reason}); fix or replace them")
            if name not in self.replaced:
                self.replaced[name] = reason
                self._log(f"zoo: warning: skipped unreadable image {name} ({reason}) at step {step + 1}, replaced "
                          f"by {replacement}; {len(self.replaced)} unreadable so far")
        return images

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data import augment_batch
        from zoo.lab import uint8_to_model_input

        images = self.rows(step)
        device = self.runtime.device
        if images.device != device:
            images = images.to(device, non_blocking=images.is_pinned())
        gen = torch.Generator().manual_seed(augment_seed(self.spec, step))
        data = self.spec.data
        part = (self.world.rank * images.shape[0], data.batch_size)
        images = augment_batch(images, data.image_size, gen, flip=data.flip, crop=data.random_crop, part=part)
        L, ab = uint8_to_model_input(images)
        fmt = self.runtime.memory_format
        return L.contiguous(memory_format=fmt), ab.contiguous(memory_format=fmt)

    def close(self) -> None:
        """End the worker processes now (they hold copies of the parent's open files, such as the run's lock)."""
        if self._iter is not None and hasattr(self._iter, "_shutdown_workers"):
            self._iter._shutdown_workers()
        self._iter = self._loader = None


__all__ = ["Batches", "augment_seed"]
