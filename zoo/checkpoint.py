"""Checkpoints: safe to load, atomic to write.

A checkpoint is two files in ``RUN/checkpoints/``:

- ``step-000123.safetensors``: the weights of both nets (keys ``generator.*`` and ``discriminator.*``) with
  the resolved spec as JSON and the step in the safetensors metadata. This file alone rebuilds the
  model (`zoo colorize`, `zoo eval`); loading it never unpickles anything.
- ``step-000123.state.pt``: training state used only by ``--resume`` (optimizers, stage, step, RNG
  states), read with ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects.

Writes go to a temporary file that is fsynced and renamed into place, so a crash or a full disk during a
save never leaves a corrupt checkpoint under a final name; the last ``keep`` checkpoints are kept so
that a damaged newest one can fall back to the previous.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError

FORMAT = "zoo-checkpoint/1"
_NAME = re.compile(r"^step-(\d+)\.safetensors$")


@dataclass
class Checkpoint:
    """Weights and metadata of one checkpoint file."""

    path: Path
    spec_json: str
    step: int
    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor]
    metadata: dict[str, str]

    @property
    def state_path(self) -> Path:
        return state_path_for(self.path)


def state_path_for(weights: Path) -> Path:
    return weights.with_name(weights.name.replace(".safetensors", ".state.pt"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the file, then rename it to ``path``; the temp file never lingers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def save_checkpoint(folder: Path, step: int, spec_json: str, generator: torch.nn.Module,
                    discriminator: torch.nn.Module | None, state: dict[str, Any] | None,
                    extra_metadata: dict[str, str] | None = None, keep: int = 3) -> Path:
    """Write ``step-NNNNNN.safetensors`` (+ ``.state.pt`` when ``state`` is given) atomically; prune old ones."""
    from safetensors.torch import save_file

    folder = Path(folder)
    weights_path = folder / f"step-{step:06d}.safetensors"
    tensors = {f"generator.{k}": v.detach().to("cpu").contiguous().clone()
               for k, v in generator.state_dict().items()}
    if discriminator is not None:
        tensors.update({f"discriminator.{k}": v.detach().to("cpu").contiguous().clone()
                        for k, v in discriminator.state_dict().items()})
    metadata = {"format": FORMAT, "spec": spec_json, "step": str(step), **(extra_metadata or {})}
    if state is not None:  # state first: a weights file under its final name implies its state is complete
        atomic_write(state_path_for(weights_path), lambda tmp: torch.save(state, tmp))
    atomic_write(weights_path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    prune(folder, keep)
    return weights_path


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint weight files in a folder, newest step last."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder: Path, keep: int) -> None:
    for old in list_checkpoints(folder)[:-keep]:
        for p in (old, state_path_for(old)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint file (or the newest good one of a run folder); one-line CheckpointError otherwise."""
    path = Path(path)
    if path.is_dir():
        return latest_checkpoint(path)[0]
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not a readable zoo checkpoint ({_short(exc)}); give a run folder or a "
            f"step-*.safetensors file written by `zoo train`") from None
    if metadata.get("format") != FORMAT or "spec" not in metadata:
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a zoo checkpoint (no zoo spec in its "
                              f"metadata); give a file written by `zoo train`")
    gen = {k[len("generator."):]: v for k, v in tensors.items() if k.startswith("generator.")}
    disc = {k[len("discriminator."):]: v for k, v in tensors.items() if k.startswith("discriminator.")}
    return Checkpoint(path, metadata["spec"], int(metadata.get("step", 0)), gen, disc, metadata)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def load_state(path: Path) -> dict[str, Any]:
    """Training state for resume: ``torch.load(weights_only=True)`` so no pickled code can run."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"training state {str(path)!r} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError (zip), ...
        raise CheckpointError(f"training state {str(path)!r} is corrupt or unsafe ({_short(exc)})") from None


def latest_checkpoint(run_dir: Path, with_state: bool = False) -> tuple[Checkpoint, dict[str, Any] | None, list[str]]:
    """Newest checkpoint of a run that loads cleanly, falling back to older ones.

    Returns (checkpoint, state or None, notes): a note per damaged checkpoint that was passed over.
    """
    run_dir = Path(run_dir)
    folder = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint found in {str(run_dir)!r}: give a run folder made by `zoo train` "
                              f"or a step-*.safetensors file")
    notes: list[str] = []
    for path in reversed(candidates):
        try:
            ckpt = load_checkpoint(path)
            state = load_state(ckpt.state_path) if with_state else None
        except CheckpointError as exc:
            notes.append(f"skipped damaged checkpoint {path.name}: {exc}")
            continue
        return ckpt, state, notes
    raise CheckpointError(f"every checkpoint in {str(folder)!r} is damaged ({'; '.join(notes)})")


def read_run_spec(run_dir: Path) -> str:
    path = Path(run_dir) / "spec.json"
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a zoo run folder (no spec.json)")
    text = path.read_text(encoding="utf-8")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{str(path)!r} is corrupt: {exc}") from None
    return text
