"""TensorBoard event files of a run: ``RUN/tb/events.out.tfevents.*``, written by ``torch.utils.tensorboard``.

    tensorboard --logdir runs/          # every run; or --logdir runs/NAME for one

What goes in (the engine's rows of ``losses.jsonl``, plus what only TensorBoard shows), by step:

* ``loss/<name>``: every logged loss (``d_real``, ``d_fake``, ``g_gan``, ``g_pixel``, ...), each log_every steps;
* ``speed/img_per_s``: training images per second over the logging window; ``progress/epoch``;
* ``lr/generator``, ``lr/discriminator``: the learning rate of the optimiser that steps each net in that stage;
* ``val/l1`` (ab L1 over ``data.val_images`` validation photos), ``val/deltae00``, ``val/psnr``, ``val/ssim``
  (on the sample grid's photos), each sample step, from the EMA weights when the run keeps an EMA;
* ``samples``: the sample grid (gray | prediction | truth) as an image, each sample step;
* ``spec``: the resolved spec as text, once per new run.

Only rank 0 writes (the engine makes no log elsewhere). A resumed run writes a new events file into the same
folder, starting with a purge marker at its first step, so TensorBoard drops what an interrupted run had logged
after its last checkpoint and the curves continue without a fork. Writing is a view of the run, never worth
stopping it for: a failure (disk full, a file where ``tb/`` goes) is one warning line and the events stop for
the rest of the run; losses.jsonl and the checkpoints go on.
"""
from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, Callable

from zoo.text import shown

#: keys of a losses.jsonl row that are bookkeeping, not scalars
NOT_SCALARS = {"step", "time", "val_images"}


def scalar_tags(row: dict[str, Any]) -> dict[str, float]:
    """A losses.jsonl row -> {TensorBoard tag: value} for its finite numbers (module docstring for the tags)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            continue
        if key.startswith("val_"):
            tag = f"val/{key[4:]}"
        elif key == "img_per_s":
            tag = "speed/img_per_s"
        elif key == "epoch":
            tag = "progress/epoch"
        elif key.startswith("lr_"):
            tag = f"lr/{key[3:]}"
        else:
            tag = f"loss/{key}"
        out[tag] = float(value)
    return out


class TensorBoardLog:
    """The event writer of one run folder's ``tb/``: ``TensorBoardLog(folder, first_step, warn)``.

    ``first_step``: the step the run (re)starts from (0 for a new run); ``warn``: where the one warning goes.
    Every method is a no-op after a failure.
    """

    def __init__(self, folder: Path, first_step: int, warn: Callable[[str], None]):
        self.folder, self._warn, self._writer, self._dir_fd = Path(folder), warn, None, None
        try:
            from torch.utils.tensorboard import SummaryWriter

            _quiet_writer_threads()
            # purge_step: TensorBoard discards events of earlier files from this step on (a resumed run's
            # steps after its checkpoint were logged once already by the run that was interrupted)
            self._writer = SummaryWriter(log_dir=self._log_dir(), purge_step=first_step + 1 if first_step else None,
                                         flush_secs=30)
        except Exception as exc:  # OSError, or protobuf / tensorboard's own error
            self._failed(exc, "open")

    def _log_dir(self) -> str:
        """The folder as TensorBoard can take it: its writer encodes paths as strict UTF-8, so a run folder whose
        name is not UTF-8 is given as this process's open handle of it (``/proc/self/fd/N``, Linux)."""
        name = str(self.folder)
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            if not os.path.isdir("/proc/self/fd"):
                raise
        self.folder.mkdir(parents=True, exist_ok=True)
        self._dir_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}"

    @property
    def active(self) -> bool:
        return self._writer is not None

    def row(self, step: int, row: dict[str, Any]) -> None:
        """The numbers of a losses.jsonl row (or any {key: number}) as scalars at ``step``."""
        if self._writer is None:
            return
        try:
            for tag, value in scalar_tags(row).items():
                self._writer.add_scalar(tag, value, step)
        except Exception as exc:
            self._failed(exc, f"write step {step} to")

    def image(self, tag: str, step: int, png: Path) -> None:
        """A PNG the run wrote (the sample grid) as an image at ``step``."""
        if self._writer is None:
            return
        try:
            import numpy as np
            from PIL import Image

            with Image.open(png) as im:
                pixels = np.asarray(im.convert("RGB"))
            self._writer.add_image(tag, pixels, step, dataformats="HWC")
            self._writer.flush()  # one flush per sample step: TensorBoard shows the run up to here
        except Exception as exc:
            self._failed(exc, f"write the sample grid of step {step} to")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self._writer is None:
            return
        try:
            self._writer.add_text(tag, f"```\n{text}\n```", step)  # markdown: keep the JSON's layout
        except Exception as exc:
            self._failed(exc, "write to")

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:
                self._writer = writer  # so that _failed reports it
                self._failed(exc, "finish")
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _failed(self, exc: BaseException, doing: str) -> None:
        reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        self._warn(f"zoo: warning: cannot {doing} the TensorBoard events in {shown(self.folder)} ({reason}); "
                   f"training goes on without them (losses.jsonl and checkpoints are still written)")
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass


_hook_lock = threading.Lock()
_hook_installed = False


def _quiet_writer_threads() -> None:
    """TensorBoard writes from a background thread, and a failed write (a full disk) ends that thread with a
    traceback on stderr before the writer raises the same error on its next call, where :class:`TensorBoardLog`
    turns it into one warning. Silence only those threads' tracebacks; every other thread's go to the previous
    hook as before."""
    global _hook_installed
    with _hook_lock:
        if _hook_installed:
            return
        from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

        previous = threading.excepthook

        def hook(args):
            if isinstance(args.thread, _AsyncWriterThread):
                return
            previous(args)

        threading.excepthook = hook
        _hook_installed = True


__all__ = ["TensorBoardLog", "scalar_tags"]
