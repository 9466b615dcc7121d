"""Images in: reading files, naming data sources, decoding once, augmenting and batching on the device.

The pipeline is deliberately simple because colorization datasets here are small or sampled:

1. :func:`resolve_source` turns ``--data`` (``embedded``, ``coco-sample`` or a folder) into an
   :class:`ImageSource`, a train / val list of :class:`ImageItem` (nothing is decoded yet);
2. :func:`decode_items` decodes and square-resizes every item once into one uint8 tensor
   (N, 3, S, S), skipping unreadable files with a reason instead of crashing mid-epoch;
3. :func:`augment_batch` crops / resizes / flips a batch in torch, on whatever device holds it,
   with all randomness drawn from a ``torch.Generator`` so runs are reproducible;
4. :func:`batches_for_epoch` says which rows form each batch of an epoch.
"""
from __future__ import annotations

import concurrent.futures
import functools
import glob
import io
import os
import re
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Refuse images above this many pixels (or above PIL's own warning threshold, if lower): a tiny file
# can claim a huge size and decoding it would exhaust memory.
MAX_PIXELS = 100_000_000

SOURCES = ("embedded", "coco-sample", "coco:PATH", "hf:NAME_OR_PATH[:split]")


class UnreadableImage(DataError):
    """An image file cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}; fix or remove the file")


# ----------------------------------------------------------------------------------------------------
# Reading one file


def pixel_limit() -> int:
    pil_limit = Image.MAX_IMAGE_PIXELS
    return min(MAX_PIXELS, int(pil_limit)) if pil_limit else MAX_PIXELS


def _to_uint8(array: np.ndarray, full_scale: float | None) -> np.ndarray:
    """Scale a single-channel high bit depth array to 0..255 (never by clipping)."""
    array = array.astype(np.float64)
    if full_scale is None:  # unknown range: stretch what is there
        lo, hi = float(array.min()), float(array.max())
        array = (array - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(array)
    else:
        array = array * (255.0 / full_scale)
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode.startswith("I;16"):
        return Image.fromarray(_to_uint8(np.asarray(img), 65535.0)).convert("RGB")
    if mode == "I":
        # 32-bit integer images almost always hold 16-bit data (older Pillow opened 16-bit PNGs as "I").
        array = np.asarray(img)
        in_16_bit = array.size and array.min() >= 0 and array.max() <= 65535
        return Image.fromarray(_to_uint8(array, 65535.0 if in_16_bit else None)).convert("RGB")
    if mode == "F":
        array = np.asarray(img)
        in_unit = array.size and np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1
        return Image.fromarray(_to_uint8(np.nan_to_num(array), 1.0 if in_unit else None)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image, upright according to its EXIF orientation.

    Any mode is converted: grayscale and bilevel are replicated, palettes expanded, alpha (and palette
    transparency) composited over white, 16-bit scaled by 255/65535, float in [0, 1] scaled by 255
    (other ranges are stretched), CMYK converted. Multi-frame files give their first frame.
    Raises :class:`UnreadableImage` with a short reason when the file cannot be used.
    ``data``: the file's bytes (an image stored in a dataset), ``path`` then only names it.
    """
    path = Path(path)
    try:
        if data is None:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):  # a FIFO or a device named *.png would block or never end
                raise UnreadableImage(path, "not a regular file")
            if info.st_size == 0:
                raise UnreadableImage(path, "empty file (0 bytes)")
        elif not data:
            raise UnreadableImage(path, "empty image (0 bytes)")
        with Image.open(path if data is None else io.BytesIO(data)) as img:
            pixels = img.size[0] * img.size[1]
            if pixels > pixel_limit():
                raise UnreadableImage(
                    path,
                    f"image too large ({img.size[0]}x{img.size[1]} pixels, limit {pixel_limit():,}): "
                    "possible decompression bomb",
                )
            try:
                img.load()  # decode everything now, so truncation is caught here and not mid-epoch
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                message = str(exc)
                reason = "truncated file" if "truncated" in message.lower() else f"corrupt image data ({message})"
                raise UnreadableImage(path, reason) from exc
            try:
                img = ImageOps.exif_transpose(img)
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                pass
            rgb = _to_rgb(img)
    except UnreadableImage:
        raise
    except FileNotFoundError as exc:
        raise UnreadableImage(path, "file not found") from exc
    except PermissionError as exc:
        raise UnreadableImage(path, "permission denied") from exc
    except IsADirectoryError as exc:
        raise UnreadableImage(path, "is a directory") from exc
    except UnidentifiedImageError as exc:
        raise UnreadableImage(path, "not an image") from exc
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(claimed.group(1)):,} pixels, " if claimed else ""
        raise UnreadableImage(path, f"image too large ({size}limit {pixel_limit():,}): possible decompression "
                                    f"bomb") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated file" if "truncated" in str(exc).lower() else f"corrupt image ({exc})"
        raise UnreadableImage(path, reason) from exc
    return rgb


# ----------------------------------------------------------------------------------------------------
# Sources


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
            skipped.append((dirpath, "folder already listed (symlink loop or duplicate link)"))
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
    n = len(paths)
    if n == 0:
        raise DataError(f"no images ({extensions}) found under {root}: point --data at a folder of images")
    if n == 1:
        return ImageSource(name=str(root), train=_items(paths), val=_items(paths), skipped=skipped, val_is_train=True)
    n_val = min(max(1, round(val_fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
    return ImageSource(
        name=str(root),
        train=_items([paths[i] for i in train_idx]),
        val=_items([paths[i] for i in val_idx]),
        skipped=skipped,
    )


def _reachable(url: str, timeout: float = 3.0) -> str | None:
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
        reason = _reachable(url)
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
    ``hf:NAME_OR_PATH[:split]`` (a Hugging Face ``datasets`` dataset, see :mod:`zoo.hf_source`) or a folder path.

    ``seed`` and ``val_fraction`` only apply to folders without train/ and val/ subfolders; ``exclude``: folders
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
    raise DataError(f"data source {source!r} is not a folder and not one of: {', '.join(SOURCES)}")


# ----------------------------------------------------------------------------------------------------
# Decoding once


@dataclass
class DecodedImages:
    """Decoded, square-resized images: ``images`` uint8 (N, 3, S, S), with ``names`` in item order."""

    images: torch.Tensor
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    upscaled: list[tuple[str, tuple[int, int]]] = field(default_factory=list)  # (name, (w, h)) below load_size

    def __len__(self) -> int:
        return len(self.names)


def decode_one(item: ImageItem, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One item decoded and resized to size x size (PIL bicubic): (uint8 (3, size, size) array, original (w, h)).

    The one decode of every path (in memory, streamed, cached), so all give the same pixels. Raises
    :class:`UnreadableImage`."""
    img = item.load()
    original = img.size
    img = img.resize((size, size), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)), original


def decode_items(items: Sequence[ImageItem], load_size: int, allow_none: bool = False) -> DecodedImages:
    """Decode every item once and resize it to load_size x load_size (PIL bicubic).

    Unreadable items are left out and listed in ``skipped`` as (name, reason); the rest keep the
    items' order. Images with a side below load_size are kept, upscaled, and listed in ``upscaled``.
    Raises DataError if there were items and none could be read (unless ``allow_none``).
    """
    if load_size < 1:
        raise ValueError(f"load_size must be positive, got {load_size}")
    n = len(items)
    out = torch.empty((n, 3, load_size, load_size), dtype=torch.uint8)
    ok = [False] * n
    reasons: list[str | None] = [None] * n
    sizes: list[tuple[int, int]] = [(0, 0)] * n

    def decode(i: int) -> None:
        try:
            array, sizes[i] = decode_one(items[i], load_size)
        except UnreadableImage as exc:
            reasons[i] = exc.reason
            return
        out[i] = torch.from_numpy(array)
        ok[i] = True

    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode, range(n)))  # list() re-raises any unexpected error

    kept = [i for i in range(n) if ok[i]]
    skipped = [(items[i].name, reasons[i] or "unreadable") for i in range(n) if not ok[i]]
    if n and not kept and not allow_none:
        raise DataError(f"none of the {n} images can be used: {_name_reasons(skipped)}; fix or replace them")
    images = out if len(kept) == n else out[torch.tensor(kept, dtype=torch.long)]
    upscaled = [(items[i].name, sizes[i]) for i in kept if min(sizes[i]) < load_size]
    return DecodedImages(images=images, names=[items[i].name for i in kept], skipped=skipped, upscaled=upscaled)


def _name_reasons(skipped: Sequence[tuple[str, str]], limit: int = 3) -> str:
    shown = ", ".join(f"{os.path.basename(name) or name} ({reason})" for name, reason in skipped[:limit])
    return shown + (f", and {len(skipped) - limit} more" if len(skipped) > limit else "")


def describe_skipped(skipped: Sequence[tuple[str, str]], limit: int = 3) -> str:
    """One line such as "skipped 2 unreadable images: a.jpg (truncated file), b.png (not an image)"."""
    if not skipped:
        return ""
    noun = "image" if len(skipped) == 1 else "images"
    return f"skipped {len(skipped)} unreadable {noun}: {_name_reasons(skipped, limit)}"


def describe_skipped_folders(skipped: Sequence[tuple[str, str]], limit: int = 3) -> str:
    """One line such as "skipped 1 folder: data/a/loop (folder already listed (symlink loop ...))"."""
    if not skipped:
        return ""
    shown = ", ".join(f"{name} ({reason})" for name, reason in skipped[:limit])
    more = f", and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return f"skipped {len(skipped)} folder{'s' * (len(skipped) != 1)}: {shown}{more}"


def describe_upscaled(upscaled: Sequence[tuple[str, tuple[int, int]]], size: int, limit: int = 3,
                      what: str = "image") -> str:
    """One line such as "upscaled 2 images smaller than 64 px to 64x64: a.png (1x1), b.png (10x10)".

    Small images are kept and upscaled (bicubic), not skipped: a tiny image still carries its colours.
    """
    if not upscaled:
        return ""
    shown = ", ".join(f"{os.path.basename(name) or name} ({w}x{h})" for name, (w, h) in upscaled[:limit])
    more = f", and {len(upscaled) - limit} more" if len(upscaled) > limit else ""
    noun = what if len(upscaled) == 1 else f"{what}s"
    return f"upscaled {len(upscaled)} {noun} smaller than {size} px to {size}x{size}: {shown}{more}"


# ----------------------------------------------------------------------------------------------------
# Augmenting and batching on the device


def augment_batch(
    images_uint8: torch.Tensor,
    image_size: int,
    generator: torch.Generator,
    flip: bool = True,
    crop: bool = False,
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, image_size, image_size), on the images' device.

    crop: a random image_size x image_size window per sample (needs H, W >= image_size); otherwise a
    resize (antialiased bicubic) when the size differs. flip: each sample mirrored left-right with
    probability 0.5. All randomness comes from ``generator``, which may live on another device than
    the images (numbers are drawn on the generator's device, then moved).

    part = (offset, total): the images are rows offset .. offset + B of a batch of ``total`` (one rank's share
    of the global batch): the numbers are drawn for the whole batch and this share's are used, so every rank
    augments its rows exactly as a single process augments the global batch.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"expected uint8 images (B, 3, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    x = images_uint8
    b, _, h, w = x.shape
    device, gen_device = x.device, generator.device
    offset, total = part if part is not None else (0, b)
    if offset < 0 or offset + b > total:
        raise ValueError(f"part {part} does not hold {b} images")
    mine = slice(offset, offset + b)
    if crop:
        if h < image_size or w < image_size:
            raise ValueError(f"cannot crop {image_size}x{image_size} from {h}x{w} images: use load_size >= image_size")
        top = torch.randint(0, h - image_size + 1, (total,), generator=generator, device=gen_device)[mine].to(device)
        left = torch.randint(0, w - image_size + 1, (total,), generator=generator, device=gen_device)[mine].to(device)
        offsets = torch.arange(image_size, device=device)
        rows = (top[:, None] + offsets)[:, :, None]  # (B, S, 1)
        cols = (left[:, None] + offsets)[:, None, :]  # (B, 1, S)
        batch = torch.arange(b, device=device)[:, None, None]
        # Advanced indices around the channel slice put their (B, S, S) dims first.
        x = x[batch, :, rows, cols].permute(0, 3, 1, 2).contiguous()
    elif (h, w) != (image_size, image_size):
        size = (image_size, image_size)
        x = F.interpolate(x.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
        x = x.round_().clamp_(0, 255).to(torch.uint8)
    if flip:
        mirror = (torch.rand(total, generator=generator, device=gen_device)[mine] < 0.5).to(device)
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    return x


def batches_for_epoch(n_items: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices of each batch of one epoch.

    An epoch is max(1, n_items // batch_size) full batches of exactly batch_size indices, taken in order
    from a random permutation of range(n_items) (generator seeded with seed * 1_000_003 + epoch). With
    n_items >= batch_size the last n_items % batch_size images of the permutation wait for another epoch;
    with fewer images than batch_size, permutations are chained so the single batch is still full
    (no image repeats within one permutation). The same (n_items, batch_size, seed, epoch) always gives
    the same batches.
    """
    if n_items < 1 or batch_size < 1:
        raise ValueError(f"n_items and batch_size must be positive, got {n_items} and {batch_size}")
    generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % 2**63)
    n_batches = max(1, n_items // batch_size)
    needed = n_batches * batch_size
    chunks, total = [], 0
    while total < needed:
        chunks.append(torch.randperm(n_items, generator=generator))
        total += n_items
    order = torch.cat(chunks)[:needed].tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


@dataclass(frozen=True)
class EpochBatches:
    """Deterministic batch sampler: ``EpochBatches(n, bs, seed).epoch(e)`` == ``batches_for_epoch(n, bs, seed, e)``."""

    n_items: int
    batch_size: int
    seed: int

    def __len__(self) -> int:
        return max(1, self.n_items // self.batch_size)

    def epoch(self, epoch: int) -> list[list[int]]:
        return batches_for_epoch(self.n_items, self.batch_size, self.seed, epoch)


# ----------------------------------------------------------------------------------------------------
# What the engine trains on


@dataclass
class TrainData:
    """The training set (:class:`zoo.loader.TrainImages` at ``load_size``: in memory, cached or streamed) and the
    validation images (at ``image_size``, resize only, in memory: at most ``data.val_images`` of a streamed set)."""

    source: ImageSource
    train: Any  # zoo.loader.TrainImages
    val: DecodedImages


def decode_first(items: Sequence[ImageItem], size: int, limit: int) -> DecodedImages:
    """The first ``limit`` readable items decoded (in order), reading only as many as needed."""
    parts: list[DecodedImages] = []
    got, start, chunk = 0, 0, max(8, limit)
    while got < limit and start < len(items):
        part = decode_items(items[start:start + chunk], size, allow_none=True)
        parts.append(part)
        got, start = got + len(part), start + chunk
    images = torch.cat([p.images for p in parts])[:limit] if parts else torch.empty((0, 3, size, size), dtype=torch.uint8)
    names = [n for p in parts for n in p.names][:limit]
    return DecodedImages(images, names, [x for p in parts for x in p.skipped],
                         [u for p in parts for u in p.upscaled if u[0] in set(names)])


def in_memory_fits(n_images: int, size: int, budget_mb: int) -> bool:
    """Whether a training set is decoded once into memory: its uint8 images take at most ``budget_mb`` MiB."""
    return n_images * 3 * size * size <= budget_mb * 2**20


def load_train_data(spec, log: Callable[[str], None] = print, exclude: Sequence[str | os.PathLike] = ()) -> TrainData:
    """Resolve ``spec.data.source`` and make its training set and validation images; report what was skipped.

    A training set whose decoded images fit ``data.in_memory_mb`` is decoded once, here, into memory (from the
    decoded cache when one is complete and current): unreadable files are left out and named. A larger one is
    streamed (:mod:`zoo.loader`): rows are read from the cache, or decoded from the files, while training; an
    unreadable file found then is replaced by the next readable row and named in the log.
    ``exclude``: folders left out of a folder source (the run folder being trained into)."""
    from zoo import datacache
    from zoo.loader import CacheStore, DecodeStore, MemoryStore, TrainImages

    data = spec.data
    began = time.perf_counter()
    source = resolve_source(data.source, seed=data.split_seed, val_fraction=data.val_fraction, exclude=exclude,
                            image_column=getattr(data, "hf_image_column", None))
    if not source.train:
        raise DataError(f"data source {data.source!r} has no training images")
    if source.skipped:
        log(f"zoo: warning: {describe_skipped_folders(source.skipped)}")
    n_listed = len({item.name for item in source.train + source.val})
    if data.source != "embedded":
        log(f"zoo: listed {n_listed:,} images of {source.name} in {time.perf_counter() - began:.1f} s")
    size = data.decode_size
    cache = datacache.find(source, size, log) if getattr(data, "cache", "auto") == "auto" else None
    budget = getattr(data, "in_memory_mb", 256)
    if not in_memory_fits(len(source.train), size, budget):
        if cache is not None:
            train = TrainImages([i.name for i in source.train], CacheStore(cache, cache.rows_of(source.train)), size,
                                f"read from the decoded cache {cache.folder}")
        else:
            train = TrainImages([i.name for i in source.train], DecodeStore(source.train, size), size,
                                "streamed from the files")
        val = decode_first(source.val, data.image_size, data.val_images)
        note = ""
        if val.skipped:
            log(f"zoo: warning: {describe_skipped(val.skipped)}")
        if not len(val):
            val = decode_first(source.train, data.image_size, data.val_images)
            note = " (no usable validation image: validating on training images)"
        if not len(val):
            raise DataError(f"none of the images of {source.name} checked so far can be used: "
                            f"{_name_reasons(val.skipped)}; fix or replace them, or point --data at another folder")
        log(f"zoo: data {source.name}: {len(train):,} train / {len(source.val):,} validation images ({train.how}; "
            f"{len(val)} validation images decoded for the val L1){note}")
        return TrainData(source, train, val)

    # Training goes on as long as one image is usable: a split that left only broken files on one side
    # borrows the other side's usable images (and says so) rather than failing.
    def decode_train(items):
        return cache.decoded(items) if cache is not None else decode_items(items, size, allow_none=True)

    train = decode_train(source.train)
    val = decode_items(source.val, data.image_size, allow_none=True)
    skipped = list(dict.fromkeys(train.skipped + val.skipped))  # a one-image folder lists its file twice
    if not len(train) and not len(val):
        n = len({item.name for item in source.train + source.val})
        raise DataError(f"none of the {n} images in {source.name} can be used: {_name_reasons(skipped)}; fix or "
                        f"replace them, or point --data at another folder")
    if skipped:
        log(f"zoo: warning: {describe_skipped(skipped)}")
    note = " (too few images to hold any out: validation = train)" if source.val_is_train else ""
    if not len(train):
        usable = set(val.names)
        train = decode_items([item for item in source.val if item.name in usable], size)
        note = " (no usable training image: training and validating on the validation images)"
    elif not len(val):
        usable = set(train.names)
        val = decode_items([item for item in source.train if item.name in usable], data.image_size)
        note = " (no usable validation image: validating on the training images)"
    if train.upscaled:
        log(f"zoo: {describe_upscaled(train.upscaled, size)}")
    val_only = [u for u in val.upscaled if u[0] not in {name for name, _ in train.upscaled}]
    if val_only:
        log(f"zoo: {describe_upscaled(val_only, data.image_size, what='validation image')}")
    log(f"zoo: data {source.name}: {len(train)} train / {len(val)} validation images{note}")
    images = TrainImages(train.names, MemoryStore(train.images), size, "in memory", train.skipped, train.upscaled)
    return TrainData(source, images, val)
