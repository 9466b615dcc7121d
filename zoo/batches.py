"""A step's batch: the global batch's rows fetched on the compute device, augmented (seeded), this rank's share
in Lab, in the runtime's memory layout.

No DataLoader, no workers: the images are already decoded and resized in memory (one uint8 tensor, see
:func:`zoo.data.load_train_data`), and a step's data work (index a uint8 batch, crop/flip, sRGB -> Lab in torch)
costs milliseconds next to the networks, so worker processes would only add copies and compete with the math for
the same cores.
"""
from __future__ import annotations

from typing import Callable

import torch

from zoo import distributed
from zoo.distributed import SINGLE, World
from zoo.runtime import Runtime
from zoo.schedule import Schedule
from zoo.spec import TrainSpec


class BatchFeeder:
    """Global batches of the decoded uint8 training images, on the compute device, with no needless copies.

    CPU: rows are gathered into one reused buffer. CUDA: the whole uint8 set moves to the GPU once when it
    takes under a quarter of the free memory (then a batch is an index_select there, no copy per step);
    otherwise rows are gathered into one pinned buffer and copied without blocking (the previous copy is
    waited for before the buffer is written again).
    """

    def __init__(self, images: torch.Tensor, device: torch.device, log: Callable[[str], None]):
        self.device, self.images, self.staging, self.copied = device, images, None, None
        self.resident = False  # the whole set lives on the device
        self.pin = device.type == "cuda"
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() * images.element_size() < free // 4:
                self.images, self.resident, self.pin = images.to(device), True, False
                log(f"zoo: {images.shape[0]} training images ({images.numel() / 2**20:.0f} MiB uint8) kept on "
                    f"{device}")

    def __call__(self, rows: list[int]) -> torch.Tensor:
        if self.resident:
            return self.images.index_select(0, torch.as_tensor(rows, device=self.images.device))
        if self.copied is not None:
            self.copied.synchronize()  # the last non-blocking copy has left the pinned buffer
        shape = (len(rows), *self.images.shape[1:])
        if self.staging is None or self.staging.shape != shape:
            self.staging = torch.empty(shape, dtype=self.images.dtype, pin_memory=self.pin)
        batch = torch.index_select(self.images, 0, torch.as_tensor(rows), out=self.staging)
        if self.device.type == "cpu":
            return batch
        batch = batch.to(self.device, non_blocking=self.pin)
        if self.pin:
            self.copied = torch.cuda.Event()
            self.copied.record()
        return batch


def augment_seed(spec: TrainSpec, step: int) -> int:
    """The seed of a step's augmentation (crop offsets, flips): the same on every rank and after a resume."""
    return spec.seed * 1_000_003 + step


class Batches:
    """``Batches(spec, images, schedule, runtime)(step)`` -> (L, ab) of this rank for a global step."""

    def __init__(self, spec: TrainSpec, images: torch.Tensor, schedule: Schedule, runtime: Runtime,
                 world: World = SINGLE, log: Callable[[str], None] = lambda msg: None):
        self.spec, self.schedule, self.runtime, self.world = spec, schedule, runtime, world
        self._images, self._log, self._feeder = images, log, None

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        from zoo.data import augment_batch
        from zoo.lab import uint8_to_model_input

        if self._feeder is None:  # made at the first step: a CUDA run moves its images to the GPU here
            self._feeder = BatchFeeder(self._images, self.runtime.device, self._log)
        images = self._feeder(self.schedule.rows(step))  # the global batch, on the device
        gen = torch.Generator().manual_seed(augment_seed(self.spec, step))
        data = self.spec.data
        images = augment_batch(images, data.image_size, gen, flip=data.flip, crop=data.random_crop)
        L, ab = uint8_to_model_input(distributed.shard(images, self.world))  # this rank's share
        fmt = self.runtime.memory_format
        return L.contiguous(memory_format=fmt), ab.contiguous(memory_format=fmt)


__all__ = ["BatchFeeder", "Batches", "augment_seed"]
