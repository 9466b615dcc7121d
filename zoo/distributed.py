"""Data-parallel training across processes (``torchrun --nproc_per_node=N -m zoo train ...``).

torchrun starts N copies of ``zoo train`` and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in each; :func:`setup` reads them and joins the process group (gloo on CPU, nccl on CUDA, one GPU
per process: ``cuda:LOCAL_RANK``). Without those variables nothing here does anything: a single process is a
world of one and every helper is a no-op.

The rules the engine follows (see ``zoo.engine``):

* **Global batch.** ``data.batch_size`` is the batch of one optimisation step summed over all processes: every
  rank draws the same global batch (same images, same augmentation) and keeps its own contiguous block of
  ``batch_size / world_size`` images, so a spec means the same experiment (learning rate, steps per epoch,
  schedule) on any number of processes. ``batch_size`` must be divisible by the world size.
* Gradients are averaged by DistributedDataParallel; BatchNorm statistics are per rank unless
  ``sync_batchnorm`` is on (CUDA only: torch's SyncBatchNorm has no CPU kernel), which computes them over the
  global batch, like a single process would.
* Only rank 0 prints, logs, writes samples and checkpoints. A checkpoint holds every rank's RNG state, so a
  resumed DDP run continues each rank's dropout stream where it stopped.
* Every stop decision (a non-finite loss, Ctrl-C / SIGTERM on any rank) is agreed on by all ranks at the same
  step (:func:`all_reduce_sum` of the losses and a stop flag), so no rank is left waiting in a collective.
"""
from __future__ import annotations

import datetime
import gc
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from zoo.errors import SpecError


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``size`` processes (``local_rank`` on its machine)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SpecError(f"environment variable {name}={raw!r} is not an integer; start zoo with torchrun or unset "
                        f"it") from None


def world_from_env() -> World:
    """The world torchrun describes in the environment (a world of one without torchrun)."""
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return SINGLE
    return World(rank=_env_int("RANK", 0), size=size, local_rank=_env_int("LOCAL_RANK", 0))


def current() -> World:
    """This process's world: the initialised process group's, else a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return SINGLE


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join torchrun's process group (once) and return (world, this rank's device).

    CPU: gloo. CUDA: nccl, with ``cuda:LOCAL_RANK`` as this rank's device (an explicit ``cuda:K`` is refused
    under torchrun: each process owns one GPU).
    """
    world = world_from_env()
    if not world.enabled:
        return SINGLE, device
    if not dist.is_available():
        raise SpecError("this PyTorch build has no torch.distributed: run zoo without torchrun")
    if device.type == "cuda":
        if device.index not in (None, world.local_rank):
            raise SpecError(f"under torchrun each process uses cuda:LOCAL_RANK; drop --device {device} (use cuda or "
                            f"auto)")
        if world.local_rank >= torch.cuda.device_count():
            raise SpecError(f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} GPUs here: start "
                            f"at most {torch.cuda.device_count()} processes per machine")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise SpecError(f"multi-process training supports cpu and cuda devices, not {device.type}")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return current(), device


def shutdown(in_step: bool = True) -> None:
    """Leave the process group, if this process joined one.

    ``in_step``: every rank is ending at the same point (a finished run, or a stop all ranks agreed on), so
    they first wait for each other; a rank that failed alone must not wait for ranks that never come.
    DistributedDataParallel objects still holding the group are freed first: a gloo group torn down at
    interpreter exit, after its peer has gone, can abort the process ("terminate called without an active
    exception").
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()
    if in_step:
        dist.barrier()
    dist.destroy_process_group()


def check_batch(batch_size: int, world: World) -> int:
    """Images per rank of a global batch; the global batch must split evenly."""
    if batch_size % world.size:
        fits = max(world.size, batch_size // world.size * world.size)
        raise SpecError(f"data.batch_size {batch_size} is the global batch and must be divisible by the "
                        f"{world.size} processes: use --batch-size {fits} or another --nproc_per_node")
    return batch_size // world.size


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's contiguous block of a global batch (dim 0)."""
    if not world.enabled:
        return batch
    per = batch.shape[0] // world.size
    return batch[world.rank * per:(world.rank + 1) * per]


def all_reduce_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a small tensor over ranks (returned; on a single process, the tensor itself)."""
    if not world.enabled:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj``, in rank order (pickled through the process group: plain data and tensors only)."""
    if not world.enabled:
        return [obj]
    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not world.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if not world.enabled:
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=0)


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 (first 16 hex digits) of a state dict's names, dtypes, shapes and values, layout-independent."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().to("cpu").contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def seed_rank_rng(seed: int, world: World) -> None:
    """Under DDP, after the (identical) weight init: a dropout stream of its own for each rank."""
    if world.enabled:
        torch.manual_seed((seed * 1_000_003 + 7919 * (world.rank + 1)) % 2**63)


def restore_rng(rng: dict[str, Any], seed: int, world: World, device: torch.device, step: int) -> None:
    """Restore this rank's RNG state from a checkpoint. A run resumed with another number of processes than
    it was saved with: rank 0 takes the saved main stream, other ranks a fresh one derived from the step."""
    ranks = rng.get("ranks") or []
    mine = ranks[world.rank] if len(ranks) == world.size else rng
    torch.set_rng_state(mine["torch"])
    if device.type == "cuda" and mine.get("cuda"):
        torch.cuda.set_rng_state_all(mine["cuda"])
    if mine is rng and world.rank > 0:
        torch.manual_seed((seed * 1_000_003 + 7919 * (world.rank + 1) + 104_729 * step) % 2**63)


def capture_rng(world: World, device: torch.device) -> dict[str, Any]:
    """This process's RNG state for a checkpoint (:func:`restore_rng` reads it); under DDP every rank's stream
    (each rank draws its own dropout masks), gathered to all ranks."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    if world.enabled:
        rng["ranks"] = gather_objects(dict(rng), world)
    return rng


def agree(losses: dict[str, float], stop: str | None, world: World,
          device: torch.device) -> tuple[dict[str, float], str | None]:
    """One all-reduce per logged step: the losses averaged over ranks, and the stop signal (SIGINT/SIGTERM)
    any rank saw, so every rank takes the same NaN / stop decision at the same step."""
    flags = [float(stop == "SIGINT"), float(stop == "SIGTERM")]
    total = all_reduce_sum(torch.tensor([*losses.values(), *flags], dtype=torch.float64, device=device),
                           world).tolist()
    sigint, sigterm = total[-2:]
    if not stop and (sigint or sigterm):
        stop = "SIGTERM" if sigterm else "SIGINT"
    return {k: v / world.size for k, v in zip(losses, total)}, stop


def check_same_weights(nets: tuple[torch.nn.Module, ...], world: World) -> list[tuple[str, ...]]:
    """At the end of training: give every rank rank 0's buffers (BatchNorm statistics), then check that all ranks
    hold the same weights (DDP keeps parameters in step: a mismatch is a bug, not a user error, so it raises
    RuntimeError). Returns each rank's weight digests, one per net."""
    for net in nets:
        broadcast_buffers(net, world)
    digests = gather_objects(tuple(weights_digest(net.state_dict()) for net in nets), world)
    if any(d != digests[0] for d in digests):
        raise RuntimeError(f"DDP ranks ended with different weights: {digests}")
    return digests


def check_parallel(batch_size: int, sync_batchnorm: bool, world: World, device: torch.device) -> None:
    """Refuse, in one line, what this world and device cannot run (a batch that does not split over the ranks,
    SyncBatchNorm off CUDA); nothing under a world of one."""
    if not world.enabled:
        return
    check_batch(batch_size, world)
    if sync_batchnorm and device.type != "cuda":
        raise SpecError("sync_batchnorm needs CUDA (torch's SyncBatchNorm has no CPU kernel); drop "
                        "--set sync_batchnorm=true for CPU processes")

