"""Colorize image files and folders with a trained model: the whole ``zoo colorize`` pipeline as a function.

    from zoo.batch import colorize_paths
    result = colorize_paths(["photos/"], "runs/my-run", "colorized/")
    result.written, result.failed        # what was written, and (input, why) for what was not

Outputs mirror the inputs (:func:`plan`): a file gives ``OUT/<stem>.<format>``, a folder
``OUT/<path relative to it>``; the folders are searched recursively. Nothing given as an input is ever
overwritten, and every output path goes through :func:`zoo.fileio.check_output_file` (a FIFO, a device node or
a folder is never replaced; a zoo checkpoint, and anything inside a zoo run folder, only with ``force``).
A photo that cannot be read or written, or that the model turns into NaN, is reported in one line and the rest
of the batch goes on (``BatchResult.exit_code`` 1). Names from outside are printed escaped
(:func:`zoo.text.shown`).
"""
from __future__ import annotations

import concurrent.futures
import errno
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import DataError, ZooError
from zoo.fileio import OutputRefused, check_output_file, check_output_folder, has_image_mark
from zoo.text import shown

#: --format -> (PIL format, save options, the suffix written)
#: PNG at zlib level 3: about 3x faster to write than Pillow's default 6 for 2 % larger files (640x480 photos)
FORMATS = {"png": ("PNG", {"compress_level": 3}, ".png"), "jpg": ("JPEG", {"quality": 95}, ".jpg")}
#: libjpeg's JPEG_MAX_DIMENSION: the widest or tallest image a JPEG file can hold
JPEG_MAX_SIDE = 65_500
EXIT_OK, EXIT_SOME_FAILED = 0, 1


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass
class BatchResult:
    """What :func:`colorize_paths` did. ``failed``: (input, why) for every photo not written."""

    out: Path
    model: str
    size: int
    device: str
    precision: str
    total: int = 0
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    turned_gray: list[Path] = field(default_factory=list)  # colour photos: only their lightness was used

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(inputs: Sequence[str | os.PathLike], out: Path, fmt: str, say: Callable[[str], None] = print
         ) -> tuple[list[Job], list[tuple[str, str]]]:
    """Input files and folders -> (source, target) pairs, and the folder entries that could not be listed.

    A file gives OUT/<stem>.<fmt>; a folder gives OUT/<path relative to it>. Outputs already under a given
    folder (OUT inside it) are not inputs. Two inputs mapping to one output: the later gets ``-2``, ``-3``...
    Raises DataError for a missing input, a folder without images, or an output that would overwrite an input.
    """
    from zoo.image_file import IMAGE_EXTENSIONS
    from zoo.sources import ALREADY_LISTED, scan_folder
    from zoo.video import is_video

    out = Path(out)
    out_real = out.resolve()
    listed: list[tuple[Path, Path]] = []  # (source, target relative to OUT)
    skipped: list[tuple[str, str]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            root = path.resolve()
            found = [p for p in scan_folder(path, skipped) if root == out_real or not _inside(p.resolve(), out_real)]
            if not found:
                extensions = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
                raise DataError(f"no images ({extensions}) found under {shown(given)}: give image files or folders")
            listed.extend((p, p.relative_to(path).with_suffix(f".{fmt}")) for p in found)
        elif path.exists():
            listed.append((path, Path(path.name).with_suffix(_video_suffix(path) if is_video(path) else f".{fmt}")))
        else:
            raise DataError(f"input {shown(given)} does not exist: give image files or folders")

    sources = {p.resolve() for p, _ in listed}
    jobs: list[Job] = []
    seen_sources: set[Path] = set()
    taken: set[Path] = set()
    for source, relative in listed:
        if source.resolve() in seen_sources:  # the same file given twice (e.g. a folder and a file in it)
            continue
        seen_sources.add(source.resolve())
        target, n = out / relative, 1
        # a renamed output skips names that hold a file zoo did not write (the user's own a-2.png stays untouched
        # and this input is still written, as a-3.png)
        while target in taken or (n > 1 and _not_zoo_image(target)):
            n += 1
            target = out / relative.with_name(f"{relative.stem}-{n}{relative.suffix}")
        if n > 1:
            say(f"zoo: {shown(source)} would also be written as {shown(out / relative)}: writing {shown(target)} "
                f"instead")
        if target.resolve() in sources:
            raise DataError(f"colorizing {shown(source)} would overwrite the input {shown(target)}: choose another "
                            f"--out or --format")
        taken.add(target)
        jobs.append(Job(source, target))
    for name, reason in skipped:  # a second way into a folder already listed: a note, nothing of it is missed
        if reason == ALREADY_LISTED:
            say(f"zoo: note: {shown(name)} is a {reason}; its images are colorized once")
    return jobs, [(name, reason) for name, reason in skipped if reason != ALREADY_LISTED]


def _not_zoo_image(target: Path) -> bool:
    """Whether ``target`` exists as anything but an image zoo wrote (a FIFO is not opened to find out)."""
    try:
        st = os.lstat(target)
    except OSError:
        return False
    return not stat.S_ISREG(st.st_mode) or not has_image_mark(target)


def _video_suffix(path: Path) -> str:
    """A colorized video keeps its container when zoo can write it (mp4, mkv, mov), else becomes .mp4."""
    suffix = path.suffix.lower()
    return suffix if suffix in (".mp4", ".mkv", ".mov") else ".mp4"


def check_out_folder(out: Path, force: bool = False) -> None:
    """Refuse an output folder that is something else (a file, a FIFO...) or lies inside a zoo run folder
    (unless ``force``): :func:`zoo.fileio.check_output_folder`."""
    check_output_folder(out, "--out", "the colorized images", force)


def _listing(names: list[str], limit: int = 3) -> str:
    joined = ", ".join(names[:limit])
    return joined + (f", and {len(names) - limit} more" if len(names) > limit else "")


def _write_error(target: Path, exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return (f"its output name ({len(os.fsencode(target.name))} bytes) or path is too long for the file system; "
                f"rename the input or use a shorter --out")
    return exc.strerror or str(exc)


def colorize_paths(inputs: Sequence[str | os.PathLike], model, out: str | os.PathLike, *, format: str = "png",
                   size: int | None = None, batch_size: int = 8, device: str = "auto", precision: str | None = None,
                   force: bool = False, progress: bool = False, log: Callable[[str], None] | None = None,
                   on_written: Callable[[Path], None] | None = None, saturation: float = 1.0,
                   smoothing: bool = True, weights: str = "auto", compile: str = "auto") -> BatchResult:
    """Colorize image files and folders (recursive) into the folder ``out``; returns what was done.

    ``model``: a run folder, a ``step-*.safetensors`` file or a :class:`zoo.colorize.Colorizer` (then ``size``,
    ``device``, ``precision``, ``saturation``, ``weights`` and ``compile`` are its own; ``weights``: "auto", "ema"
    or "raw", :func:`zoo.loading.load_trained`; ``compile``: "auto" (on with CUDA), "on" or "off"). ``log`` gets every message line (default: stderr);
    ``on_written`` each output path as soon as it is written. Video files given as inputs (:func:`zoo.video.is_video`)
    are colorized frame by frame with temporal ``smoothing`` (:mod:`zoo.video`), after the photos. Raises ZooError (nothing written) for a usage
    error: an input missing, no images, an output over an input, an unusable ``out``, a model that does not load.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from zoo.colorize import Colorizer, NonFiniteOutput, combine, is_colour, save_image
    from zoo.image_file import load_rgb

    if format not in FORMATS:
        raise ZooError(f"unknown format {shown(format)}: use one of {', '.join(FORMATS)}")
    if batch_size < 1:
        raise ZooError(f"--batch-size must be at least 1, got {batch_size}")
    out = Path(out)
    log = log or (lambda message: print(message, file=sys.stderr))
    bar = None

    def say(message: str) -> None:
        if bar is not None and not bar.disable:
            bar.write(message, file=sys.stderr)
        else:
            log(message)

    from zoo.video import is_video

    jobs, skipped = plan(inputs, out, format, say=say)
    videos = [job for job in jobs if is_video(job.source)]
    jobs = [job for job in jobs if not is_video(job.source)]
    check_out_folder(out, force)
    colorizer = model if isinstance(model, Colorizer) else \
        Colorizer.from_checkpoint(model, device=device, size=size, precision=precision, saturation=saturation,
                                  weights=weights, compile=compile)
    result = BatchResult(out, colorizer.name, colorizer.size, str(colorizer.device), colorizer.precision,
                         total=len(jobs) + len(videos) + len(skipped))
    what = _counted(len(jobs), len(videos))
    say(f"zoo: colorizing {what} with {shown(colorizer.name)}"
        f"{' (EMA weights)' if colorizer.weights == 'ema' else ''} at "
        f"{colorizer.size} px on {colorizer.device} ({colorizer.precision}) -> {shown(out)}")
    for name, reason in skipped:
        say(f"zoo: skipped {shown(name)}: {reason}")
        result.failed.append((Path(name), reason))
    pil_format, save_options, suffix = FORMATS[format]
    nan_hint = " try --precision fp32" if colorizer.precision != "fp32" else ""

    def fail(job: Job, reason: str, writing: bool = False) -> None:
        say(f"zoo: could not write {shown(job.target)}: {reason}" if writing else
            f"zoo: skipped {shown(job.source)}: {reason}")
        result.failed.append((job.source, reason))
        bar.update(1)

    def load(job: Job):
        try:
            return job, np.asarray(load_rgb(job.source))
        except DataError as exc:  # UnreadableImage: its reason is short
            return job, getattr(exc, "reason", str(exc))

    bar = tqdm(total=len(jobs), unit="img", dynamic_ncols=True, file=sys.stderr, disable=not progress)
    workers = max(1, min(4, os.cpu_count() or 1))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(jobs), batch_size):
                ready = []
                for job, rgb in pool.map(load, jobs[start:start + batch_size]):
                    if isinstance(rgb, str):
                        fail(job, rgb)
                    elif format == "jpg" and max(rgb.shape[:2]) > JPEG_MAX_SIDE:
                        fail(job, f"it is {rgb.shape[1]}x{rgb.shape[0]} px and a JPEG holds at most "
                                  f"{JPEG_MAX_SIDE:,} px a side: use --format png")
                    else:
                        try:
                            check_output_file(job.target, (suffix,), "a colorized image", force, flag="output",
                                              made_by_zoo=has_image_mark)
                        except OutputRefused as exc:
                            fail(job, str(exc))
                            continue
                        if is_colour(rgb):
                            result.turned_gray.append(job.source)
                        ready.append((job, rgb))
                if not ready:
                    continue
                bad: set[int] = set()
                try:
                    ab = colorizer.predict_ab([rgb for _, rgb in ready])
                except NonFiniteOutput as exc:
                    ab, bad = exc.ab, set(exc.bad)
                def write(i: int) -> OSError | None:  # in the pool: compose and encode release the GIL
                    job, rgb = ready[i]
                    try:
                        save_image(combine(rgb, ab[i], colorizer.saturation), job.target, pil_format, **save_options)
                    except OSError as exc:
                        return exc
                    return None

                good = [i for i in range(len(ready)) if i not in bad]
                errors = dict(zip(good, pool.map(write, good)))
                for i, (job, rgb) in enumerate(ready):  # reported in input order
                    if i in bad:
                        fail(job, f"the model produced NaN/inf colours for it in {colorizer.precision}: not "
                                  f"written (damaged weights?{nan_hint})")
                        continue
                    if errors[i] is not None:
                        fail(job, _write_error(job.target, errors[i]), writing=True)
                        continue
                    result.written.append(job.target)
                    if on_written is not None:
                        on_written(job.target)
                    bar.update(1)
    finally:
        bar.close()
        bar = None
    _colorize_videos(videos, colorizer, result, batch_size, progress, force, smoothing, say, on_written)
    if result.turned_gray:
        n = len(result.turned_gray)
        say(f"zoo: {n} colour {'photo was' if n == 1 else 'photos were'} turned to gray first (only the lightness "
            f"is kept): {_listing([shown(p.name) for p in result.turned_gray])}")
    if result.failed:  # inputs: photos and videos, or files that were neither
        noun = ("input" if videos else "image") + ("" if result.total == 1 else "s")
        say(f"zoo: colorized {len(result.written)} of {result.total} {noun} into {shown(out)}; {len(result.failed)} "
            f"failed: {_listing([shown(p.name) for p, _ in result.failed])}")
    else:
        videos_done = len(videos)  # none failed
        say(f"zoo: colorized {_counted(len(result.written) - videos_done, videos_done)} into {shown(out)}")
    return result


def _counted(images: int, videos: int) -> str:
    """'3 images', '1 video', '2 images and 1 video' (what a summary line says was written)."""
    parts = [f"{images} {'image' if images == 1 else 'images'}"] if images or not videos else []
    if videos:
        parts.append(f"{videos} {'video' if videos == 1 else 'videos'}")
    return " and ".join(parts)


def _colorize_videos(videos: list[Job], colorizer, result: BatchResult, batch_size: int, progress: bool, force: bool,
                     smoothing: bool, say: Callable[[str], None], on_written: Callable[[Path], None] | None) -> None:
    """Each video input through :func:`zoo.video.colorize_video`; an unreadable one is a failed input."""
    if not videos:
        return
    from zoo.video import Smoothing, colorize_video

    for job in videos:
        try:
            info = colorize_video(job.source, colorizer, job.target, smoothing=Smoothing() if smoothing else None,
                                  batch_size=batch_size, progress=progress, force=force)
        except (ZooError, OSError) as exc:
            reason = _write_error(job.target, exc) if isinstance(exc, OSError) else str(exc)
            say(f"zoo: skipped {shown(job.source)}: {reason}")
            result.failed.append((job.source, reason))
            continue
        say(f"zoo: {shown(job.source)}: {info['frames']} frames, {info['cuts'] + 1} scene(s) -> {shown(job.target)}")
        result.written.append(job.target)
        if on_written is not None:
            on_written(job.target)


__all__ = ["BatchResult", "FORMATS", "JPEG_MAX_SIDE", "Job", "check_out_folder", "colorize_paths", "plan"]
