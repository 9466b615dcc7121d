"""The persistent decoded cache: `zoo data cache`, used when complete and current, refused when stale or damaged."""
from __future__ import annotations

import os

import pytest
import torch
from conftest import FAST, PHOTOS, expect_error, expect_ok, photo, run_zoo, tiny_spec, zoo_here

from zoo import datacache
from zoo.batches import Batches
from zoo.data import decode_items, load_train_data
from zoo.sources import resolve_source
from zoo.runtime import Runtime
from zoo.schedule import Schedule


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """Eight real 48 px photos and one file that is not an image; ZOO_CACHE_DIR in tmp_path."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "data"
    root.mkdir()
    for i, name in enumerate(PHOTOS + PHOTOS[:2]):
        photo(name, 48 + 4 * i).save(root / f"{i:02d}-{name}.png")
    (root / "99-broken.png").write_bytes(b"this is not a png")
    return root


def listing(root):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def build(capsys, root, size=40, *extra):
    """`zoo data cache` in this process (the real command; the first test runs it as a subprocess too)."""
    return zoo_here(capsys, "data", "cache", str(root), "--size", str(size), "--shard-images", "3", "--workers", "0",
                    *extra)


def test_cache_is_built_outside_the_data_and_gives_the_same_pixels_as_decoding(folder, tmp_path, capsys):
    before = listing(folder)
    proc = run_zoo("data", "cache", str(folder), "--size", "40", "--shard-images", "3", "--workers", "1", "--verify",
                   env={**FAST, "ZOO_CACHE_DIR": os.environ["ZOO_CACHE_DIR"]})
    expect_ok(proc)
    assert listing(folder) == before  # nothing written into the user's data folder
    assert "zoo: cached 9 / 9 images (100 %" in proc.stderr and "verified 3 shards" in proc.stderr
    cache_dir = datacache.cache_folder(resolve_source(str(folder)), 40)
    assert proc.stdout.strip() == str(cache_dir) and cache_dir.parent == tmp_path / "cache"
    assert sorted(p.name for p in cache_dir.iterdir()) == [".zoo.lock", "index.json", "names.json"] + [
        f"shard-{k:05d}.{ext}" for k in range(3) for ext in ("json", "u8")]

    spec = tiny_spec(folder)  # load_size 40
    lines: list[str] = []
    cached = load_train_data(spec, log=lines.append)
    assert any(line.startswith(f"zoo: using the decoded cache {cache_dir}") for line in lines), lines
    direct = decode_items(cached.source.train, 40, allow_none=True)
    assert cached.train.names == direct.names and torch.equal(cached.train.images, direct.images)
    assert [n for n, _ in cached.train.skipped] == [n for n, _ in direct.skipped]  # the broken file, by name
    assert cached.train.upscaled == direct.upscaled

    # streamed from the cache: the same batches as in memory
    stream_spec = spec.model_copy(update={"data": spec.data.model_copy(update={"in_memory_mb": 0, "workers": 0})})
    streamed = load_train_data(stream_spec, log=lambda line: None)
    assert streamed.train.how.startswith("read from the decoded cache")
    runtime = Runtime.resolve(torch.device("cpu"), "fp32")
    n = len(streamed.train)
    from zoo.loader import DecodeStore, TrainImages

    files = TrainImages(streamed.train.names, DecodeStore(streamed.source.train, 40), 40, "streamed")
    schedule = Schedule.from_spec(spec, n)
    a, b = Batches(stream_spec, streamed.train, schedule, runtime), Batches(stream_spec, files, schedule, runtime)
    for step in range(3):
        assert torch.equal(a.rows(step), b.rows(step))

    again = build(capsys, folder, 40)
    expect_ok(again)
    assert "is complete and current" in again.stderr


def test_a_changed_folder_is_refused_in_one_line_then_rebuilt(folder, capsys):
    expect_ok(build(capsys, folder))
    photo("coffee", 60).save(folder / "00-astronaut.png")  # same name, other content
    lines: list[str] = []
    data = load_train_data(tiny_spec(folder), log=lines.append)
    stale = [line for line in lines if "decoded cache" in line]
    assert len(stale) == 1 and "is stale" in stale[0] and "not used, decoding from the files" in stale[0]
    assert f"zoo data cache {folder} --size 40" in stale[0]
    assert "00-astronaut.png" in " ".join(data.train.names + data.val.names)
    proc = build(capsys, folder)
    expect_ok(proc)
    assert "is stale" in proc.stderr and "rebuilding it" in proc.stderr
    lines.clear()
    load_train_data(tiny_spec(folder), log=lines.append)
    assert any(line.startswith("zoo: using the decoded cache") for line in lines)


def test_a_partial_cache_is_not_used_and_the_build_continues(folder, capsys):
    expect_ok(build(capsys, folder))
    cache_dir = datacache.cache_folder(resolve_source(str(folder)), 40)
    kept = (cache_dir / "shard-00000.u8").stat().st_mtime_ns
    (cache_dir / "shard-00002.json").unlink()  # as if Ctrl-C came during the last shard
    lines: list[str] = []
    load_train_data(tiny_spec(folder), log=lines.append)
    assert any("is incomplete (2 of 3 shards built): not used" in line and "finish it with" in line for line in lines)
    proc = build(capsys, folder)
    expect_ok(proc)
    assert "2 of 3 shards already built" in proc.stderr and "zoo: cached 9 / 9 images" in proc.stderr
    assert (cache_dir / "shard-00000.u8").stat().st_mtime_ns == kept  # finished shards are not redone


def test_a_damaged_cache_or_another_size_is_never_used(folder, capsys):
    expect_ok(build(capsys, folder))
    cache_dir = datacache.cache_folder(resolve_source(str(folder)), 40)
    with open(cache_dir / "shard-00001.u8", "r+b") as fh:
        fh.truncate(100)
    lines: list[str] = []
    load_train_data(tiny_spec(folder), log=lines.append)
    assert any("is damaged (shard-00001.u8 is missing, truncated" in line for line in lines), lines
    other = tiny_spec(folder, extra_set=["data.load_size=48"])
    lines.clear()
    load_train_data(other, log=lines.append)
    assert not any("decoded cache" in line for line in lines)  # no cache at 48 px: decoded from the files, quietly
    # --verify finds flipped bytes that keep the size
    expect_ok(build(capsys, folder))
    with open(cache_dir / "shard-00002.u8", "r+b") as fh:
        fh.seek(10)
        fh.write(b"\xff\x00\xff")
    expect_error(build(capsys, folder, 40, "--verify"), 2, "is damaged (shard-00002.u8 fail", "run the same command again")
    expect_ok(build(capsys, folder, 40, "--verify"))  # the bad shard was dropped and is rebuilt


def test_cache_command_errors_are_one_line(folder, capsys, tmp_path):
    expect_error(zoo_here(capsys, "data", "cache", "embedded", "--size", "40"), 2, "embedded photos need no cache")
    expect_error(zoo_here(capsys, "data", "cache", str(tmp_path / "nope"), "--size", "40"), 2, "is not a folder")
    expect_error(zoo_here(capsys, "data", "cache", str(folder), "--size", "3"), 2, "--size 3 is out of range")
    assert not (tmp_path / "cache").exists()  # nothing was made
    assert datacache.cache_root() == tmp_path / "cache"  # the cache root comes from ZOO_CACHE_DIR
