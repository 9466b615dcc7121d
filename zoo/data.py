"""Training data: decoding once, augmenting and batching on the device, and the store a run trains from.

The steps (reading one file is :mod:`zoo.image_file`, naming a source :mod:`zoo.sources`, the persistent decoded
cache :mod:`zoo.datacache`, the streamed loader :mod:`zoo.loader`):

1. :func:`zoo.sources.resolve_source` turns ``--data`` (``embedded``, ``coco-sample``, a folder, ``hf:...``) into
   an :class:`~zoo.sources.ImageSource`, a train / val list of items (nothing is decoded yet);
2. :func:`decode_items` decodes and square-resizes every item once into one uint8 tensor
   (N, 3, S, S), skipping unreadable files with a reason instead of crashing mid-epoch;
3. :func:`augment_batch` crops / resizes / flips a batch in torch, on whatever device holds it,
   with all randomness drawn from a ``torch.Generator`` so runs are reproducible;
4. :func:`batches_for_epoch` says which rows form each batch of an epoch.
"""
from __future__ import annotations

import concurrent.futures
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from zoo.errors import DataError
from zoo.image_file import UnreadableImage
from zoo.sources import ImageItem, ImageSource, resolve_source

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
