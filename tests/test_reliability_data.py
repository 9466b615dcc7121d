"""Reliability corpus, data: every kind of bad image file in a `zoo train --data DIR` folder.

Real files written by PIL (plus a few real photos from skimage.data), the real `zoo` command. Training
skips what cannot be used, says how many and names a few, upscales images smaller than the decoded size
(and says so), and fails with one line only when nothing is usable.
The helpers (expect_error, photos, tiny_spec, ...) live in tests/conftest.py.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.data import decode_items, load_train_data
from zoo.image_file import load_rgb
from zoo.sources import resolve_source
from zoo.errors import DataError

from conftest import (FAST, PHOTOS, bomb_png, expect_error, expect_ok, photo, run_zoo, tiny_args,
                      tiny_spec, truncate, zoo_here)

# ----------------------------------------------------------------------------------------------------
# The corpus


def write_unusable(root: Path) -> dict[str, str]:
    """Files that cannot be used -> words expected in the reason they are skipped."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "empty.jpg").write_bytes(b"")
    photo("astronaut", None).save(root / "cut.jpg")
    photo("chelsea", None).save(root / "cut.png")
    truncate(root / "cut.jpg")
    truncate(root / "cut.png")
    (root / "notes.jpg").write_text("shopping list: eggs, milk\n")
    (root / "page.png").write_text("<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n")
    bomb_png(root / "bomb.png")
    return {"empty.jpg": "empty file", "cut.jpg": "truncated", "cut.png": "truncated", "notes.jpg": "not an image",
            "page.png": "not an image", "bomb.png": "decompression bomb"}


def write_convertible(root: Path) -> dict[str, str]:
    """Files in every mode zoo converts to RGB -> their PIL mode."""
    src = photo("coffee", 64)
    modes = {"gray.png": "L", "palette.png": "P", "rgba.png": "RGBA", "la.png": "LA", "cmyk.jpg": "CMYK"}
    for name, mode in modes.items():
        src.convert(mode).save(root / name)
    sixteen = (np.asarray(src.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(sixteen).save(root / "sixteen.png")
    with Image.open(root / "sixteen.png") as img:
        modes["sixteen.png"] = img.mode  # I;16 or I, depending on Pillow
    upright = photo("rocket", None).crop((0, 0, 200, 120))  # landscape
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # stored portrait, EXIF says: rotate back
    exif = stored.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    stored.save(root / "exif_rotated.jpg", exif=exif, quality=95)
    upright.save(root / "upright_reference.png")
    modes["exif_rotated.jpg"] = "RGB"
    return modes


def write_corpus(root: Path) -> tuple[dict[str, str], set[str]]:
    """The whole corpus in one folder: (unusable name -> reason words, usable names)."""
    root.mkdir(parents=True)
    for name in PHOTOS[:4]:
        photo(name, 64).save(root / f"{name}.jpg")
    unusable = write_unusable(root)
    usable = set(write_convertible(root)) | {"upright_reference.png"} | {f"{n}.jpg" for n in PHOTOS[:4]}
    photo("chelsea", None).resize((1, 1)).save(root / "one_px.png")
    photo("chelsea", None).resize((10, 10)).save(root / "ten_px.png")
    usable |= {"one_px.png", "ten_px.png"}
    locked = root / "locked.png"  # root reads it anyway; test_unreadable_without_permission covers the rest
    photo("astronaut").save(locked)
    locked.chmod(0)
    usable.add("locked.png")
    (root / "nested").mkdir()
    os.symlink(root, root / "nested" / "loop")  # a symlink loop: listed once, reported, never followed twice
    (root / "README.txt").write_text("not an image extension: ignored\n")
    return unusable, usable


# ----------------------------------------------------------------------------------------------------
# Tests


def test_corpus_folder_trains_skipping_and_naming_what_cannot_be_used(tmp_path):
    unusable, usable = write_corpus(tmp_path / "data")
    out = tmp_path / "run"
    proc = run_zoo(*tiny_args(tmp_path / "data", out, 1), env=FAST, timeout=300)
    expect_ok(proc)
    lines = proc.stderr.splitlines()

    skipped = [line for line in lines if line.startswith("zoo: warning: skipped 6 unreadable images: ")]
    assert len(skipped) == 1 and skipped[0].endswith(", and 3 more"), proc.stderr
    shown = [name for name in unusable if f" {name} (" in skipped[0]]
    assert len(shown) == 3, skipped[0]
    for name in shown:  # each named file comes with its own reason
        after = skipped[0].split(f" {name} (", 1)[1]
        assert unusable[name] in after[:100], (name, after)

    folders = [line for line in lines if line.startswith("zoo: warning: skipped 1 folder: ")]
    assert len(folders) == 1 and "loop" in folders[0] and "symlink loop" in folders[0], proc.stderr
    assert "zoo: upscaled 2 images smaller than 40 px to 40x40: one_px.png (1x1), ten_px.png (10x10)" in lines
    counts = [re.search(r"(\d+) train / (\d+) validation images", line) for line in lines]
    n_train, n_val = next(map(int, m.groups()) for m in counts if m)
    assert n_train + n_val == len(usable) and n_val >= 1
    assert (out / "checkpoints" / "step-000001.safetensors").is_file()
    assert len([line for line in lines if "warning" in line]) == 2, proc.stderr  # nothing else went wrong


def test_corpus_every_file_is_used_or_skipped_with_its_reason(tmp_path):
    unusable, usable = write_corpus(tmp_path / "data")
    data = load_train_data(tiny_spec(tmp_path / "data", 1), log=lambda line: None)
    used = {os.path.basename(n) for n in data.train.names + data.val.names}
    assert used == usable
    reasons = {os.path.basename(name): reason for name, reason in data.train.skipped + data.val.skipped}
    assert set(reasons) == set(unusable)
    for name, words in unusable.items():
        assert words in reasons[name], (name, reasons[name])
    assert [os.path.basename(name) for name, _ in data.source.skipped] == ["loop"]
    assert sorted(os.path.basename(n) for n, _ in data.train.upscaled + data.val.upscaled) == ["one_px.png",
                                                                                               "ten_px.png"]


def test_converted_modes_keep_their_content(tmp_path):
    root = tmp_path / "modes"
    root.mkdir()
    modes = write_convertible(root)
    reference = np.asarray(photo("coffee", 64), dtype=float)
    gray = np.asarray(photo("coffee", 64).convert("L"), dtype=float)
    for name in ("gray.png", "la.png", "sixteen.png"):
        out = np.asarray(load_rgb(root / name), dtype=float)
        assert out.shape == (64, 64, 3) and np.abs(out - gray[..., None]).max() <= 1, (name, modes[name])
    for name, tolerance in (("palette.png", 25), ("rgba.png", 0), ("cmyk.jpg", 12)):
        out = np.asarray(load_rgb(root / name), dtype=float)
        assert np.abs(out - reference).mean() <= tolerance, (name, np.abs(out - reference).mean())
    rotated = np.asarray(load_rgb(root / "exif_rotated.jpg"), dtype=float)
    upright = np.asarray(Image.open(root / "upright_reference.png"), dtype=float)
    assert rotated.shape == upright.shape == (120, 200, 3)
    assert np.abs(rotated - upright).mean() < 4  # upright, not merely the right size


def test_folder_of_only_unusable_files_fails_with_one_line(tmp_path):
    unusable = write_unusable(tmp_path / "data")
    proc = run_zoo(*tiny_args(tmp_path / "data", tmp_path / "run", 1), env=FAST)
    line = expect_error(proc, 2, f"none of the {len(unusable)} images in {tmp_path / 'data'} can be used",
                        "and 3 more", "point --data at another folder")
    assert sum(name in line for name in unusable) == 3
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_folder_without_images_fails_with_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "notes.txt").write_text("no pictures here")
    (data / "sub" / "model.ckpt").write_bytes(b"\0" * 10)
    proc = zoo_here(capsys, *tiny_args(data, tmp_path / "run", 1))  # fails before training: in this process
    expect_error(proc, 2, f"no images (jpg, jpeg, png", f"found under {data}", "point --data at a folder")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("broken_side", ["val", "train"])
def test_a_side_with_only_broken_files_borrows_the_other(tmp_path, photos, broken_side):
    root = tmp_path / "data"
    good_side = "train" if broken_side == "val" else "val"
    (root / good_side).mkdir(parents=True)
    for name in PHOTOS[:3]:
        (root / good_side / f"{name}.png").write_bytes((photos / f"{name}.png").read_bytes())
    write_unusable(root / broken_side)
    lines: list[str] = []
    data = load_train_data(tiny_spec(root, 1), log=lines.append)
    assert len(data.train) == len(data.val) == 3
    assert data.train.names == data.val.names and all(f"/{good_side}/" in n for n in data.train.names)
    note = "no usable validation image" if broken_side == "val" else "no usable training image"
    assert any(note in line for line in lines) and any("skipped 6 unreadable images" in line for line in lines)


def test_special_files_named_like_images_do_not_block(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    (tmp_path / "folder.jpg").mkdir()
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    result = {}

    def read_all():
        for name in ("pipe.png", "folder.jpg", "dangling.png"):
            try:
                load_rgb(tmp_path / name)
            except DataError as exc:
                result[name] = exc.reason

    worker = threading.Thread(target=read_all, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO named *.png blocked"
    assert result == {"pipe.png": "not a regular file", "folder.jpg": "not a regular file",
                      "dangling.png": "file not found"}


@contextlib.contextmanager
def unprivileged():
    """Run the block as user `nobody` (effective uid only, restored after) when the tests run as root."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.skipif(not hasattr(os, "seteuid"), reason="needs POSIX permissions")
def test_unreadable_without_permission_is_skipped_and_named(tmp_path, photos):
    # Root reads any file, so as root this drops to `nobody` for the read itself: a real permission check by
    # the kernel. The folder must be reachable by that user, hence a world-readable one outside tmp_path.
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="zoo-perm-"))
    try:
        root.chmod(0o755)
        for name in PHOTOS[:2]:
            path = root / f"{name}.png"
            path.write_bytes((photos / f"{name}.png").read_bytes())
            path.chmod(0o644)
        locked = root / "locked.png"
        locked.write_bytes((photos / "coffee.png").read_bytes())
        locked.chmod(0)
        source = resolve_source(str(root))
        items = source.train + source.val
        with unprivileged():
            decoded = decode_items(items, 32)
        assert sorted(os.path.basename(n) for n in decoded.names) == ["astronaut.png", "chelsea.png"]
        assert [(os.path.basename(n), r) for n, r in decoded.skipped] == [("locked.png", "permission denied")]
    finally:
        for p in root.iterdir():
            p.unlink()
        root.rmdir()


def test_a_second_data_cache_of_one_cache_at_once_is_refused_naming_the_pid(photos, tmp_path, capsys):
    import subprocess
    import sys

    from zoo import datacache

    cache_dir = tmp_path / "cache"
    folder = datacache.cache_folder(resolve_source(str(photos)), 40, cache_dir)
    folder.mkdir(parents=True)
    # a real second process holds the cache's lock, as a `zoo data cache` building it does
    holder = subprocess.Popen([sys.executable, "-c", f"""
import fcntl, os, sys, time
fd = os.open({str(folder / '.zoo.lock')!r}, os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{{os.getpid()}}\\n".encode(), 0)
print("locked", flush=True)
time.sleep(120)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = zoo_here(capsys, "data", "cache", str(photos), "--size", "40", "--cache-dir", str(cache_dir),
                        "--workers", "0")
        expect_error(proc, 2, f"decoded cache '{folder}' is in use by another zoo process (PID {holder.pid})",
                     "nothing was written")
        assert sorted(os.listdir(folder)) == [".zoo.lock"]
    finally:
        holder.kill()
        holder.wait()
    expect_ok(zoo_here(capsys, "data", "cache", str(photos), "--size", "40", "--cache-dir", str(cache_dir),
                       "--workers", "0"))  # the lock went with the process: the build runs


# ---- issue 16, round 3: the decoded cache of a folder whose name is not UTF-8; a cache on a full disk ----------

def test_the_cache_of_a_folder_whose_name_is_not_utf8_is_built(photos, tmp_path):
    data = os.fsdecode(os.fsencode(tmp_path) + b"/lat\xe9dir")
    shutil.copytree(photos, data)
    photo("astronaut").save(os.fsdecode(os.fsencode(data) + b"/im\xe9.png"))  # an image name that is not UTF-8 too
    proc = subprocess.run([sys.executable, "-m", "zoo", "data", "cache", data, "--size", "40", "--cache-dir",
                           str(tmp_path / "cache")], capture_output=True, env={**os.environ, **FAST})
    stderr = proc.stderr.decode()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert "lat\\xe9dir" in stderr and "\\udc" not in stderr and "cached 7 / 7 images" in stderr
    assert Path(os.fsdecode(proc.stdout.rstrip(b"\n"))).is_dir()  # the cache folder's own bytes


def test_a_cache_on_a_full_disk_is_one_line_and_the_same_command_continues(tmp_path, small_disk):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):
        photo("astronaut", 64).rotate(10 * i).save(data / f"a{i}.png")
    cache = small_disk / "cache"
    args = [sys.executable, "-m", "zoo", "data", "cache", str(data), "--size", "64", "--cache-dir", str(cache),
            "--shard-images", "4"]  # two shards of 48 KiB each
    with open(small_disk / "filler", "wb") as fh:  # room for the first shard only
        fh.write(b"\0" * (3 * 2**20 - 100 * 2**10))
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **FAST})
    line = expect_error(proc, 2, "cannot write the decoded cache")  # not a SIGBUS of a memory map (exit -7)
    assert "No space left on device" in line and "the same command continues" in line, line
    (folder,) = cache.iterdir()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # nothing half-written kept
    (small_disk / "filler").unlink()
    proc = subprocess.run([*args, "--verify"], capture_output=True, text=True, env={**os.environ, **FAST})
    assert proc.returncode == 0 and "verified 2 shards" in proc.stderr, proc.stderr
