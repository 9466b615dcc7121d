"""zoo.data on real files written to tmp_path (no mocks)."""
import os
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data import EpochBatches, augment_batch, batches_for_epoch, decode_items, describe_skipped
from zoo.image_file import UnreadableImage, load_rgb
from zoo.sources import resolve_source
from zoo.errors import DataError

from conftest import bomb_png, truncate


def pattern(h=24, w=32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, array=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pattern() if array is None else array).save(path, **kwargs)
    return path


# ----------------------------------------------------------------------------------------------------
# load_rgb: modes


def test_grayscale_is_replicated(tmp_path):
    gray = pattern()[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    img = load_rgb(tmp_path / "g.png")
    assert img.mode == "RGB" and img.size == (32, 24)
    for c in range(3):
        assert np.array_equal(np.asarray(img)[..., c], gray)


def test_palette_with_transparency_goes_over_white(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 1
    img.save(tmp_path / "p.png", transparency=1)
    rgb = np.asarray(load_rgb(tmp_path / "p.png"))
    assert tuple(rgb[0, 0]) == (255, 255, 255)  # transparent index
    assert tuple(rgb[1, 1]) == (255, 0, 0)


def test_rgba_and_la_composite_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 0  # top half fully transparent
    rgba[2:, :, 3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[3, 3]) == (200, 0, 0)

    Image.fromarray(rgba[..., [0, 3]], mode="LA").save(tmp_path / "la.png")
    out = np.asarray(load_rgb(tmp_path / "la.png"))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[3, 3]) == (200, 200, 200)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    out = np.asarray(load_rgb(tmp_path / "c.jpg")).astype(int)
    assert out.shape == (8, 8, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60 and out[..., 2].mean() < 60  # red


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32768], [65535, 257 * 100]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "16.png")
    with Image.open(tmp_path / "16.png") as raw:
        assert raw.mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "16.png"))[..., 0]
    assert out[0, 0] == 0 and out[1, 0] == 255 and out[1, 1] == 100
    assert abs(int(out[0, 1]) - 128) <= 1


def test_float_image_in_unit_range(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), mode="F").save(tmp_path / "f.tif")
    out = np.asarray(load_rgb(tmp_path / "f.tif"))[..., 0]
    assert out.tolist() == [[0, 128], [255, 64]]


def test_bilevel(tmp_path):
    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "b.png")
    out = np.asarray(load_rgb(tmp_path / "b.png"))
    assert out[0, 0].tolist() == [255] * 3 and out[0, 1].tolist() == [0] * 3


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(pattern(h=20, w=40))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "rot.jpg", exif=exif)
    out = load_rgb(tmp_path / "rot.jpg")
    assert out.size == (20, 40)


# ----------------------------------------------------------------------------------------------------
# load_rgb: unreadable files


def broken_files(folder):
    """name -> expected words in the reason."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a picture\n")
    (folder / "page.png").write_text("<!DOCTYPE html><html><body>404</body></html>")
    truncate(save(folder / "cut.jpg", pattern(64, 64)))
    truncate(save(folder / "cut.png", pattern(64, 64)))
    bomb_png(folder / "bomb.png")
    return {
        "empty.jpg": "empty",
        "notes.jpg": "not an image",
        "page.png": "not an image",
        "cut.jpg": "truncated",
        "cut.png": "truncated",
        "bomb.png": "too large",
    }


def test_broken_files_raise_unreadable_with_reason(tmp_path):
    for name, words in broken_files(tmp_path).items():
        with pytest.raises(UnreadableImage) as info:
            load_rgb(tmp_path / name)
        assert words in info.value.reason, (name, info.value.reason)
        assert isinstance(info.value, DataError) and "\n" not in str(info.value)
    assert (tmp_path / "bomb.png").stat().st_size < 200


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImage, match="file not found"):
        load_rgb(tmp_path / "nope.jpg")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path):
    path = save(tmp_path / "secret.png")
    path.chmod(0)
    try:
        with pytest.raises(UnreadableImage, match="permission denied"):
            load_rgb(path)
    finally:
        path.chmod(0o644)


# ----------------------------------------------------------------------------------------------------
# Sources


def test_embedded_split():
    source = resolve_source("embedded")
    train, val = [i.name for i in source.train], [i.name for i in source.val]
    assert len(train) == 7 and len(val) == 2
    assert not set(train) & set(val)
    assert set(val) == {"skimage:coffee", "matplotlib:grace_hopper.jpg"}
    motorcycles = {"skimage:motorcycle_left", "skimage:motorcycle_right"}
    assert motorcycles <= set(train) or motorcycles <= set(val)
    assert resolve_source().name == "embedded"


def test_embedded_images_decode():
    source = resolve_source("embedded")
    decoded = decode_items(source.train + source.val, load_size=16)
    assert decoded.images.shape == (9, 3, 16, 16) and decoded.images.dtype == torch.uint8
    assert decoded.skipped == []
    assert decoded.images.float().std() > 10  # real photos, not blank frames


def make_folder(root, n=10):
    names = []
    for i in range(n):
        sub = root / ("a" if i % 2 else "b") / ("deep" if i % 3 == 0 else "")
        ext = [".png", ".JPG", ".jpeg", ".bmp", ".TIFF"][i % 5]
        path = save(sub / f"img{i}{ext}", pattern(seed=i))
        names.append(str(path))
    (root / "readme.txt").write_text("not listed")
    return sorted(names)


def test_folder_source_recursive_and_deterministic(tmp_path):
    names = make_folder(tmp_path)
    source = resolve_source(str(tmp_path), seed=1)
    train, val = [i.name for i in source.train], [i.name for i in source.val]
    assert sorted(train + val) == names
    assert len(val) == 2 and not set(train) & set(val)
    assert not source.val_is_train
    again = resolve_source(str(tmp_path), seed=1)
    assert [i.name for i in again.val] == val
    others = {tuple(i.name for i in resolve_source(str(tmp_path), seed=s).val) for s in range(2, 8)}
    assert len(others | {tuple(val)}) > 1  # the seed matters


def test_folder_with_train_and_val_subfolders(tmp_path):
    save(tmp_path / "train" / "x" / "1.png")
    save(tmp_path / "train" / "2.jpg")
    save(tmp_path / "val" / "3.png")
    source = resolve_source(str(tmp_path))
    assert [os.path.basename(i.name) for i in source.train] == ["2.jpg", "1.png"]
    assert [os.path.basename(i.name) for i in source.val] == ["3.png"]


def test_small_folders(tmp_path):
    one = tmp_path / "one"
    save(one / "only.png")
    source = resolve_source(str(one))
    assert source.val_is_train and source.train == source.val and len(source.train) == 1

    two = tmp_path / "two"
    save(two / "a.png")
    save(two / "b.png")
    source = resolve_source(str(two), val_fraction=0.0)
    assert len(source.train) == 1 and len(source.val) == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(DataError, match="no images"):
        resolve_source(str(empty))


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_does_not_hang(tmp_path):
    names = make_folder(tmp_path, n=4)
    os.symlink(tmp_path, tmp_path / "a" / "loop")
    os.symlink(tmp_path / "a", tmp_path / "b" / "to_a")
    result = []
    worker = threading.Thread(target=lambda: result.append(resolve_source(str(tmp_path))), daemon=True)
    worker.start()
    worker.join(10)
    assert result, "resolve_source did not finish within 10 s"
    listed = [i.name for i in result[0].train + result[0].val]
    assert len(listed) == len(names)
    assert result[0].skipped  # the loop is reported


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not a folder, not a file list .* not one of: embedded, coco-sample"):
        resolve_source("imagenet")
    with pytest.raises(DataError, match="not a folder"):
        resolve_source(str(save(tmp_path / "file.png")))


@pytest.fixture
def empty_fastai_home(tmp_path, monkeypatch):
    from fastai.data.external import fastai_cfg

    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai_home"))
    fastai_cfg.cache_clear()  # fastai reads FASTAI_HOME once and caches the config
    yield
    monkeypatch.undo()
    fastai_cfg.cache_clear()


def test_coco_sample_offline_is_a_quick_data_error(empty_fastai_home):
    from fastai.data.external import URLs

    from zoo.sources import reachable

    if reachable(URLs.COCO_SAMPLE, timeout=2) is None:
        pytest.skip("the COCO_SAMPLE host is reachable: this test only covers the offline path")
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        resolve_source("coco-sample")
    assert time.monotonic() - start < 15
    message = str(info.value)
    assert message.startswith("coco-sample needs a one-time download") and "\n" not in message
    assert "fastai_home" in message and "--data embedded" in message


# ----------------------------------------------------------------------------------------------------
# Decoding


def test_decode_items_skips_broken_files_and_keeps_order(tmp_path):
    expected = broken_files(tmp_path / "data")
    good = [save(tmp_path / "data" / f"good{i}.png", pattern(seed=i)) for i in range(3)]
    source = resolve_source(str(tmp_path / "data"), val_fraction=0.0)
    items = source.train + source.val
    decoded = decode_items(items, load_size=8)
    assert decoded.names == [i.name for i in items if os.path.basename(i.name).startswith("good")]
    assert decoded.images.shape == (3, 3, 8, 8)
    reasons = {os.path.basename(name): reason for name, reason in decoded.skipped}
    assert set(reasons) == set(expected)
    for name, words in expected.items():
        assert words in reasons[name]
    index = decoded.names.index(str(good[1]))
    reference = np.asarray(Image.fromarray(pattern(seed=1)).resize((8, 8), Image.BICUBIC))
    assert np.array_equal(decoded.images[index].permute(1, 2, 0).numpy(), reference)


def test_decode_items_all_broken_is_a_data_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 1 images"):
        decode_items(resolve_source(str(tmp_path)).train, load_size=8)


def test_describe_skipped():
    assert describe_skipped([]) == ""
    assert (
        describe_skipped([("/d/a.jpg", "truncated file"), ("b.png", "not an image")])
        == "skipped 2 unreadable images: a.jpg (truncated file), b.png (not an image)"
    )
    line = describe_skipped([(f"{i}.png", "empty file") for i in range(5)], limit=2)
    assert line == "skipped 5 unreadable images: 0.png (empty file), 1.png (empty file), and 3 more"


# ----------------------------------------------------------------------------------------------------
# Augmentation and batching


def batch(b=16, size=40):
    return torch.from_numpy(np.stack([pattern(size, size, seed=i) for i in range(b)])).permute(0, 3, 1, 2).contiguous()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_augment_is_deterministic_per_generator_seed():
    images = batch()
    a = augment_batch(images, 32, gen(0), flip=True, crop=True)
    b = augment_batch(images, 32, gen(0), flip=True, crop=True)
    c = augment_batch(images, 32, gen(1), flip=True, crop=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_flip_flips_some_samples_and_keeps_the_others():
    images = batch(size=16)
    out = augment_batch(images, 16, gen(3), flip=True)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)
    assert torch.equal(augment_batch(images, 16, gen(3), flip=False), images)


def test_crop_takes_a_window_per_sample():
    images = batch(b=6, size=40)
    out = augment_batch(images, 32, gen(5), flip=False, crop=True)
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
    offsets = set()
    for o, image in zip(out, images):
        match = [(t, l) for t in range(9) for l in range(9) if torch.equal(image[:, t : t + 32, l : l + 32], o)]
        assert match
        offsets.add(match[0])
    assert len(offsets) > 1
    with pytest.raises(ValueError, match="load_size"):
        augment_batch(images, 48, gen(0), crop=True)


def test_resize_when_not_cropping():
    images = batch(b=2, size=40)
    out = augment_batch(images, 32, gen(0), flip=False)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    flat = batch(b=1, size=40)
    flat[:] = 77
    assert (augment_batch(flat, 32, gen(0), flip=False) == 77).all()


def test_batches_for_epoch():
    batches = batches_for_epoch(10, 4, seed=7, epoch=0)
    assert len(batches) == 2 and all(len(b) == 4 for b in batches)
    assert len(set(batches[0] + batches[1])) == 8
    assert batches == batches_for_epoch(10, 4, seed=7, epoch=0)
    assert batches != batches_for_epoch(10, 4, seed=7, epoch=1)
    assert batches != batches_for_epoch(10, 4, seed=8, epoch=0)

    small = batches_for_epoch(3, 8, seed=7, epoch=2)
    assert len(small) == 1 and len(small[0]) == 8
    assert sorted(small[0][:3]) == [0, 1, 2] and sorted(small[0][3:6]) == [0, 1, 2]
    assert set(small[0]) <= {0, 1, 2}

    sampler = EpochBatches(10, 4, seed=7)
    assert len(sampler) == 2 and sampler.epoch(0) == batches


def test_sklearn_photos_are_read_as_scikit_learn_reads_them():
    """The embedded source reads scikit-learn's sample JPEGs from its package folder (no sklearn import at
    start-up); the pixels are exactly load_sample_image's."""
    from sklearn.datasets import load_sample_image

    from zoo.sources import EMBEDDED_TRAIN, embedded_source

    items = {item.name: item for item in embedded_source().train}
    names = [n for n in EMBEDDED_TRAIN if n.startswith("sklearn:")]
    assert names == ["sklearn:china.jpg", "sklearn:flower.jpg"]
    for name in names:
        assert np.array_equal(np.asarray(items[name].load()), load_sample_image(name.split(":")[1])), name


# ---- file lists ----------------------------------------------------------------------------------------------

def test_a_file_list_names_the_images_of_a_source(tmp_path, photos, tiny_run, capsys):
    """LIST.txt: one path per line (relative to the list, or absolute; non-UTF-8 bytes kept), comments and blank
    lines ignored, a duplicate used once, a missing file skipped at decode with its reason; split by the seeded
    folder rule; `zoo eval --data LIST.txt --split all` scores exactly the listed images, and training reads it."""
    from conftest import tiny_spec, train, zoo_here
    from zoo.sources import file_list_source

    sub = tmp_path / "imgs"
    sub.mkdir()
    odd = os.fsdecode(b"lat\xe9.png")  # a name that is not UTF-8
    for name in ("astronaut", "chelsea", "coffee"):
        (sub / f"{name}.png").write_bytes((photos / f"{name}.png").read_bytes())
    (sub / odd).write_bytes((photos / "rocket.png").read_bytes())
    listing = tmp_path / "test.txt"
    listing.write_bytes(b"# the test set\n\nimgs/astronaut.png\n" + os.fsencode(str(sub / "chelsea.png"))
                        + b"\n  imgs/coffee.png  \nimgs/astronaut.png\nimgs/lat\xe9.png\nimgs/gone.png\n")
    src = resolve_source(str(listing), seed=7, val_fraction=0.25)
    names = sorted(i.name for i in src.train + src.val)
    assert names == sorted(str(sub / n) for n in ("astronaut.png", "chelsea.png", "coffee.png", odd, "gone.png"))
    assert len(src.val) == 1 and src.skipped == [(str(sub / "astronaut.png"), "listed twice (used once)")]
    again = file_list_source(listing, seed=7, val_fraction=0.25)
    assert [i.name for i in again.val] == [i.name for i in src.val]  # seeded: the same split every time
    decoded = decode_items(src.train + src.val, 32)
    assert (str(sub / "gone.png"), "file not found") in decoded.skipped and len(decoded.names) == 4

    proc = zoo_here(capsys, "eval", str(tiny_run), "--data", str(listing), "--split", "all", "--json",
                    "--no-perceptual")
    assert proc.returncode == 0, proc.stderr
    report = __import__("json").loads(proc.stdout)
    scored = {r["image"] for r in report["images"]}
    assert len(scored) == 4 and "gone.png" in proc.stderr and "Traceback" not in proc.stderr
    trainer = train(tiny_spec(data=listing, steps=1), tmp_path / "run")
    assert trainer.step == 1

    for body, words in ((b"", "names no images"), (b"# only a comment\n", "names no images"),
                        (b"\x89PNG\r\n\x1a\n\0\0", "holds binary data")):
        listing.write_bytes(body)
        with pytest.raises(DataError, match=words):
            resolve_source(str(listing))
