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
import os
import re
import socket
import stat
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Refuse images above this many pixels (or above PIL's own warning threshold, if lower): a tiny file
# can claim a huge size and decoding it would exhaust memory.
MAX_PIXELS = 100_000_000

SOURCES = ("embedded", "coco-sample")


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


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an 8-bit RGB PIL image, upright according to its EXIF orientation.

    Any mode is converted: grayscale and bilevel are replicated, palettes expanded, alpha (and palette
    transparency) composited over white, 16-bit scaled by 255/65535, float in [0, 1] scaled by 255
    (other ranges are stretched), CMYK converted. Multi-frame files give their first frame.
    Raises :class:`UnreadableImage` with a short reason when the file cannot be used.
    """
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device named *.png would block or never end
            raise UnreadableImage(path, "not a regular file")
        if info.st_size == 0:
            raise UnreadableImage(path, "empty file (0 bytes)")
        with Image.open(path) as img:
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


def _from_array(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def _skimage_image(name: str) -> Image.Image:
    import skimage.data

    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return _from_array(left if name == "motorcycle_left" else right)
    return _from_array(getattr(skimage.data, name)())


def _sklearn_image(name: str) -> Image.Image:
    from sklearn.datasets import load_sample_image

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
    found: list[Path] = []
    visited: set[str] = set()
    left_out = {os.path.realpath(p) for p in exclude}

    def on_error(exc: OSError) -> None:
        skipped.append((str(exc.filename), exc.strerror or str(exc)))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=on_error):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop or a second link to a folder already listed
            skipped.append((dirpath, "folder already listed (symlink loop or duplicate link)"))
            dirnames[:] = []
            continue
        visited.add(real)
        if real in left_out or (dirpath != str(root) and is_run_folder(dirpath)):
            dirnames[:] = []
            continue
        dirnames.sort()
        found.extend(Path(dirpath, f) for f in filenames if f.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(found)


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
    rng = np.random.RandomState(123)
    chosen = rng.choice(paths, COCO_SAMPLE_SIZE, replace=False)
    rand_idxs = rng.permutation(COCO_SAMPLE_SIZE)
    train = [Path(p) for p in chosen[rand_idxs[:COCO_TRAIN_SIZE]]]
    val = [Path(p) for p in chosen[rand_idxs[COCO_TRAIN_SIZE:]]]
    return ImageSource(name="coco-sample", train=_items(train), val=_items(val))


def resolve_source(source: str = "embedded", seed: int = 123, val_fraction: float = 0.2,
                   exclude: Sequence[str | os.PathLike] = ()) -> ImageSource:
    """``--data`` -> :class:`ImageSource`: ``"embedded"`` (default), ``"coco-sample"`` or a folder path.

    ``seed`` and ``val_fraction`` only apply to folders without train/ and val/ subfolders; ``exclude``: folders
    left out of a folder's scan (see :func:`scan_folder`).
    """
    if source == "embedded":
        return embedded_source()
    if source == "coco-sample":
        return coco_sample_source()
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
            img = items[i].load()
        except UnreadableImage as exc:
            reasons[i] = exc.reason
            return
        sizes[i] = img.size
        img = img.resize((load_size, load_size), Image.BICUBIC)
        out[i] = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
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
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> uint8 (B, 3, image_size, image_size), on the images' device.

    crop: a random image_size x image_size window per sample (needs H, W >= image_size); otherwise a
    resize (antialiased bicubic) when the size differs. flip: each sample mirrored left-right with
    probability 0.5. All randomness comes from ``generator``, which may live on another device than
    the images (numbers are drawn on the generator's device, then moved).
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"expected uint8 images (B, 3, H, W), got {images_uint8.dtype} {tuple(images_uint8.shape)}")
    x = images_uint8
    b, _, h, w = x.shape
    device, gen_device = x.device, generator.device
    if crop:
        if h < image_size or w < image_size:
            raise ValueError(f"cannot crop {image_size}x{image_size} from {h}x{w} images: use load_size >= image_size")
        top = torch.randint(0, h - image_size + 1, (b,), generator=generator, device=gen_device).to(device)
        left = torch.randint(0, w - image_size + 1, (b,), generator=generator, device=gen_device).to(device)
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
        mirror = (torch.rand(b, generator=generator, device=gen_device) < 0.5).to(device)
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
    """Decoded train images (at ``load_size``) and validation images (at ``image_size``, resize only)."""

    source: ImageSource
    train: DecodedImages
    val: DecodedImages


def load_train_data(spec, log: Callable[[str], None] = print, exclude: Sequence[str | os.PathLike] = ()) -> TrainData:
    """Resolve ``spec.data.source``, decode its train and val images once, and report what was skipped.

    ``exclude``: folders left out of a folder source (the run folder being trained into)."""
    data = spec.data
    source = resolve_source(data.source, seed=data.split_seed, val_fraction=data.val_fraction, exclude=exclude)
    if not source.train:
        raise DataError(f"data source {data.source!r} has no training images")
    if source.skipped:
        log(f"zoo: warning: {describe_skipped_folders(source.skipped)}")
    # Training goes on as long as one image is usable: a split that left only broken files on one side
    # borrows the other side's usable images (and says so) rather than failing.
    train = decode_items(source.train, data.decode_size, allow_none=True)
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
        train = decode_items([item for item in source.val if item.name in usable], data.decode_size)
        note = " (no usable training image: training and validating on the validation images)"
    elif not len(val):
        usable = set(train.names)
        val = decode_items([item for item in source.train if item.name in usable], data.image_size)
        note = " (no usable validation image: validating on the training images)"
    if train.upscaled:
        log(f"zoo: {describe_upscaled(train.upscaled, data.decode_size)}")
    val_only = [u for u in val.upscaled if u[0] not in {name for name, _ in train.upscaled}]
    if val_only:
        log(f"zoo: {describe_upscaled(val_only, data.image_size, what='validation image')}")
    log(f"zoo: data {source.name}: {len(train)} train / {len(val)} validation images{note}")
    return TrainData(source, train, val)
