"""The training images as rows, and the one loader that turns a step into this rank's uint8 batch.

One code path whatever the size of the data:

* :class:`TrainImages` is the training set: ``names`` in row order and one *store* that gives row ``i`` as uint8
  (3, S, S): :class:`MemoryStore` (a small set decoded once at start, one tensor), :class:`CacheStore` (memory-mapped
  shards of ``zoo data cache``, see :mod:`zoo.datacache`) or :class:`DecodeStore` (decoded from the file when read).
* :class:`RowsDataset` is the torch map-style dataset over a store. A row that turns out unreadable mid-epoch is
  replaced by the next readable row (i + 1, i + 2, ... wrapping), so a batch stays full and the same whatever the
  workers; the replacement is reported back with the batch and logged by the main process.
* :class:`StepRows` is the batch sampler: for each global step from ``start`` on, this rank's contiguous block of
  the global batch that :class:`zoo.schedule.Schedule` draws (the same seeded permutation on every rank:
  DistributedSampler semantics, no rank reads another rank's images).
* :func:`make_loader` wraps them in a ``torch.utils.data.DataLoader``: ``workers`` decoding processes with
  prefetching and persistent workers (0: in the main process, the choice for in-memory sets), pinned memory on CUDA.

Decoding, the cache and the in-memory copy give the same pixels (PIL bicubic resize to the load size), so the
store and the number of workers never change a run: a run is a function of its spec.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import numpy as np
import torch

from zoo.errors import DataError


class DataWorkerDied(DataError):
    """A data loader worker process ended unexpectedly (killed, out of memory)."""


# ----------------------------------------------------------------------------------------------------
# Stores: row i -> uint8 (3, S, S)


class MemoryStore:
    """Rows of one uint8 tensor (N, 3, S, S), decoded once."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def get(self, i: int) -> torch.Tensor:
        return self.images[i]

    def get_many(self, rows: Sequence[int]) -> torch.Tensor:
        return torch.index_select(self.images, 0, torch.as_tensor(rows, dtype=torch.long))


class DecodeStore:
    """Rows decoded from their items when read (:func:`zoo.data.decode_one`)."""

    def __init__(self, items: Sequence[Any], size: int):
        self.items, self.size = items, size

    def get(self, i: int) -> torch.Tensor:
        from zoo.data import decode_one

        array, _ = decode_one(self.items[i], self.size)  # raises UnreadableImage
        return torch.from_numpy(array)


class CacheStore:
    """Rows of a complete decoded cache (:class:`zoo.datacache.DecodedCache`): ``rows[i]`` is row i's cache row."""

    def __init__(self, cache: Any, rows: Sequence[int]):
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)

    def get(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.cache.row(int(self.rows[i])))  # raises UnreadableImage for a broken file

    def get_many(self, rows: Sequence[int]) -> torch.Tensor:
        return torch.stack([self.get(i) for i in rows])


@dataclass
class TrainImages:
    """The training set: ``names`` in row order, read through ``store``; ``images`` when held in memory.

    ``skipped`` / ``upscaled``: what was found while decoding at start (in-memory and cached sets); a streamed set
    finds unreadable files while training and logs them then.
    """

    names: list[str]
    store: Any
    size: int
    how: str  # "in memory", "cached", "streamed"
    skipped: list[tuple[str, str]] = field(default_factory=list)
    upscaled: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def images(self) -> torch.Tensor | None:
        return self.store.images if isinstance(self.store, MemoryStore) else None

    @classmethod
    def in_memory(cls, images: torch.Tensor, names: Sequence[str] | None = None) -> "TrainImages":
        names = list(names) if names is not None else [str(i) for i in range(images.shape[0])]
        return cls(names, MemoryStore(images), int(images.shape[-1]), "in memory")


class RowsDataset(torch.utils.data.Dataset):
    """Map-style dataset of a :class:`TrainImages`: index -> (uint8 (3, S, S), note or None).

    ``note`` = (name, reason, replacement name) when the row was unreadable and replaced by the next readable one.
    """

    def __init__(self, images: TrainImages):
        self.names, self.store, self.size = images.names, images.store, images.size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        from zoo.image_file import UnreadableImage

        n = len(self.names)
        try:
            return self.store.get(i), None
        except UnreadableImage as exc:
            first = exc
        for k in range(1, n):
            j = (i + k) % n
            try:
                return self.store.get(j), (self.names[i], first.reason, self.names[j])
            except UnreadableImage:
                continue
        # Raised by the main process (an exception raised in a worker would arrive wrapped in its traceback).
        return torch.zeros((3, self.size, self.size), dtype=torch.uint8), (self.names[i], first.reason, None)

    def __getitems__(self, rows: list[int]):
        """A whole batch at once: one index_select for stores that have it (no per-row work)."""
        get_many = getattr(self.store, "get_many", None)
        if get_many is not None and isinstance(self.store, MemoryStore):
            return get_many(rows), []
        out = [self[i] for i in rows]
        return torch.stack([x for x, _ in out]), [note for _, note in out if note is not None]


def _collate(batch):
    return batch  # RowsDataset.__getitems__ already stacked it


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C goes to the whole process group: the main process stops cleanly (checkpoint) and ends its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------------------------------
# Sampling and the loader


class StepRows:
    """Batch sampler: this rank's rows of the global batch of each step ``start``, ``start + 1``, ...

    ``rows_of(step)`` gives the global batch (see :meth:`zoo.schedule.Schedule.rows`); rank ``r`` of ``w`` takes
    the contiguous block ``[r * b / w, (r + 1) * b / w)``. Set ``start`` before iterating (a resume, a jump).
    """

    def __init__(self, rows_of: Callable[[int], list[int]], batch_size: int, rank: int = 0, world_size: int = 1,
                 start: int = 0):
        self.rows_of, self.start = rows_of, start
        self.per = batch_size // world_size
        self.offset = rank * self.per

    def __iter__(self):
        for step in count(self.start):
            yield self.rows_of(step)[self.offset:self.offset + self.per]


def resolve_workers(workers: int | str, images: TrainImages) -> int:
    """``data.workers``: an int, or "auto": 0 for a set in memory (a batch is one index_select), else
    min(8, cpu_count - 1), at least 1."""
    if workers != "auto":
        return int(workers)
    if isinstance(images.store, MemoryStore):
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def make_loader(images: TrainImages, sampler: StepRows, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs = dict(persistent_workers=True, prefetch_factor=4, worker_init_fn=_worker_init)
    # A generator of its own: the loader's worker seeds must not draw from the global torch RNG (dropout's stream,
    # checkpointed), or a resumed run would not be bit-identical.
    return torch.utils.data.DataLoader(RowsDataset(images), batch_sampler=sampler, num_workers=workers,
                                       collate_fn=_collate, pin_memory=pin, generator=torch.Generator().manual_seed(0),
                                       **kwargs)


def is_worker_death(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, RuntimeError) and "DataLoader worker" in text and (
        "exited unexpectedly" in text or "killed" in text)


__all__ = ["CacheStore", "DataWorkerDied", "DecodeStore", "MemoryStore", "RowsDataset", "StepRows", "TrainImages",
           "is_worker_death", "make_loader", "resolve_workers"]
