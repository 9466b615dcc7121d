"""--data hf:PATH (a Hugging Face datasets dataset built here with the datasets package) and coco:PATH."""
from __future__ import annotations

import pytest
import torch
from conftest import PHOTOS, expect_error, photo, tiny_spec, zoo_here

from zoo.data import decode_items, load_train_data
from zoo.sources import ImageItem, coco_split, resolve_source
from zoo.errors import DataError

datasets = pytest.importorskip("datasets")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    for i, name in enumerate(PHOTOS + PHOTOS[:2]):
        photo(name, 40 + 2 * i).save(root / f"{i:02d}.png")
    return root


def test_save_to_disk_and_imagefolder_datasets_train_and_decode_like_files(images, tmp_path, one_thread):
    from conftest import train

    files = sorted(images.iterdir())
    ds = datasets.Dataset.from_dict({"label": list(range(len(files))), "picture": [str(p) for p in files]})
    ds = ds.cast_column("picture", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    source = resolve_source(f"hf:{tmp_path / 'saved'}")
    assert len(source.train) + len(source.val) == len(files) and source.fingerprint
    decoded = decode_items(source.train, 40)
    by_index = [int(name.rsplit("/", 1)[1]) for name in decoded.names]
    from_files = decode_items([ImageItem(name=str(p), path=p) for p in files], 40)
    for k, index in enumerate(by_index):  # the dataset's stored bytes decode to the file's pixels
        assert torch.equal(decoded.images[k], from_files.images[index])
    # imagefolder: what load_dataset reads from a plain folder; trained from, streamed (nothing held in memory)
    spec = tiny_spec(None, steps=2, extra_set=["data.in_memory_mb=0", "data.workers=0"],
                     **{"data.source": f"hf:{images}"})
    lines: list[str] = []
    data = load_train_data(spec, log=lines.append)
    assert data.train.how == "streamed from the files" and len(data.train) >= 6
    trainer = train(spec, tmp_path / "run")
    assert trainer.step == 2 and trainer.paths.checkpoint_path(2).is_file()


def test_the_image_column_is_found_or_named(images, tmp_path, capsys):
    ds = datasets.Dataset.from_dict({"a": [str(p) for p in sorted(images.iterdir())][:3], "b": [1, 2, 3]})
    ds.cast_column("a", datasets.Image()).save_to_disk(str(tmp_path / "one"))
    with pytest.raises(DataError, match=r"has no column 'x' \(columns: a, b\)"):
        resolve_source(f"hf:{tmp_path / 'one'}", image_column="x")
    with pytest.raises(DataError, match="holds Value values, not images"):
        resolve_source(f"hf:{tmp_path / 'one'}", image_column="b")
    assert len(resolve_source(f"hf:{tmp_path / 'one'}", image_column="a").train) == 2
    datasets.Dataset.from_dict({"b": [1, 2]}).save_to_disk(str(tmp_path / "none"))
    with pytest.raises(DataError, match="has no image column"):
        resolve_source(f"hf:{tmp_path / 'none'}")


def test_a_hub_name_offline_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = zoo_here(capsys, "train", "--data", "hf:someone/no-such-dataset", "--steps", "1", "--out",
                    str(tmp_path / "run"), "--no-progress")
    expect_error(proc, 2, "Hugging Face Hub cannot be reached", "give a local path")
    assert not (tmp_path / "run").exists()


def test_coco_folder_uses_the_seed_rules(images, tmp_path):
    coco = tmp_path / "coco" / "train2017"
    coco.mkdir(parents=True)
    for i, p in enumerate(sorted(images.iterdir())):
        photo(PHOTOS[i % len(PHOTOS)], 40).convert("RGB").save(coco / f"{i:012d}.jpg")
    (coco / "notes.txt").write_text("not an image")
    source = resolve_source(f"coco:{tmp_path / 'coco'}")
    paths = sorted(str(p) for p in coco.glob("*.jpg"))
    train, val = coco_split(paths, len(paths), round(len(paths) * 0.8))
    assert [i.path for i in source.train] == train and [i.path for i in source.val] == val
    assert len(source.train) == 6 and len(source.val) == 2
    with pytest.raises(DataError, match="is not a folder"):
        resolve_source(f"coco:{tmp_path / 'missing'}")
