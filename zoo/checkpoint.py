"""The file format of one checkpoint: safe to load, atomic to write.

A checkpoint is two files (their names and place in a run folder: :mod:`zoo.runfolder`):

- ``NAME.safetensors``: the weights of both nets (keys ``generator.*`` and ``discriminator.*``; with ``ema`` in
  the spec also ``generator_ema.*``, the moving average of the generator's weights, :mod:`zoo.ema`) with the
  resolved spec as JSON and the step in the safetensors metadata. This file alone rebuilds the model
  (`zoo colorize`, `zoo eval`) and the EMA of a resumed run; loading it never unpickles anything.
- ``NAME.state.pt``: training state used only by ``--resume`` (optimizers, stage, step, RNG states), read with
  ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.

Writes go through :func:`zoo.fileio.atomic_write` (a temporary file, fsynced, renamed into place), so a crash or
a full disk during a save never leaves a corrupt checkpoint under a final name.
"""
from __future__ import annotations

import json
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError
from zoo.fileio import atomic_write
from zoo.text import shown

FORMAT = "zoo-checkpoint/1"
#: tensor-name prefix of the generator's EMA weights (zoo.ema.PREFIX)
EMA_PREFIX = "generator_ema"


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, permissions, ...); earlier checkpoints are intact."""


class NonFiniteWeights(CheckpointError):
    """The nets hold inf or nan weights; saving them would push good checkpoints out."""

    exit_code = 3


@dataclass
class Checkpoint:
    """Weights and metadata of one checkpoint file."""

    path: Path
    spec_json: str
    step: int
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    metadata: dict[str, str]
    generator_ema: dict[str, torch.Tensor] | None = None  # the EMA of the generator's weights, if the run kept one

    @property
    def state_path(self) -> Path:
        return state_path_for(self.path)


def state_path_for(weights: Path) -> Path:
    return weights.with_name(weights.name.replace(".safetensors", ".state.pt"))


def write_checkpoint(weights_path: Path, step: int, spec_json: str, generator: torch.nn.Module,
                     discriminator: torch.nn.Module | None, state: dict[str, Any] | None,
                     extra_metadata: dict[str, str] | None = None,
                     generator_ema: torch.nn.Module | None = None) -> Path:
    """Write one checkpoint atomically: ``weights_path`` (+ its ``.state.pt`` when ``state`` is given).
    ``generator_ema``: the EMA copy of the generator (:class:`zoo.ema.GeneratorEMA`'s ``model``), saved as
    ``generator_ema.*``."""
    from safetensors.torch import save_file

    weights_path = Path(weights_path)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, net in (("generator", generator), ("discriminator", discriminator), (EMA_PREFIX, generator_ema)):
        if net is not None:
            tensors.update({f"{prefix}.{k}": v.detach().to("cpu").contiguous().clone()
                            for k, v in net.state_dict().items()})
    metadata = {"format": FORMAT, "spec": spec_json, "step": str(step), **(extra_metadata or {})}
    _check_finite(tensors, step)
    try:
        if state is not None:  # state first: a weights file under its final name implies its state is complete
            atomic_write(state_path_for(weights_path), lambda tmp: torch.save(state, tmp))
        atomic_write(weights_path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    except Exception as exc:  # OSError, or torch's / safetensors' own error for a full disk
        raise CheckpointWriteError(f"cannot write checkpoint {shown(weights_path)} "
                                   f"({_write_failure(exc, weights_path.parent)})") from None
    return weights_path


def _write_failure(exc: Exception, folder: Path) -> str:
    """Why a write failed, in words: torch.save reports a full disk as "unexpected pos 128 vs 0"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < 1 << 20:
        return f"No space left on device: {free} bytes free"
    return _short(exc)


def _check_finite(tensors: dict[str, torch.Tensor], step: int) -> None:
    """Refuse inf/nan weights (a finite loss can still come with an overflowing gradient)."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            what = "nan" if bool(torch.isnan(value).any()) else "inf"
            raise NonFiniteWeights(f"weights {shown(key)} hold {what} at step {step}: not saved")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file; one-line CheckpointError otherwise (a run folder: zoo.runfolder.open_checkpoint).

    Only the safetensors format is parsed (a JSON header and raw tensor bytes): a pickle, a zip made by
    ``torch.save`` or any other file is refused before anything in it is interpreted.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{shown(path)} is a folder, not a checkpoint file (a run folder: "
                              f"zoo.runfolder.open_checkpoint)")
    if not path.exists():
        raise CheckpointError(f"checkpoint {shown(path)} does not exist")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CheckpointError(f"checkpoint {shown(path)} is not a regular file")
    what = _not_safetensors(path)
    if what is not None:
        raise CheckpointError(f"{shown(path)} is not a zoo checkpoint: {what}; give a run folder or a "
                              f"step-*.safetensors file written by `zoo train`")
    from safetensors.torch import load

    try:  # from bytes: safetensors' own file API refuses paths that are not UTF-8
        with open(path, "rb") as fh:
            data = fh.read()
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        if not isinstance(metadata, dict):
            raise ValueError("its __metadata__ is not an object")
        tensors = load(data)
    except Exception as exc:  # SafetensorError, OSError, ...: any failure to parse untrusted bytes
        raise CheckpointError(
            f"{shown(path)} is not a readable zoo checkpoint ({_short(exc)}); give a run folder or a "
            f"step-*.safetensors file written by `zoo train`") from None
    if metadata.get("format") != FORMAT or "spec" not in metadata:
        raise CheckpointError(f"{shown(path)} is a safetensors file but not a zoo checkpoint (no zoo spec in its "
                              f"metadata); give a file written by `zoo train`")
    try:
        step = int(metadata.get("step", 0))
    except ValueError:
        raise CheckpointError(f"{shown(path)} has a corrupt step in its metadata ({shown(metadata['step'][:50])})") from None
    gen, disc, ema = (_part(tensors, prefix) for prefix in ("generator", "discriminator", EMA_PREFIX))
    return Checkpoint(path, metadata["spec"], step, gen, disc, metadata, ema or None)


def _part(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``PREFIX.*``, without the prefix."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a pickle of protocol 2 or later


def _not_safetensors(path: Path) -> str | None:
    """None when the file starts like safetensors (8-byte header length, then a JSON object), else why not."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    header_len = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if len(head) == 9 and 2 <= header_len <= size - 8 and head[8:9] == b"{":
        return None
    # Not safetensors (whose first byte, part of the header length, may be anything): say what it is.
    if size == 0:
        return "empty file (0 bytes)"
    if head.startswith(_ZIP_MAGIC):
        return "it is a zip archive such as a torch.save file (.pt, .state.pt), which zoo never loads as a model"
    if head[0] == _PICKLE_PROTO:
        return "it is a Python pickle, which zoo refuses to load (unpickling can run code)"
    return "not a safetensors file (truncated or another format)"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


_STATE_KEYS = ("step", "gen_optim", "disc_optim", "rng")


def load_state(path: Path) -> dict[str, Any]:
    """Training state for resume: ``torch.load(weights_only=True)`` so no pickled code can run.

    ``torch.save`` writes zip archives; anything else (a raw pickle) is refused before torch sees it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state {shown(path)} is missing")
    try:
        with open(path, "rb") as fh:
            is_zip = fh.read(4) == _ZIP_MAGIC
    except OSError as exc:
        raise CheckpointError(f"training state {shown(path)} cannot be read ({exc.strerror or exc})") from None
    if not is_zip:
        raise CheckpointError(f"training state {shown(path)} is not a file written by torch.save (refused "
                              f"unread: zoo does not unpickle other files)")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: the refusal below says enough
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError (zip), ...
        reason = "it holds objects other than tensors and plain data" if isinstance(
            exc, pickle.UnpicklingError) else _short(exc)
        raise CheckpointError(f"training state {shown(path)} is corrupt or unsafe ({reason}); it was refused "
                              f"and nothing in it was run") from None
    missing = [k for k in _STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"training state {shown(path)} is not a zoo training state (missing "
                              f"{', '.join(missing)})")
    return state
