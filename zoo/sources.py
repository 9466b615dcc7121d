"""Naming data sources: ``--data`` (``embedded``, ``coco-sample``, ``coco:PATH``, a folder, ``hf:...``) becomes an
:class:`ImageSource`, a train / val list of :class:`ImageItem` (nothing decoded yet). A folder is scanned once
(symlink loops listed once, run folders zoo made and ``exclude`` paths left out) and split by a seeded rule."""
from __future__ import annotations

import functools
import glob
import os
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.errors import DataError
from zoo.image_file import IMAGE_EXTENSIONS, load_rgb
from zoo.text import shown

SOURCES = ("embedded", "coco-sample", "coco:PATH", "hf:NAME_OR_PATH[:split]", "a folder", "LIST.txt")
#: a file list: a text file of this suffix holding one image path per line
LIST_SUFFIX = ".txt"
LIST_MAX_BYTES = 256 * 1024 * 1024  # a list of some million paths; a bigger ".txt" is not a file list


@dataclass(frozen=True)
class ImageItem:
    """One image of a source: a file path, or a ``loader`` for images shipped inside a package."""

    name: str
    path: Path | None = None
    loader: Callable[[], Image.Image] | None = field(default=None, repr=False, compare=False)

    def load(self) -> Image.Image:
        """The image as 8-bit RGB; raises :class:`UnreadableImage` for a broken file."""
        if self.loader is not None:
            return self.loader()
        return load_rgb(self.path if self.path is not None else self.name)


@dataclass
class ImageSource:
    """A named train / val split of images; ``skipped`` lists (path, reason) found while listing."""

    name: str
    train: list[ImageItem]
    val: list[ImageItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    val_is_train: bool = False  # a one-image folder validates on its training image
    fingerprint: str | None = None  # what identifies the images when they are not files (hf: sources)


def _from_array(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _skimage_image(name: str) -> Image.Image:
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return _from_array(left if name == "motorcycle_left" else right)
    return _from_array(getattr(skimage.data, name)())


def _sklearn_image(name: str) -> Image.Image:
    """scikit-learn's sample JPEG, read straight from its package folder: the same file and decoder (PIL) as
    ``sklearn.datasets.load_sample_image``, without importing scikit-learn (about 2 s of every run's start)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    path = Path(spec.origin).parent / "datasets" / "images" / name if spec and spec.origin else None
    if path is not None and path.is_file():
        with Image.open(path) as img:
            return img.convert("RGB")
    from sklearn.datasets import load_sample_image  # a layout this does not know: scikit-learn's own way

    return _from_array(load_sample_image(name))


def _matplotlib_image(name: str) -> Image.Image:
    from matplotlib import cbook

    return load_rgb(cbook.get_sample_data(name, asfileobj=False))


def _embedded_item(name: str) -> ImageItem:
    package, _, image = name.partition(":")
    loader = {"skimage": _skimage_image, "sklearn": _sklearn_image, "matplotlib": _matplotlib_image}[package]
    return ImageItem(name=name, loader=functools.partial(loader, image))


EMBEDDED_TRAIN = (
    "skimage:astronaut",
    "skimage:chelsea",
    "skimage:rocket",
    "skimage:motorcycle_left",
    "skimage:motorcycle_right",
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
)
EMBEDDED_VAL = ("skimage:coffee", "matplotlib:grace_hopper.jpg")


def embedded_source() -> ImageSource:
    """Nine real photos shipped with scikit-image, scikit-learn and matplotlib (no download).

    Fixed split: val = coffee (skimage) and grace_hopper.jpg (matplotlib); train = astronaut, chelsea,
    rocket, motorcycle_left, motorcycle_right (skimage), china.jpg and flower.jpg (sklearn). The two
    motorcycle images are a stereo pair of one scene, so they are both on the train side.
    """
    return ImageSource(
        name="embedded",
        train=[_embedded_item(n) for n in EMBEDDED_TRAIN],
        val=[_embedded_item(n) for n in EMBEDDED_VAL],
    )


def is_run_folder(folder: str | os.PathLike) -> bool:
    """A zoo run folder (spec.json and checkpoints/): never data, even inside a data folder."""
    return os.path.isfile(os.path.join(folder, "spec.json")) and os.path.isdir(os.path.join(folder, "checkpoints"))


#: the reason :func:`scan_folder` gives for a folder it lists only once (nothing of it is missed)
ALREADY_LISTED = "folder already listed (symlink loop or duplicate link)"


def scan_folder(root: Path, skipped: list[tuple[str, str]], exclude: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Image files under ``root`` (IMAGE_EXTENSIONS, any case; recursive, symlinks followed once), sorted by path.

    Folders that cannot be listed are appended to ``skipped`` as (path, reason). Zoo run folders inside ``root``
    (their sample grids are not data) and the folders in ``exclude`` (the output of the run being made) are left
    out. Shared by ``--data DIR`` and ``zoo colorize DIR``.
    """
    found: list[str] = []
    visited: set[str] = set()
    left_out = {os.path.realpath(p) for p in exclude}
    pending = [str(root)]
    while pending:  # one os.scandir per folder: names and types come from the listing, no stat per file
        dirpath = pending.pop()
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop or a second link to a folder already listed
            skipped.append((dirpath, ALREADY_LISTED))
            continue
        visited.add(real)
        if real in left_out or (dirpath != str(root) and is_run_folder(dirpath)):
            continue
        try:
            with os.scandir(dirpath) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=True):
                            pending.append(entry.path)
                        elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                            found.append(entry.path)
                    except OSError:  # a dangling link named like an image: load_rgb says "file not found"
                        if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                            found.append(entry.path)
        except OSError as exc:
            skipped.append((str(exc.filename or dirpath), exc.strerror or str(exc)))
    return sorted(Path(p) for p in found)  # by path parts, as before (the split depends on this order)


def _items(paths: Sequence[Path]) -> list[ImageItem]:
    return [ImageItem(name=str(p), path=p) for p in paths]


def folder_source(root: str | os.PathLike, seed: int = 123, val_fraction: float = 0.2,
                  exclude: Sequence[str | os.PathLike] = ()) -> ImageSource:
    """Images under a folder (extensions: IMAGE_EXTENSIONS, any case; recursive).

    With ``train/`` and ``val/`` subfolders those are the split. Otherwise the sorted paths are split by
    ``numpy.random.default_rng(seed).permutation``: round(val_fraction * N) images for val, at least 1
    when N >= 2; with a single image, val is that same image and ``val_is_train`` is True.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    skipped: list[tuple[str, str]] = []
    extensions = ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)
    if (root / "train").is_dir() and (root / "val").is_dir():
        train, val = scan_folder(root / "train", skipped, exclude), scan_folder(root / "val", skipped, exclude)
        for part, paths in (("train", train), ("val", val)):
            if not paths:
                raise DataError(
                    f"no images ({extensions}) in {root / part}: add images there or remove the train/ and val/ folders"
                )
        return ImageSource(name=str(root), train=_items(train), val=_items(val), skipped=skipped)

    paths = scan_folder(root, skipped, exclude)
    if not paths:
        raise DataError(f"no images ({extensions}) found under {root}: point --data at a folder of images")
    return split_paths(str(root), paths, seed, val_fraction, skipped)


def split_paths(name: str, paths: Sequence[Path], seed: int, val_fraction: float,
                skipped: list[tuple[str, str]]) -> ImageSource:
    """The seeded split of sorted ``paths`` (folders without train/ and val/, file lists): round(val_fraction * N)
    images for val by ``numpy.random.default_rng(seed).permutation``, at least 1 when N >= 2; with a single image,
    val is that same image and ``val_is_train`` is True."""
    n = len(paths)
    if n == 1:
        return ImageSource(name=name, train=_items(paths), val=_items(paths), skipped=skipped, val_is_train=True)
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
    return ImageSource(name=name, train=_items([paths[i] for i in train_idx]),
                       val=_items([paths[i] for i in val_idx]), skipped=skipped)


def file_list_source(path: str | os.PathLike, seed: int = 123, val_fraction: float = 0.2) -> ImageSource:
    """Images named in a text file (``LIST.txt``), one path per line: a relative path is relative to the list's
    folder; blank lines and lines starting with ``#`` are ignored; a path listed twice is used once (said in
    ``skipped``). The bytes of each line are the path as the OS names it (UTF-8 or not). A listed file that is
    missing or broken is skipped when decoded, with its reason, like a folder's. The list is split by
    :func:`split_paths` (seeded), so ``--split val`` of a list is its held-out part and ``all`` every image: the
    usual way to pin a test set (e.g. the 10k ImageNet validation images colorization papers report on)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(LIST_MAX_BYTES + 1)
    except OSError as exc:
        raise DataError(f"cannot read the file list {shown(path)}: {exc.strerror or exc}") from None
    if len(raw) > LIST_MAX_BYTES or b"\0" in raw:
        raise DataError(f"{shown(path)} is not a file list (a text file of image paths, one per line): "
                        f"{'over 256 MiB' if len(raw) > LIST_MAX_BYTES else 'it holds binary data'}")
    base = path.parent
    paths, seen, skipped = [], set(), []
    for line in raw.splitlines():
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        item = Path(os.fsdecode(line))
        item = item if item.is_absolute() else base / item
        if item in seen:
            skipped.append((str(item), "listed twice (used once)"))
            continue
        seen.add(item)
        paths.append(item)
    if not paths:
        raise DataError(f"the file list {shown(path)} names no images: give one image path per line")
    return split_paths(str(path), sorted(paths), seed, val_fraction, skipped)


def reachable(url: str, timeout: float = 3.0) -> str | None:
    """None if a TCP connection to the url's host can be opened, else the reason it could not.

    Runs in a daemon thread because name resolution itself has no timeout.
    """
    parts = urllib.parse.urlsplit(url)
    address = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    result: list[str | None] = ["timed out"]

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result[0] = None
        except OSError as exc:
            result[0] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 2.0)
    return result[0]


COCO_SAMPLE_SIZE = 10_000
COCO_TRAIN_SIZE = 8_000


def coco_sample_source() -> ImageSource:
    """10,000 images of fastai's COCO_SAMPLE split 8,000 / 2,000, as in the usual pix2pix colorization recipe.

    ``paths`` = train_sample/*.jpg (sorted, so the split does not depend on the file system's listing
    order); a RandomState seeded with 123 (the same stream as ``np.random.seed(123)``) draws 10,000 with
    ``choice(paths, 10_000, replace=False)`` then ``permutation(10_000)``: the first 8,000 are train.
    The first use downloads about 3 GB through ``fastai.data.external.untar_data``.
    """
    from fastai.data.external import URLs, fastai_path, untar_data

    url = URLs.COCO_SAMPLE
    expected = fastai_path("data") / "coco_sample"

    def offline(reason: str) -> DataError:
        return DataError(
            f"coco-sample needs a one-time download of fastai's COCO_SAMPLE (about 3 GB) and this machine "
            f"could not reach it ({reason}): connect to the internet, or put the extracted folder at "
            f"{expected} , or use --data PATH / --data embedded"
        )

    if not expected.exists():
        reason = reachable(url)
        if reason is not None:
            raise offline(reason)
    try:
        path = Path(untar_data(url))
    except Exception as exc:  # fastai/fastdownload raise plain Exceptions and urllib errors
        raise offline(f"{type(exc).__name__}: {exc}") from exc

    paths = sorted(glob.glob(str(path / "train_sample" / "*.jpg")))
    if len(paths) < COCO_SAMPLE_SIZE:
        raise DataError(
            f"{path / 'train_sample'} holds {len(paths)} .jpg files, expected at least {COCO_SAMPLE_SIZE}: "
            f"delete {path} so fastai downloads it again, or use --data PATH"
        )
    train, val = coco_split(paths, COCO_SAMPLE_SIZE, COCO_TRAIN_SIZE)
    return ImageSource(name="coco-sample", train=_items(train), val=_items(val))


def coco_split(paths: Sequence[str], n: int, n_train: int) -> tuple[list[Path], list[Path]]:
    """The seed's COCO rule: a RandomState seeded with 123 draws ``choice(paths, n, replace=False)`` then
    ``permutation(n)``; the first ``n_train`` are train, the rest val (``paths`` sorted)."""
    rng = np.random.RandomState(123)
    chosen = rng.choice(list(paths), n, replace=False)
    rand_idxs = rng.permutation(n)
    return [Path(p) for p in chosen[rand_idxs[:n_train]]], [Path(p) for p in chosen[rand_idxs[n_train:]]]


def coco_folder_source(folder: str | os.PathLike) -> ImageSource:
    """``coco:PATH``: a local COCO image folder (train2017, or fastai's train_sample) with the seed's rules.

    ``paths`` = PATH/*.jpg sorted (PATH/train2017 or PATH/train_sample when PATH holds one of those); all of them
    are drawn with :func:`coco_split` and 80 % are train. A folder of exactly 10,000 images (fastai's
    train_sample) splits exactly as ``coco-sample``.
    """
    root = Path(os.path.expanduser(str(folder)))
    for sub in ("train2017", "train_sample"):
        if (root / sub).is_dir():
            root = root / sub
            break
    if not root.is_dir():
        raise DataError(f"coco:{folder} is not a folder: give the folder of COCO's .jpg files, e.g. "
                        f"coco:/data/coco/train2017")
    with os.scandir(root) as entries:
        paths = sorted(e.path for e in entries if e.name.lower().endswith(".jpg"))
    if len(paths) < 2:
        raise DataError(f"{root} holds {len(paths)} .jpg files: coco:PATH needs a folder of COCO images")
    n_train = min(len(paths) - 1, round(len(paths) * COCO_TRAIN_SIZE / COCO_SAMPLE_SIZE))
    train, val = coco_split(paths, len(paths), n_train)
    return ImageSource(name=f"coco:{root}", train=_items(train), val=_items(val))


def resolve_source(source: str = "embedded", seed: int = 123, val_fraction: float = 0.2,
                   exclude: Sequence[str | os.PathLike] = (), image_column: str | None = None) -> ImageSource:
    """``--data`` -> :class:`ImageSource`: ``"embedded"`` (default), ``"coco-sample"``, ``coco:PATH``,
    ``hf:NAME_OR_PATH[:split]`` (a Hugging Face ``datasets`` dataset, see :mod:`zoo.hf_source`), a folder path or a
    file list ``LIST.txt`` (:func:`file_list_source`).

    ``seed`` and ``val_fraction`` only apply to folders without train/ and val/ subfolders and to file lists; ``exclude``: folders
    left out of a folder's scan (see :func:`scan_folder`).
    """
    if source == "embedded":
        return embedded_source()
    if source == "coco-sample":
        return coco_sample_source()
    if source.startswith("coco:"):
        return coco_folder_source(source[len("coco:"):])
    if source.startswith("hf:"):
        from zoo.hf_source import hf_source

        return hf_source(source[len("hf:"):], seed=seed, val_fraction=val_fraction, image_column=image_column)
    if os.path.isdir(source):
        return folder_source(source, seed=seed, val_fraction=val_fraction, exclude=exclude)
    if source.lower().endswith(LIST_SUFFIX) and os.path.isfile(source):
        return file_list_source(source, seed=seed, val_fraction=val_fraction)
    raise DataError(f"data source {shown(source)} is not a folder, not a file list ({LIST_SUFFIX}) and not one of: "
                    f"{', '.join(SOURCES)}")


