"""zoo colorize: colorize photos (files or folders) with a trained model; each output keeps its photo's size."""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import DataError, ZooError

FORMATS = {"png": ("PNG", {}), "jpg": ("JPEG", {"quality": 95})}

EXIT_OK, EXIT_SOME_FAILED = 0, 1


def add_parser(sub) -> None:
    p = sub.add_parser("colorize", help="colorize photos with a trained model",
                       description="Colorize image files and folders (recursive) with a trained model. The model "
                                   "runs at its training resolution; its colours are upsampled and combined with each "
                                   "photo's own full-resolution lightness, so outputs keep the input's size and "
                                   "sharpness. Exit code: 0 all done, 1 some images failed, 2 usage error.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--model", required=True, metavar="RUN_DIR_OR_CHECKPOINT",
                   help="a run folder (its newest good checkpoint) or a step-*.safetensors file")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder; names mirror the inputs (relative paths kept for folders)")
    p.add_argument("--format", choices=list(FORMATS), default="png", help="output format (default: png)")
    p.add_argument("--size", type=int, metavar="PX", help="resolution the model runs at (default: its training size)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="photos per forward pass (default: 8)")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default: CUDA if available), cpu, cuda:1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(inputs: list[str], out: Path, fmt: str, say=print) -> tuple[list[Job], list[tuple[str, str]]]:
    """Input files and folders -> (source, target) pairs, and the folder entries that could not be listed.

    A file gives OUT/<stem>.<fmt>; a folder gives OUT/<path relative to it>. Outputs already under a given
    folder (OUT inside it) are not inputs. Two inputs mapping to one output: the later gets ``-2``, ``-3``...
    Raises DataError for a missing input, a folder without images, or an output that would overwrite an input.
    """
    from zoo.data import IMAGE_EXTENSIONS, scan_folder

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
                raise DataError(f"no images ({extensions}) found under {given}: give image files or folders")
            listed.extend((p, p.relative_to(path).with_suffix(f".{fmt}")) for p in found)
        elif path.exists():
            listed.append((path, Path(path.name).with_suffix(f".{fmt}")))
        else:
            raise DataError(f"input {given!r} does not exist: give image files or folders")

    sources = {p.resolve() for p, _ in listed}
    jobs: list[Job] = []
    seen_sources: set[Path] = set()
    taken: set[Path] = set()
    for source, relative in listed:
        if source.resolve() in seen_sources:  # the same file given twice (e.g. a folder and a file in it)
            continue
        seen_sources.add(source.resolve())
        target, n = out / relative, 1
        while target in taken:
            n += 1
            target = out / relative.with_name(f"{relative.stem}-{n}{relative.suffix}")
        if n > 1:
            say(f"zoo: {source} would also be written as {out / relative}: writing {target} instead")
        if target.resolve() in sources:
            raise DataError(f"colorizing {source} would overwrite the input {target}: choose another --out or "
                            f"--format")
        taken.add(target)
        jobs.append(Job(source, target))
    return jobs, skipped


def _listing(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", and {len(names) - limit} more" if len(names) > limit else "")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm.auto import tqdm

    from zoo.colorize import Colorizer, is_colour, save_image
    from zoo.data import load_rgb

    if args.batch_size < 1:
        raise ZooError(f"--batch-size must be at least 1, got {args.batch_size}")
    out = Path(args.out)
    bar = None

    def say(message: str) -> None:
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    jobs, skipped = plan(args.inputs, out, args.format, say=say)
    colorizer = Colorizer.from_checkpoint(args.model, device=args.device, size=args.size)
    noun = "image" if len(jobs) == 1 else "images"
    say(f"zoo: colorizing {len(jobs)} {noun} with {colorizer.name} at {colorizer.size} px on {colorizer.device} "
        f"-> {out}")
    failed = [f"{name} ({reason})" for name, reason in skipped]
    for name, reason in skipped:
        say(f"zoo: skipped {name}: {reason}")
    coloured: list[str] = []
    done = 0
    pil_format, save_options = FORMATS[args.format]

    def load(job: Job):
        try:
            return job, load_rgb(job.source)
        except DataError as exc:  # UnreadableImage: its reason is short
            return job, getattr(exc, "reason", str(exc))

    bar = tqdm(total=len(jobs), unit="img", dynamic_ncols=True, file=sys.stderr, disable=args.no_progress)
    workers = max(1, min(4, os.cpu_count() or 1))
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(jobs), args.batch_size):
                ready = []
                for job, loaded in pool.map(load, jobs[start:start + args.batch_size]):
                    if isinstance(loaded, str):
                        say(f"zoo: skipped {job.source}: {loaded}")
                        failed.append(f"{job.source.name} ({loaded})")
                        bar.update(1)
                        continue
                    rgb = np.asarray(loaded)
                    if is_colour(rgb):
                        coloured.append(job.source.name)
                    ready.append((job, rgb))
                if not ready:
                    continue
                images = colorizer.colorize_batch([rgb for _, rgb in ready], batch_size=len(ready))
                for (job, _), image in zip(ready, images):
                    try:
                        save_image(image, job.target, pil_format, **save_options)
                    except OSError as exc:
                        say(f"zoo: could not write {job.target}: {exc.strerror or exc}")
                        failed.append(f"{job.source.name} (could not write {job.target})")
                    else:
                        done += 1
                        print(job.target, flush=True)
                    bar.update(1)
    finally:
        bar.close()
        bar = None
    if coloured:
        say(f"zoo: {len(coloured)} colour {'photo was' if len(coloured) == 1 else 'photos were'} turned to gray "
            f"first (only the lightness is kept): {_listing(coloured)}")
    total = len(jobs) + len(skipped)
    if failed:
        say(f"zoo: colorized {done} of {total} images into {out}; {len(failed)} failed: {_listing(failed)}")
        return EXIT_SOME_FAILED
    say(f"zoo: colorized {done} {'image' if done == 1 else 'images'} into {out}")
    return EXIT_OK
