"""The run folder: the one module that knows its layout, its names and who may write in it.

A run folder, made by ``zoo train``, holds::

    spec.json                        the resolved spec (the experiment; rebuilt from it alone)
    losses.jsonl                     one JSON object per logged step and per validation
    curves.png                       the curves of losses.jsonl (zoo.plot), redrawn at each sample step
    samples/step-000200.png          sample grids (gray | prediction | truth)
    tb/events.out.tfevents.*         TensorBoard event files (zoo.tensorboard; one more per resume)
    checkpoints/step-000200.safetensors + step-000200.state.pt   (format: zoo.checkpoint)
    .zoo.lock                        the writer's lock (fcntl.flock; the PID of the process holding it)

Rules:

* **A new run goes into a new folder, or an empty one, or one zoo made** (its spec.json is a complete zoo spec and
  everything else in it is one of the names above). A folder of the user's files is refused, so ``--out .`` or
  ``--out DATA`` never replaces or appends to anything of theirs (:meth:`RunFolder.check_new`).
* **One writer per run folder.** Training takes an OS file lock on ``.zoo.lock`` (:meth:`RunFolder.lock`); a
  second ``zoo train --resume`` of the same run is refused with one line naming the PID holding it. The kernel
  releases the lock when the process ends, however it ends (a crash or SIGKILL included).
* **Newest good checkpoint.** :meth:`RunFolder.newest_good` takes the newest checkpoint that loads cleanly
  (and that a caller's own check accepts, e.g. weights that fit the nets), falling back to older ones with a
  note for each one passed over.
* Saving a checkpoint prunes all but the newest ``keep`` and removes the temporary files of a save that was
  killed (``.step-*.tmp``): the run is locked, so any such file is a leftover.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from zoo import checkpoint as fmt
from zoo.checkpoint import (Checkpoint, CheckpointError, CheckpointWriteError, NonFiniteWeights,
                            state_path_for)
from zoo.errors import SpecError, ZooError
from zoo.fileio import kind_of
from zoo.text import shown

SPEC = "spec.json"
LOSSES = "losses.jsonl"
SAMPLES = "samples"
CHECKPOINTS = "checkpoints"
LOCK = ".zoo.lock"
CURVES = "curves.png"
TENSORBOARD = "tb"
#: what zoo itself puts in a run folder (with atomic_write's temporary files ``.NAME.*.tmp``)
ZOO_ENTRIES = {SPEC, LOSSES, SAMPLES, CHECKPOINTS, LOCK, CURVES, TENSORBOARD}

_WEIGHTS = re.compile(r"^step-(\d+)\.safetensors$")
_TMP = re.compile(r"^\.step-\d+\.(safetensors|state\.pt)\..+\.tmp$")  # atomic_write's names in checkpoints/
_ZOO_TMP = re.compile(r"^\.(spec\.json|losses\.jsonl|curves\.png)\..+\.tmp$")
_EVENTS = re.compile(r"^events\.out\.tfevents\.")  # the names torch's SummaryWriter gives its files


class RunLocked(ZooError):
    """Another process is writing this run folder."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}.safetensors"


def sample_name(step: int) -> str:
    return f"step-{step:06d}.png"


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint weight files in a checkpoints folder, newest step last."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _WEIGHTS.match(p.name))]
    return [p for _, p in sorted(found)]


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and every temporary file a killed save left."""
    for old in list_checkpoints(folder)[:-keep]:
        for p in (old, state_path_for(old)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
    for p in Path(folder).iterdir():
        if _TMP.match(p.name):
            try:
                p.unlink()
            except OSError:
                pass


def save_checkpoint(folder: str | os.PathLike, step: int, spec_json: str, generator: torch.nn.Module,
                    discriminator: torch.nn.Module | None, state: dict[str, Any] | None,
                    extra_metadata: dict[str, str] | None = None, keep: int = 3,
                    generator_ema: torch.nn.Module | None = None) -> Path:
    """Write ``FOLDER/step-NNNNNN.safetensors`` (+ ``.state.pt`` when ``state`` is given); prune old ones."""
    folder = Path(folder)
    path = folder / checkpoint_name(step)
    try:
        fmt.write_checkpoint(path, step, spec_json, generator, discriminator, state, extra_metadata,
                             generator_ema=generator_ema)
    except NonFiniteWeights as exc:
        kept = list_checkpoints(folder)
        last = f"the last good checkpoint, {kept[-1].name}, is kept" if kept else "no checkpoint was saved before"
        raise NonFiniteWeights(f"{exc}, {last}; lower the learning rate or check the losses and data, then "
                               f"continue with: zoo train --resume {shown(folder.parent)}") from None
    except CheckpointWriteError as exc:
        raise CheckpointWriteError(f"{exc}; earlier checkpoints are intact: free disk space or fix the folder, "
                                   f"then continue with: zoo train --resume {shown(folder.parent)}") from None
    prune(folder, keep)
    return path


def _checkpoints_folder(path: Path) -> Path:
    return path / CHECKPOINTS if (path / CHECKPOINTS).is_dir() else path


def latest_checkpoint(run_dir: str | os.PathLike, with_state: bool = False,
                      accept: Callable[[Checkpoint, dict | None], None] | None = None
                      ) -> tuple[Checkpoint, dict[str, Any] | None, list[str]]:
    """Newest checkpoint of a run (or checkpoints folder) that loads cleanly, falling back to older ones.

    ``accept(checkpoint, state)`` may raise CheckpointError to pass one over too (weights that do not fit).
    Returns (checkpoint, state or None, notes): a note per checkpoint passed over.
    """
    run_dir = Path(run_dir)
    folder = _checkpoints_folder(run_dir)
    candidates = list_checkpoints(folder)
    if not candidates:
        raise CheckpointError(f"no checkpoint found in {shown(run_dir)}: give a run folder made by `zoo train` "
                              f"or a step-*.safetensors file")
    notes: list[str] = []
    for path in reversed(candidates):
        try:
            ckpt = fmt.load_checkpoint(path)
            state = fmt.load_state(state_path_for(path)) if with_state else None
            if accept is not None:
                accept(ckpt, state)
        except CheckpointError as exc:
            notes.append(f"skipped damaged checkpoint {path.name}: {exc}")
            continue
        return ckpt, state, notes
    raise CheckpointError(f"every checkpoint in {shown(folder)} is damaged ({'; '.join(notes)})")


def open_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A checkpoint file, or the newest good checkpoint of a run folder / checkpoints folder."""
    path = Path(path)
    if path.is_dir():
        return latest_checkpoint(path)[0]
    return fmt.load_checkpoint(path)


def read_run_spec(run_dir: str | os.PathLike) -> str:
    """The text of a run's spec.json; one-line errors for a missing, unreadable, non-UTF-8 or non-JSON file."""
    run_dir = Path(run_dir)
    path = run_dir / SPEC
    if not path.is_file():
        raise CheckpointError(f"{shown(run_dir)} is not a zoo run folder (no spec.json)")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise CheckpointError(f"{shown(path)} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{shown(path)} is corrupt: not UTF-8 text (byte {exc.start}); zoo writes it as "
                              f"ASCII JSON: restore it from the run's newest checkpoint or a backup") from None
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{shown(path)} is corrupt: {exc}") from None
    except RecursionError:  # json's decoder recurses per level: [[[[... 100,000 deep
        raise CheckpointError(f"{shown(path)} is corrupt: JSON nested too deeply to be a spec; restore it from the "
                              f"run's newest checkpoint or a backup") from None
    return text


def is_zoo_spec(text: str) -> bool:
    """Whether a spec.json text is a complete spec as zoo writes it (every TrainSpec field present, valid)."""
    from zoo.spec import TrainSpec, spec_from_json

    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or not set(TrainSpec.model_fields) <= set(raw):
            return False
        spec_from_json(text)
    except (ValueError, RecursionError, ZooError):
        return False
    return True


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder and what may be done in it."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def spec(self) -> Path:
        return self.root / SPEC

    @property
    def losses(self) -> Path:
        return self.root / LOSSES

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def curves(self) -> Path:
        return self.root / CURVES

    @property
    def tensorboard(self) -> Path:
        """The folder of the run's TensorBoard event files (``tensorboard --logdir RUN`` or the runs folder)."""
        return self.root / TENSORBOARD

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def sample_path(self, step: int) -> Path:
        return self.samples / sample_name(step)

    def list_checkpoints(self) -> list[Path]:
        return list_checkpoints(self.checkpoints)

    def newest_good(self, with_state: bool = False, accept=None):
        return latest_checkpoint(self.root, with_state=with_state, accept=accept)

    def read_spec(self) -> str:
        return read_run_spec(self.root)

    def save_checkpoint(self, step: int, spec_json: str, generator, discriminator, state, keep: int,
                        generator_ema=None) -> Path:
        return save_checkpoint(self.checkpoints, step, spec_json, generator, discriminator, state, keep=keep,
                               generator_ema=generator_ema)

    def is_zoo_made(self) -> bool:
        """Whether this folder is one zoo made: a complete zoo spec.json, and nothing but zoo's own entries."""
        try:
            text = self.spec.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        if not is_zoo_spec(text):
            return False
        return all(p.name in ZOO_ENTRIES or _ZOO_TMP.match(p.name) for p in self.root.iterdir())

    def check_new(self) -> None:
        """Refuse a folder a new run must not write into (read-only: under DDP every rank checks)."""
        root = self.root
        try:
            st = os.stat(root)
            if not stat.S_ISDIR(st.st_mode):
                raise SpecError(f"--out {shown(root)} is a {kind_of(st)}, not a folder: give a new folder for the run")
            entries = sorted(p.name for p in root.iterdir() if p.name != LOCK)  # the lock: taken before the re-check
        except FileNotFoundError:
            # mkdir(parents=True) makes the missing folders and then 'new/..' is the folder above: check what the
            # path will name once made ('runs/x/../../..' can be the root of the file system)
            lexical = Path(os.path.abspath(root))
            if os.path.lexists(lexical):
                RunFolder(lexical).check_new()
            return
        except OSError as exc:
            raise SpecError(f"--out {shown(root)} cannot be used ({exc.strerror or exc}); choose another "
                            f"folder") from None
        if not entries:
            return
        if not self.is_zoo_made():
            shown_entries = ", ".join(shown(e) for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise SpecError(f"--out {shown(root)} is a folder holding files zoo did not make ({len(entries)} "
                            f"entr{'y' if len(entries) == 1 else 'ies'}: {shown_entries}); nothing in it was changed: give a new or empty folder")
        if self.list_checkpoints():
            raise SpecError(f"run folder {shown(root)} already has checkpoints: continue it with --resume "
                            f"{shown(root)}, or choose another --out/--set run_name=...")

    def create(self, spec_json: str) -> None:
        """Make the folder of a new run (after :meth:`check_new`) and write its spec; a new loss log."""
        from zoo.fileio import write_text

        self.root.mkdir(parents=True, exist_ok=True)
        write_text(self.spec, spec_json)
        if self.losses.is_file():  # a zoo run that stopped before its first checkpoint: its log starts over
            self.losses.unlink()
        if self.tensorboard.is_dir():  # and so do its TensorBoard events (only the files SummaryWriter names)
            for p in self.tensorboard.iterdir():
                if _EVENTS.match(p.name) and p.is_file() and not p.is_symlink():
                    p.unlink()

    def create_locked(self, spec_json: str) -> "RunLock":
        """Make a new run's folder, take its lock, check the folder again under the lock, then :meth:`create` it.

        So of two ``zoo train --out`` of one folder the second is refused (RunLocked, or a zoo folder with
        checkpoints) before it changes anything: no spec.json replaced, no loss log of the first one deleted."""
        made = not os.path.lexists(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        lock_was_there = os.path.lexists(self.root / LOCK)
        lock = self.lock()
        try:
            self.check_new()
            self.create(spec_json)
        except BaseException:
            lock.release()
            if not lock_was_there:
                (self.root / LOCK).unlink(missing_ok=True)
            if made:
                try:
                    self.root.rmdir()
                except OSError:
                    pass
            raise
        return lock

    def lock(self) -> "RunLock":
        """Take this run's writer lock (see the module docstring); RunLocked if another process holds it, or if
        one of zoo's entries is a symbolic link (see :meth:`check_no_links`)."""
        lock = RunLock.take(self.root / LOCK, self.root)
        try:
            self.check_no_links()
        except BaseException:
            lock.release()
            raise
        return lock

    def check_no_links(self) -> None:
        """Refuse a run folder whose own entries (spec.json, losses.jsonl, samples/, checkpoints/, ...) include a
        symbolic link: zoo would append to, write into or prune whatever it names (the user's file or folder)."""
        for name in sorted(ZOO_ENTRIES - {LOCK}):
            if (self.root / name).is_symlink():
                raise RunLocked(f"run folder {shown(self.root)}: {shown(name)} is a symbolic link, and zoo would write "
                                f"through it into what it names: replace it with a plain {'file' if '.' in name else 'folder'}"
                                f" (or remove it); nothing was written")


class RunLock:
    """An exclusive ``fcntl.flock`` on a run's lock file, held until :meth:`release` or the process ends."""

    def __init__(self, fd: int | None, path: Path):
        self.fd, self.path = fd, path

    @classmethod
    def take(cls, path: Path, root: Path, what: str = "run folder") -> "RunLock":
        """Lock ``path`` for the folder ``root`` (``what`` it is, for the messages)."""
        try:
            import fcntl
        except ImportError:  # not a POSIX system: no lock, as before
            return cls(None, path)
        try:  # never through a symbolic link: the PID written below would land in whatever file it names
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise RunLocked(f"cannot take the lock {shown(path)} of {what} {shown(root)} ({exc.strerror or exc}): "
                            f"it must be a plain file zoo made; remove it if no zoo process runs there") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunLocked(f"the lock {shown(path)} of {what} {shown(root)} is not a plain file: remove it if no "
                            f"zoo process runs there")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RunLocked(f"{what} {shown(root)} is in use by another zoo process (PID {holder}): wait for "
                                f"it to finish or stop it, then try again; nothing was written") from None
            raise
        try:  # the PID is for the second process's message only: a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass
        return cls(fd, path)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


__all__ = ["CHECKPOINTS", "CURVES", "LOCK", "LOSSES", "TENSORBOARD", "RunFolder", "RunLock", "RunLocked", "SAMPLES", "SPEC",
           "checkpoint_name", "is_zoo_spec", "latest_checkpoint", "list_checkpoints", "open_checkpoint", "prune",
           "read_run_spec", "sample_name", "save_checkpoint", "state_path_for"]
