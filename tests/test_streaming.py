"""The streamed loader: one code path for in-memory, streamed and cached sets; workers, per-rank shares, resume."""
from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from conftest import PHOTOS, assert_same_tensors, photo, tiny_spec, train

from zoo.batches import Batches
from zoo.data import decode_items, load_train_data
from zoo.sources import resolve_source
from zoo.distributed import World
from zoo.loader import DecodeStore, RowsDataset, TrainImages
from zoo.runtime import Runtime
from zoo.schedule import Schedule


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve real photos (crops of six, so the files differ), 48 px."""
    root = tmp_path_factory.mktemp("stream")
    for i, name in enumerate(PHOTOS):
        big = photo(name, None)
        for j, box in enumerate(((0, 0, 200, 200), (40, 20, 260, 240))):
            big.crop(box).resize((48, 48)).save(root / f"{name}-{j}.png")
    return root


def streamed(spec):
    return spec.model_copy(update={"data": spec.data.model_copy(update={"in_memory_mb": 0})})


def with_workers(spec, workers):
    return spec.model_copy(update={"data": spec.data.model_copy(update={"workers": workers})})


def test_scan_is_reported_with_a_count_and_small_sets_stay_in_memory(folder):
    lines = []
    data = load_train_data(tiny_spec(folder), log=lines.append)
    assert data.train.how == "in memory" and data.train.images is not None
    assert any(line.startswith(f"zoo: listed 12 images of {folder} in ") for line in lines), lines
    lines = []
    data = load_train_data(streamed(tiny_spec(folder)), log=lines.append)
    assert data.train.how == "streamed from the files" and data.train.images is None
    assert len(data.train) + len(data.source.val) == 12 and len(data.val) == len(data.source.val)


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_equal_in_memory_batches_and_ranks_read_only_their_share(folder, workers):
    spec = tiny_spec(folder, steps=6)
    memory = load_train_data(spec, log=lambda line: None)
    stream = load_train_data(with_workers(streamed(spec), workers), log=lambda line: None)
    assert stream.train.names == memory.train.names
    schedule = Schedule.from_spec(spec, len(memory.train))
    runtime = Runtime.resolve(torch.device("cpu"), "fp32")
    one = Batches(spec, memory.train, schedule, runtime)
    ranks = [Batches(with_workers(streamed(spec), workers), stream.train, schedule, runtime, World(r, 2))
             for r in range(2)]
    for step in (0, 1, 2, 5, 3):  # out of order too: the loader restarts at the step asked for
        L, ab = one(step)
        parts = [b(step) for b in ranks]
        assert all(p[0].shape[0] == 2 for p in parts)  # each rank holds half the global batch of 4
        assert torch.equal(torch.cat([p[0] for p in parts]), L) and torch.equal(torch.cat([p[1] for p in parts]), ab)
        # and a rank only read its own rows: its uint8 rows are exactly its block of the global batch
        rows = schedule.rows(step)
        assert torch.equal(ranks[1].rows(step), memory.train.images[rows[2:]])


def test_a_file_unreadable_mid_epoch_is_replaced_by_the_next_readable_row_and_named(folder, tmp_path):
    for path in sorted(folder.iterdir())[:4]:
        (tmp_path / path.name).write_bytes(path.read_bytes())
    source = resolve_source(str(tmp_path))
    items = sorted(source.train + source.val, key=lambda item: item.name)
    (tmp_path / os.path.basename(items[1].name)).write_bytes(b"not an image any more")  # after the scan
    dataset = RowsDataset(TrainImages([i.name for i in items], DecodeStore(items, 32), 32, "streamed"))
    x, note = dataset[1]
    assert note[0] == items[1].name and "not an image" in note[1] and note[2] == items[2].name
    assert torch.equal(x, decode_items([items[2]], 32).images[0])
    assert dataset[0][1] is None


def test_streamed_training_with_workers_is_bit_identical_to_in_memory_and_after_a_resume(folder, tmp_path,
                                                                                       one_thread):
    from zoo.engine import Trainer

    spec = tiny_spec(folder, steps=3)
    reference = train(spec, tmp_path / "memory").paths.checkpoint_path(3)
    fast = with_workers(streamed(spec), 2)
    first = Trainer.create(fast.model_copy(update={"steps": 2}), run_dir=tmp_path / "stream", progress=False,
                           log=lambda line: None)
    first.fit()
    resumed = Trainer.resume(tmp_path / "stream", steps=3, progress=False, log=lambda line: None)
    resumed.fit()
    assert_same_tensors(resumed.paths.checkpoint_path(3), reference)


def test_a_worker_that_dies_stops_the_run_with_a_checkpoint_that_resumes(folder, tmp_path, one_thread):
    from zoo.engine import Trainer, TrainingStopped

    spec = with_workers(streamed(tiny_spec(folder, steps=2)), 1)
    trainer = Trainer.create(spec, run_dir=tmp_path / "run", progress=False, log=lambda line: None)
    trainer.batches(0)  # starts the worker process
    (worker,) = trainer.batches._iter._workers
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(10)
    time.sleep(0.2)
    with pytest.raises(TrainingStopped) as stopped:
        trainer.fit()
    message = str(stopped.value)
    assert "a data loader worker process died" in message and "continue with: zoo train --resume" in message
    assert "\n" not in message
    assert [p.name for p in trainer.paths.list_checkpoints()] == ["step-000000.safetensors"]
    resumed = Trainer.resume(tmp_path / "run", progress=False, log=lambda line: None)
    resumed.fit()
    assert resumed.step == 2
