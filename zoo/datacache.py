"""The persistent decoded cache: every image of a source decoded and resized once, in memory-mapped shards on disk.

``zoo data cache SOURCE --size N`` builds it; ``zoo train`` reads it whenever one is complete and current for its
source and load size (``data.cache=auto``). It lives in a cache folder, never in the data folder:
``$ZOO_CACHE_DIR``, else ``~/.cache/zoo/data``, one sub-folder per (source, size):

* ``index.json``: version, source, size, the *fingerprint* of the file list (sha256 of every name, byte size and
  mtime; a ``datasets`` fingerprint for hf: sources), the number of images and of rows per shard;
* ``names.json``: the image names in row order (all images of the source, sorted by name: the cache does not
  depend on the train/val split, so runs with other split seeds share it);
* ``shard-00000.u8``: rows × 3 × size × size uint8 (a raw numpy memmap) and, written once that file is complete,
  ``shard-00000.json``: its crc32, each row's original (w, h) and the rows that could not be read (with reasons);
* ``.zoo.lock``: the builder's lock (zoo.runfolder.RunLock: one ``zoo data cache`` of a cache at a time).

A changed folder (another fingerprint), another size (another sub-folder) or a damaged or partial cache is never
used silently: training says so in one line and decodes from the files; ``zoo data cache`` rebuilds what is
stale and continues an interrupted build where it stopped (finished shards are kept).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.errors import DataError
from zoo.text import shown

VERSION = 1
SHARD_BYTES = 256 * 2**20


def cache_root() -> Path:
    """``$ZOO_CACHE_DIR``, else ``~/.cache/zoo/data``."""
    env = os.environ.get("ZOO_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "zoo" / "data"


def _all_items(source) -> list:
    seen: dict[str, Any] = {}
    for item in source.train + source.val:
        seen.setdefault(item.name, item)
    return [seen[name] for name in sorted(seen)]


def source_identity(source) -> str:
    name = source.name
    return os.path.realpath(name) if os.path.isdir(name) else name


def cache_folder(source, size: int, root: str | os.PathLike | None = None) -> Path:
    """The sub-folder of one (source, size)."""
    ident = source_identity(source)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(ident.rstrip("/")) or "data")[:40]
    digest = hashlib.sha256(os.fsencode(ident)).hexdigest()[:16]  # any file name, UTF-8 or not
    return Path(root or cache_root()) / f"{slug}-{digest}-{size}px"


def fingerprint(source, items: Sequence | None = None) -> str:
    """sha256 of the file list: each name, byte size and mtime (or the source's own fingerprint)."""
    items = _all_items(source) if items is None else items
    h = hashlib.sha256(os.fsencode(f"{source_identity(source)}\n"))  # names as the OS gave them, UTF-8 or not
    if getattr(source, "fingerprint", None):
        h.update(os.fsencode(f"{source.fingerprint}\n{len(items)}\n"))
        return h.hexdigest()
    for item in items:
        try:
            st = os.stat(item.path) if item.path is not None else None
            h.update(os.fsencode(f"{item.name}\0{st.st_size if st else 0}\0{st.st_mtime_ns if st else 0}\n"))
        except OSError:
            h.update(os.fsencode(f"{item.name}\0missing\n"))
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, path)
    except BaseException:  # a full disk: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise


class DecodedCache:
    """A complete cache, opened (see :func:`open_cache`): rows read from memory-mapped shards."""

    def __init__(self, folder: Path, index: dict, names: list[str], shards: list[dict]):
        self.folder, self.index, self.names, self.shards = folder, index, names, shards
        self.size, self.shard_rows = int(index["size"]), int(index["shard_rows"])
        self._maps: dict[int, np.memmap] = {}
        self._rows: dict[str, int] | None = None

    def __getstate__(self):  # memmaps are reopened in each worker process
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self.names)

    def _shard(self, k: int) -> np.memmap:
        if k not in self._maps:
            rows = int(self.shards[k]["rows"])
            self._maps[k] = np.memmap(self.folder / f"shard-{k:05d}.u8", dtype=np.uint8, mode="r",
                                      shape=(rows, 3, self.size, self.size))
        return self._maps[k]

    def row(self, r: int) -> np.ndarray:
        """Row r as uint8 (3, S, S); raises :class:`zoo.image_file.UnreadableImage` for a file that could not be read."""
        from zoo.image_file import UnreadableImage

        k, local = divmod(r, self.shard_rows)
        reason = self.shards[k]["broken"].get(str(local))
        if reason is not None:
            raise UnreadableImage(self.names[r], reason)
        return np.array(self._shard(k)[local])  # a copy: the batch must not alias the mapped file

    def rows_of(self, items: Sequence) -> list[int]:
        if self._rows is None:
            self._rows = {name: r for r, name in enumerate(self.names)}
        return [self._rows[item.name] for item in items]

    def original_size(self, r: int) -> tuple[int, int]:
        k, local = divmod(r, self.shard_rows)
        w, h = self.shards[k]["sizes"][local]
        return int(w), int(h)

    def decoded(self, items: Sequence):
        """The items as :class:`zoo.data.DecodedImages` (unreadable ones left out and listed), like decode_items."""
        import torch

        from zoo.data import DecodedImages
        from zoo.image_file import UnreadableImage

        rows, arrays, names, skipped, upscaled = self.rows_of(items), [], [], [], []
        for item, r in zip(items, rows):
            try:
                arrays.append(self.row(r))
            except UnreadableImage as exc:
                skipped.append((item.name, exc.reason))
                continue
            names.append(item.name)
            if min(self.original_size(r)) < self.size:
                upscaled.append((item.name, self.original_size(r)))
        images = (torch.from_numpy(np.stack(arrays)) if arrays
                  else torch.empty((0, 3, self.size, self.size), dtype=torch.uint8))
        return DecodedImages(images, names, skipped, upscaled)


def _state(folder: Path, source, size: int, fp: str | None = None) -> tuple[str, Any]:
    """("missing" | "stale" | "damaged" | "partial" | "complete", detail)."""
    index_path = folder / "index.json"
    if not index_path.is_file():
        return ("missing", None) if not folder.exists() else ("partial", "no index.json")
    try:
        index = json.loads(index_path.read_text())
        names = json.loads((folder / "names.json").read_text())
        if index.get("version") != VERSION or int(index["size"]) != size or len(names) != int(index["n"]):
            return "damaged", "index.json does not match this zoo version or size"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        return "damaged", f"unreadable index ({type(exc).__name__})"
    if index["fingerprint"] != (fp or fingerprint(source)):
        return "stale", "the source's files changed since it was built"
    n, per = int(index["n"]), int(index["shard_rows"])
    n_shards = -(-n // per)
    shards, missing = [], 0
    for k in range(n_shards):
        rows = min(per, n - k * per)
        meta_path, data_path = folder / f"shard-{k:05d}.json", folder / f"shard-{k:05d}.u8"
        if not meta_path.is_file():
            missing += 1
            shards.append(None)
            continue
        try:
            meta = json.loads(meta_path.read_text())
            ok = int(meta["rows"]) == rows and len(meta["sizes"]) == rows
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            ok = False
        if not ok or not data_path.is_file() or data_path.stat().st_size != rows * 3 * size * size:
            return "damaged", f"{data_path.name} is missing, truncated or does not match its index"
        shards.append(meta)
    if missing:
        return "partial", f"{n_shards - missing} of {n_shards} shards built"
    return "complete", (index, names, shards)


def find(source, size: int, log: Callable[[str], None], root: str | os.PathLike | None = None) -> DecodedCache | None:
    """The complete, current cache of (source, size), or None; a stale, partial or damaged one is named in one
    line and not used."""
    folder = cache_folder(source, size, root)
    if not folder.exists():
        return None
    state, detail = _state(folder, source, size)
    if state == "complete":
        index, names, shards = detail
        log(f"zoo: using the decoded cache {folder} ({len(names):,} images at {size} px)")
        return DecodedCache(folder, index, names, shards)
    if state != "missing":
        what = {"stale": "is stale", "partial": "is incomplete", "damaged": "is damaged"}[state]
        log(f"zoo: warning: the decoded cache {folder} {what} ({detail}): not used, decoding from the files; "
            f"{'finish' if state == 'partial' else 'rebuild'} it with `zoo data cache {source.name} --size {size}`")
    return None


def verify(cache: DecodedCache) -> list[str]:
    """Shards whose crc32 does not match their index (reads every byte)."""
    bad = []
    for k, meta in enumerate(cache.shards):
        crc = 0
        with open(cache.folder / f"shard-{k:05d}.u8", "rb") as fh:
            while chunk := fh.read(16 * 2**20):
                crc = zlib.crc32(chunk, crc)
        if crc != int(meta["crc32"]):
            bad.append(f"shard-{k:05d}.u8")
    return bad


class _DecodeAll:
    """Dataset for building: index -> (uint8 (3, S, S) or None, (w, h), reason)."""

    def __init__(self, items: Sequence, size: int):
        self.items, self.size = items, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from zoo.data import decode_one
        from zoo.image_file import UnreadableImage

        try:
            array, original = decode_one(self.items[i], self.size)
            return array, original, None
        except UnreadableImage as exc:
            return None, (0, 0), exc.reason


def _decode_rows(items: Sequence, size: int, workers: int):
    import torch

    from zoo.loader import _collate, _worker_init

    loader = torch.utils.data.DataLoader(_DecodeAll(items, size), batch_size=None, num_workers=workers, collate_fn=_collate,
                                         worker_init_fn=_worker_init if workers else None,
                                         prefetch_factor=8 if workers else None,
                                         generator=torch.Generator().manual_seed(0))
    yield from loader


def check_cache_root(root: Path, source) -> None:
    """Refuse a cache folder that is not a folder, or that lies inside the data folder it caches or inside a zoo
    run folder (the cache writes there, so it would put zoo's files among the user's photos or the run's own)."""
    from zoo.fileio import OutputRefused, check_output_folder

    flag = "--cache-dir (or $ZOO_CACHE_DIR)"
    data = source_identity(source)
    real = os.path.realpath(root)
    if os.path.isdir(data) and (real == data or real.startswith(data.rstrip(os.sep) + os.sep)):
        raise DataError(f"{flag} {shown(root)} is inside the data folder {shown(source.name)}: the cache never goes "
                        f"among the photos it caches; give a folder outside it")
    try:
        check_output_folder(root, flag, "the decoded cache")
    except OutputRefused as exc:
        raise DataError(str(exc)) from None


def build(source, size: int, log: Callable[[str], None], root: str | os.PathLike | None = None, workers: int = 0,
          shard_rows: int | None = None) -> DecodedCache:
    """Build (or finish) the cache of (source, size): decode every image once into shards. Finished shards are
    kept, so an interrupted build continues; a stale or damaged cache is rebuilt from scratch."""
    from zoo.runfolder import LOCK, RunLock

    check_cache_root(Path(root or cache_root()), source)
    folder = cache_folder(source, size, root)
    items = _all_items(source)
    fp = fingerprint(source, items)
    state, detail = _state(folder, source, size, fp)
    if state == "complete":
        index, names, shards = detail
        log(f"zoo: the decoded cache {folder} is complete and current ({len(items):,} images at {size} px)")
        return DecodedCache(folder, index, names, shards)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # one builder per cache (a second `zoo data cache` of it at once is refused, naming the PID); the state is
        # read again under the lock: the builder before may have finished it
        with RunLock.take(folder / LOCK, folder, what="decoded cache"):
            return _build_locked(folder, source, size, items, fp, log, workers, shard_rows)
    except OSError as exc:  # a full disk, a read-only cache folder (the images' own failures are skipped, not raised)
        raise DataError(f"cannot write the decoded cache {shown(folder)} ({exc.strerror or exc}): free disk space or "
                        f"give --cache-dir (or $ZOO_CACHE_DIR) a disk with room; the finished shards are kept, so the "
                        f"same command continues") from None


def _reserve(path: Path, nbytes: int) -> None:
    """Allocate a shard's blocks before it is memory-mapped: on a full disk, writing into a sparse mapping kills
    the process with SIGBUS; allocating first makes that an OSError (ENOSPC), with nothing half-written kept."""
    with open(path, "wb") as fh:
        try:
            os.posix_fallocate(fh.fileno(), 0, nbytes)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # a file system without allocation: map it sparse
                return
            fh.close()
            path.unlink(missing_ok=True)
            raise


def _build_locked(folder: Path, source, size: int, items: list, fp: str, log: Callable[[str], None], workers: int,
                  shard_rows: int | None) -> DecodedCache:
    state, detail = _state(folder, source, size, fp)
    if state in ("stale", "damaged"):
        log(f"zoo: the decoded cache {folder} {'is stale' if state == 'stale' else 'is damaged'} ({detail}): "
            f"rebuilding it")
        for path in folder.iterdir():
            if re.fullmatch(r"(index|names)\.json(\.tmp)?|shard-\d{5}\.(u8|json)(\.tmp)?", path.name):
                path.unlink()
    elif state == "complete":
        log(f"zoo: the decoded cache {folder} is complete and current ({len(items):,} images at {size} px)")
        index, names, shards = detail
        return DecodedCache(folder, index, names, shards)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "index.json").is_file():
        per = shard_rows or max(1, SHARD_BYTES // (3 * size * size))
        _write_json(folder / "names.json", [item.name for item in items])
        _write_json(folder / "index.json", {"version": VERSION, "source": source.name, "size": size,
                                            "fingerprint": fp, "n": len(items), "shard_rows": per})
    index = json.loads((folder / "index.json").read_text())
    n, per = len(items), int(index["shard_rows"])
    n_shards = -(-n // per)
    todo = [k for k in range(n_shards) if not (folder / f"shard-{k:05d}.json").is_file()]
    if len(todo) < n_shards:
        log(f"zoo: continuing the decoded cache {folder}: {n_shards - len(todo)} of {n_shards} shards already built")
    log(f"zoo: caching {n:,} images of {source.name} at {size} px into {folder} ({n_shards} shards, "
        f"{n * 3 * size * size / 2**30:.2f} GiB)")
    began, done = time.perf_counter(), (n_shards - len(todo)) * per
    for k in todo:
        lo, hi = k * per, min(n, (k + 1) * per)
        tmp = folder / f"shard-{k:05d}.u8.tmp"
        _reserve(tmp, (hi - lo) * 3 * size * size)
        data = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(hi - lo, 3, size, size))
        sizes, broken = [], {}
        try:
            for local, (array, original, reason) in enumerate(_decode_rows(items[lo:hi], size, workers)):
                if reason is None:
                    data[local] = array
                else:
                    broken[str(local)] = reason
                sizes.append([int(original[0]), int(original[1])])
            data.flush()
            del data
        except BaseException:
            del data
            tmp.unlink(missing_ok=True)
            raise
        crc = 0
        with open(tmp, "rb") as fh:
            while chunk := fh.read(16 * 2**20):
                crc = zlib.crc32(chunk, crc)
        os.replace(tmp, folder / f"shard-{k:05d}.u8")
        _write_json(folder / f"shard-{k:05d}.json", {"rows": hi - lo, "crc32": crc, "sizes": sizes, "broken": broken})
        done += hi - lo
        rate = (done - (n_shards - len(todo)) * per) / max(time.perf_counter() - began, 1e-9)
        log(f"zoo: cached {min(done, n):,} / {n:,} images ({100 * min(done, n) / n:.0f} %, {rate:.0f} img/s)"
            + (f"; {len(broken)} unreadable in this shard" if broken else ""))
    state, detail = _state(folder, source, size, fp)
    if state != "complete":
        raise DataError(f"the decoded cache {folder} is {state} after building ({detail}): delete it and build again")
    index, names, shards = detail
    return DecodedCache(folder, index, names, shards)


__all__ = ["DecodedCache", "build", "cache_folder", "cache_root", "find", "fingerprint", "verify"]
