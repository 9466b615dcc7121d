"""Corpus: what `zoo colorize`, `zoo eval` and `zoo export` do with hostile outputs, names, devices, sizes and
checkpoints (issue 16). The real `zoo` command (`run_zoo`; a real subprocess where stdout is a full disk), real
files (FIFOs, device nodes, undecodable names), real checkpoints written by hand from a tiny run trained once for
this module."""
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import skimage.data
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from zoo.fileio import has_image_mark
from zoo.runfolder import list_checkpoints, save_checkpoint
from zoo.text import shown

from conftest import FAST, expect_ok, fill, run_zoo, train_tiny, zoo_here


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("model") / "run", steps=2)


@pytest.fixture(scope="module")
def checkpoint(run_dir):
    return list_checkpoints(run_dir / "checkpoints")[-1]


def photo(path, width=40, height=30):
    Image.fromarray(skimage.data.camera()).resize((width, height), Image.BICUBIC).save(path)
    return path


def one_line(proc, rc=2) -> str:
    """The single `zoo: error:` line of a process that exited with ``rc``, with no traceback."""
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), proc.stderr
    return lines[0]


def rewrite(src, dst, change_tensors=None, change_spec=None):
    """Write ``dst``: the checkpoint ``src`` with its tensors and/or its zoo spec changed (zoo metadata kept)."""
    with safe_open(str(src), framework="pt") as fh:
        metadata = dict(fh.metadata())
    tensors = load_file(str(src))
    if change_tensors:
        tensors = change_tensors(tensors)
    if change_spec:
        spec = json.loads(metadata["spec"])
        change_spec(spec)
        metadata["spec"] = json.dumps(spec)
    save_file(tensors, str(dst), metadata=metadata)
    return dst


# ---- 1. outputs that must not be replaced ------------------------------------------------------------

def test_export_never_replaces_a_fifo_a_device_or_a_folder_even_with_force(run_dir, tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    for target, kind in ((fifo, "FIFO"), ("/dev/null", "device node"), (folder, "folder")):
        for force in ((), ("--force",)):
            line = one_line(run_zoo("export", "--model", str(run_dir), "--out", str(target), *force))
            assert f"is a {kind}" in line and str(target) in line
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    assert os.listdir(folder) == ["keep.txt"] and (folder / "keep.txt").read_text() == "mine"


def test_export_refuses_checkpoints_run_folders_and_other_files_unless_forced(run_dir, checkpoint, tmp_path):
    copy = tmp_path / checkpoint.name  # a zoo checkpoint outside any run folder
    copy.write_bytes(checkpoint.read_bytes())
    notes = run_dir / "notes.onnx"  # a file inside the run folder
    notes.write_bytes(b"the user's own file")
    mine = tmp_path / "model.txt"  # a file of another kind
    mine.write_bytes(b"not an ONNX model")
    cases = {checkpoint: "zoo checkpoint", copy: "zoo checkpoint", notes: "inside the zoo run folder",
             mine: "is not an ONNX model"}
    for target, why in cases.items():
        before = target.read_bytes()
        line = one_line(run_zoo("export", "--model", str(copy), "--format", "onnx", "--out", str(target)))
        assert why in line and "--force" in line, line
        assert target.read_bytes() == before  # byte for byte
    run_zoo("export", "--model", str(copy), "--out", str(notes), "--force", check_rc=0)  # the user said so
    assert notes.read_bytes() != b"the user's own file"
    notes.unlink()


def test_a_new_output_file_inside_a_run_folder_is_refused_unless_forced(run_dir, tmp_path, capsys):
    """Only zoo train writes in a run folder: `zoo plot --out RUN/curves.png` of another run, or an export into
    RUN/checkpoints/, would be taken for the run's own files (or be replaced by its trainer)."""
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    (other / "curves.png").unlink(missing_ok=True)
    before = sorted(str(p.relative_to(other)) for p in other.rglob("*"))
    for command in (("plot", str(run_dir), "--out", str(other / "curves.png")),
                    ("plot", str(run_dir), "--out", str(other / "samples" / "mine.png")),
                    ("export", "--model", str(run_dir), "--out", str(other / "checkpoints" / "g.onnx"))):
        line = one_line(zoo_here(capsys, *command))
        assert f"inside the zoo run folder {shown(other)}" in line and "--force" in line, line
    assert sorted(str(p.relative_to(other)) for p in other.rglob("*")) == before  # nothing written
    expect_ok(zoo_here(capsys, "plot", str(run_dir), "--out", str(other / "mine.png"), "--force"))
    assert (other / "mine.png").stat().st_size > 0


def test_export_replaces_only_a_model_zoo_exported(run_dir, tmp_path, capsys):
    theirs = tmp_path / "model.onnx"  # the user's own ONNX model from elsewhere: the right suffix, no zoo metadata
    theirs.write_bytes(b"an ONNX model made by another tool")
    line = one_line(zoo_here(capsys, "export", "--model", str(run_dir), "--out", str(theirs)))
    assert f"--out {shown(theirs)} exists and zoo did not write it (it has no zoo mark)" in line and "--force" in line
    assert theirs.read_bytes() == b"an ONNX model made by another tool"
    ours = tmp_path / "ours.onnx"
    for _ in range(2):  # zoo's own export (zoo-generator metadata) is replaced by the next one
        expect_ok(zoo_here(capsys, "export", "--model", str(run_dir), "--out", str(ours)))


def test_colorize_out_must_be_a_folder_outside_run_folders(run_dir, tmp_path):
    image = photo(tmp_path / "x.png")
    taken = tmp_path / "out.txt"
    taken.write_bytes(b"a file, not a folder")
    line = one_line(run_zoo("colorize", str(image), "--model", str(run_dir), "--out", str(taken)))
    assert "is a file, not a folder" in line and taken.read_bytes() == b"a file, not a folder"
    inside = run_dir / "samples"
    before = sorted(os.listdir(inside))
    line = one_line(run_zoo("colorize", str(image), "--model", str(run_dir), "--out", str(inside)))
    assert "inside the zoo run folder" in line and "--force" in line
    assert sorted(os.listdir(inside)) == before
    proc = run_zoo("colorize", str(image), "--model", str(run_dir), "--out", str(inside), "--force",
                   "--no-progress", check_rc=0)
    assert proc.stdout.split() == [str(inside / "x.png")]
    (inside / "x.png").unlink()


def test_colorize_skips_an_output_that_is_a_fifo_and_does_the_rest(run_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(photos / "a.png")
    photo(photos / "b.png")
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "a.png")
    proc = run_zoo("colorize", str(photos), "--model", str(run_dir), "--out", str(out), "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert stat.S_ISFIFO(os.lstat(out / "a.png").st_mode)
    assert Image.open(out / "b.png").size == (40, 30)
    lines = [ln for ln in proc.stderr.splitlines() if "a.png" in ln and "FIFO" in ln]
    assert len(lines) == 1 and "Traceback" not in proc.stderr


def test_an_existing_image_zoo_did_not_write_is_never_replaced_without_force(run_dir, tmp_path, capsys):
    # the user's a.png next to a.jpg: colorizing a.jpg into that folder would write a.png
    photos = tmp_path / "photos"
    photos.mkdir()
    photo(photos / "a.jpg")
    Image.fromarray(skimage.data.astronaut()).resize((40, 30)).save(photos / "a.png")
    mine = (photos / "a.png").read_bytes()
    proc = zoo_here(capsys, "colorize", str(photos / "a.jpg"), "--model", str(run_dir), "--out", str(photos),
                    "--no-progress")
    assert proc.returncode == 1 and (photos / "a.png").read_bytes() == mine, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith(f"zoo: skipped '{photos / 'a.jpg'}'")]
    assert "exists and zoo did not write it (it has no zoo mark): it is not replaced" in line and "--force" in line
    # zoo's own outputs carry the mark: a rerun into the same folder replaces them (PNG and JPEG)
    out = tmp_path / "out"
    for fmt in ("png", "png", "jpg", "jpg"):
        expect_ok(zoo_here(capsys, "colorize", str(photos / "a.jpg"), "--model", str(run_dir), "--out", str(out),
                           "--format", fmt, "--no-progress"))
    assert has_image_mark(out / "a.png") and has_image_mark(out / "a.jpg")
    expect_ok(zoo_here(capsys, "colorize", str(photos / "a.jpg"), "--model", str(run_dir), "--out", str(photos),
                       "--force", "--no-progress"))
    assert (photos / "a.png").read_bytes() != mine and has_image_mark(photos / "a.png")
    # zoo plot --out the user's photo: refused, the photo byte-identical; its own plot is replaced
    user = tmp_path / "holiday.png"
    Image.fromarray(skimage.data.chelsea()).save(user)
    before = user.read_bytes()
    line = one_line(zoo_here(capsys, "plot", str(run_dir), "--out", str(user)))
    assert f"--out {shown(user)} exists and zoo did not write it" in line and user.read_bytes() == before
    for _ in range(2):
        expect_ok(zoo_here(capsys, "plot", str(run_dir), "--out", str(tmp_path / "curves.png")))


def test_a_merged_board_cannot_inject_markup_or_escapes_into_leaderboard_html_and_md(run_dir, tmp_path, capsys):
    board = tmp_path / "board"
    expect_ok(zoo_here(capsys, "leaderboard", "--runs", str(run_dir), "--out", str(board), "--no-perceptual",
                       "--no-progress"))
    data = json.loads((board / "leaderboard.json").read_text())
    (entry,) = data["entries"]
    old, evil = entry["name"], "x<script>alert(1)</script>\x1b[2J|\nnext"
    entry["name"] = evil
    for row in data["images"]:
        if row["model"] == old:
            row["model"] = evil
    cells = data["samples"]["cells"]
    cells[evil] = ['javascript:alert(2)" onerror="alert(3)' for _ in cells.pop(old)]
    crafted = tmp_path / "crafted.json"
    crafted.write_text(json.dumps(data))
    merged = tmp_path / "merged"
    expect_ok(zoo_here(capsys, "leaderboard", "--merge", str(crafted), "--out", str(merged)))
    page = (merged / "leaderboard.html").read_text()
    assert "<script>alert" not in page and "onerror=" not in page and "javascript:" not in page
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the name is shown, as text
    assert page.count("src=\"data:image/png;base64,") >= len(cells["gray input"])  # real images kept
    md = (merged / "leaderboard.md").read_text()
    assert "<script" not in md and "\x1b" not in md and "x&lt;script>alert(1)&lt;/script>\\x1b[2J\\|\\nnext" in md


def test_a_video_zoo_did_not_write_is_never_replaced_without_force(run_dir, tmp_path, capsys):
    import av
    import numpy as np

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as sink:  # five real frames
        stream = sink.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), 40 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(clip.read_bytes())  # the user's own video of that name
    mine = (out / "clip.mp4").read_bytes()
    proc = zoo_here(capsys, "colorize", str(clip), "--model", str(run_dir), "--out", str(out), "--no-progress")
    assert proc.returncode == 1 and (out / "clip.mp4").read_bytes() == mine, proc.stderr
    assert f"output {shown(out / 'clip.mp4')} exists and zoo did not write it (it has no zoo mark)" in proc.stderr
    fresh = tmp_path / "fresh"
    for _ in range(2):  # zoo's own video (its comment tag) is replaced by a rerun
        expect_ok(zoo_here(capsys, "colorize", str(clip), "--model", str(run_dir), "--out", str(fresh),
                           "--no-progress"))


# ---- 2. names and sizes the OS or libjpeg refuse ------------------------------------------------------

def test_a_jpeg_too_wide_fails_alone_in_one_clear_line_and_long_names_are_written(run_dir, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    long_name = "n" * 251 + ".png"  # 255 bytes, the file-system limit: the output (and its temporary file) too
    photo(photos / long_name)
    photo(photos / "wide.png", width=65_536, height=2)  # 131,072 pixels, but wider than any JPEG
    photo(photos / "fine.png")
    out = tmp_path / "out"
    proc = run_zoo("colorize", str(photos), "--model", str(run_dir), "--out", str(out), "--format", "jpg",
                   "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert sorted(os.listdir(out)) == ["fine.jpg", "n" * 251 + ".jpg"]
    err = proc.stderr
    assert "Traceback" not in err and "Maximum supported image dimension" not in err  # libjpeg's own message
    assert "File name too long" not in err and "broken data stream" not in err
    (wide_line,) = [ln for ln in err.splitlines() if "wide.png" in ln and "failed" not in ln]
    assert "65536x2" in wide_line and "65,500" in wide_line and "--format png" in wide_line
    assert "colorized 2 of 3 images" in err


# ---- 3. names that are not UTF-8, or hold escape sequences -------------------------------------------

def test_undecodable_and_escape_names_are_colorized_and_shown_escaped(run_dir, tmp_path):
    root = os.fsencode(tmp_path)
    folder = root + b"/lat\xe9dir"
    os.mkdir(folder)
    photo(os.fsdecode(folder + b"/lat\xe9.png"))
    photo(os.fsdecode(folder + b"/\x1b[2J\x1b[Hx.png"))
    with open(folder + b"/new\nline.png", "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n but broken")
    out = root + b"/out\xe9"
    proc = run_zoo("colorize", os.fsdecode(folder), "--model", os.fsdecode(run_dir), "--out", os.fsdecode(out),
                   "--no-progress")
    assert proc.returncode == 1, proc.stderr  # the broken file only
    assert sorted(os.listdir(out)) == sorted([b"lat\xe9.png", b"\x1b[2J\x1b[Hx.png"])  # the bytes kept
    assert Image.open(os.fsdecode(out + b"/lat\xe9.png")).size == (40, 30)
    for text in (proc.stdout, proc.stderr):
        assert "\x1b" not in text and "\udce9" not in text and "Traceback" not in text
    written = proc.stdout.splitlines()
    assert len(written) == 2
    assert any(line.endswith("out\\xe9/lat\\xe9.png") for line in written)
    assert any(line.endswith("/\\x1b[2J\\x1b[Hx.png") for line in written)
    (skipped,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("zoo: skipped")]
    assert "new\\nline.png" in skipped and "lat\\xe9dir" in skipped


# ---- 4. a device that does not exist -----------------------------------------------------------------

@pytest.mark.parametrize("command", ["colorize", "eval", "export"])
def test_a_bogus_device_is_one_line(run_dir, tmp_path, command):
    args = {"colorize": ["colorize", str(photo(tmp_path / "x.png")), "--model", str(run_dir),
                         "--out", str(tmp_path / "out")],
            "eval": ["eval", str(run_dir)],
            "export": ["export", "--model", str(run_dir), "--out", str(tmp_path / "x.onnx")]}[command]
    line = one_line(run_zoo(*args, "--device", "bogus"))
    assert "'bogus' is not a device" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.onnx").exists()


# ---- 5. NaN weights, NaN outputs ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(checkpoint, tmp_path, value):
    def poison(tensors):
        key = sorted(k for k in tensors if k.startswith("generator.") and tensors[k].is_floating_point())[0]
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[0] = float(value)
        return tensors

    bad = rewrite(checkpoint, tmp_path / "poisoned.safetensors", change_tensors=poison)
    key = sorted(k for k in load_file(str(checkpoint)) if k.startswith("generator."))[0][len("generator."):]
    image = photo(tmp_path / "x.png")
    for args in (("eval", str(bad), "--json"),
                 ("colorize", str(image), "--model", str(bad), "--out", str(tmp_path / "out")),
                 ("export", "--model", str(bad), "--out", str(tmp_path / "x.onnx"))):
        proc = run_zoo(*args)
        line = one_line(proc)
        assert "poisoned.safetensors" in line and repr(key) in line and {"nan": "NaN", "inf": "inf"}[value] in line
        assert proc.stdout == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.onnx").exists()


NAN_WHEN_DARK = """
    import torch
    from torch import nn
    import zoo

    class NanWhenDarkOptions(zoo.Options):
        \"\"\"Colours from one conv, and NaN wherever L* is below 25.\"\"\"

    class NanWhenDark(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, L):
            return torch.tanh(self.conv(L)) + 0 * torch.log(L.float() + 0.5)  # log of a negative number: NaN

    @zoo.hookimpl
    def register_generators(register):
        register("nan_when_dark", lambda options, context: NanWhenDark(), NanWhenDarkOptions)
    """


def plugin_checkpoint(code, name, run_dir, folder):
    """A checkpoint of generator ``name`` built from the plugin's own code, with the run's spec otherwise."""
    namespace: dict = {}
    exec(textwrap.dedent(code), namespace)
    built = {}
    namespace["register_generators"](lambda n, build, options: built.update({n: (build, options)}))
    build, options = built[name]
    spec = json.loads((run_dir / "spec.json").read_text())
    spec["generator"] = {"name": name, "options": {}}
    return save_checkpoint(folder, 1, json.dumps(spec), build(options(), None), None, None)


def test_non_finite_outputs_are_not_written_and_the_batch_goes_on(run_dir, tmp_path, plugin_dist):
    env = plugin_dist("nanplug", {"nan_when_dark": NAN_WHEN_DARK}, {"nan_when_dark": "nan_when_dark"})
    ckpt = plugin_checkpoint(NAN_WHEN_DARK, "nan_when_dark", run_dir, tmp_path / "ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("L", (40, 30), 0).save(photos / "black.png")
    Image.new("L", (40, 30), 255).save(photos / "white.png")
    out = tmp_path / "out"
    proc = run_zoo("colorize", str(photos), "--model", str(ckpt), "--out", str(out), "--no-progress", env=env)
    assert proc.returncode == 1, proc.stderr
    assert os.listdir(out) == ["white.png"]
    (line,) = [ln for ln in proc.stderr.splitlines() if "black.png" in ln and "failed" not in ln]
    assert "NaN" in line and "not written" in line
    line = one_line(run_zoo("eval", str(ckpt), "--json", env=env))  # the embedded photos all have dark pixels
    assert "NaN" in line and "step-000001.safetensors" in line


# ---- 6. sizes memory cannot hold ---------------------------------------------------------------------

def test_a_huge_size_blames_memory_not_the_size_multiple(run_dir, tmp_path):
    from zoo.image_file import pixel_limit# the same limit as for the images zoo reads

    image = photo(tmp_path / "x.png")
    for args in (("colorize", str(image), "--model", str(run_dir), "--out", str(tmp_path / "out")),
                 ("export", "--model", str(run_dir), "--out", str(tmp_path / "x.onnx"))):
        line = one_line(run_zoo(*args, "--size", "32768"))
        assert "1,073,741,824 pixels" in line and "memory" in line and f"limit of {pixel_limit():,}" in line
        assert "use a multiple" not in line


def test_the_memory_estimate_refuses_what_cannot_fit(run_dir):
    from zoo.inference import Predictor, SizeError, check_size, estimate_memory

    predictor = Predictor.load(run_dir, device="cpu")
    small, big = estimate_memory(predictor, 64), estimate_memory(predictor, 256, batch_size=4)
    assert big == pytest.approx(small * 16 * 4, rel=0.01)  # it scales with the pixels and the batch
    with pytest.raises(SizeError, match=r"needs at least .* GiB of memory .* are free: memory, not the size"):
        check_size(predictor, 256, batch_size=4, available=big // 2)
    check_size(predictor, 256, batch_size=4, available=big * 2)  # enough: it runs


# ---- 7. specs this zoo cannot use, disabled plugins --------------------------------------------------

def test_an_unknown_option_in_a_checkpoint_spec_names_the_checkpoint(checkpoint, tmp_path):
    edited = rewrite(checkpoint, tmp_path / "newer-plugin.safetensors",
                     change_spec=lambda spec: spec["generator"]["options"].update(attention_heads=4))
    line = one_line(run_zoo("eval", str(edited)))
    assert "newer-plugin.safetensors" in line and "attention_heads" in line and "unknown key" in line


TINY_CONV = """
    from torch import nn
    import zoo

    class TinyConvOptions(zoo.Options):
        \"\"\"One 3x3 conv.\"\"\"

    @zoo.hookimpl
    def register_generators(register):
        register("tiny_conv", lambda options, context: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh()),
                 TinyConvOptions)
    """


def test_a_component_of_a_disabled_plugin_says_so(run_dir, tmp_path, plugin_dist):
    env = plugin_dist("tinyconvplug", {"tiny_conv": TINY_CONV}, {"tiny_conv": "tiny_conv"})
    ckpt = plugin_checkpoint(TINY_CONV, "tiny_conv", run_dir, tmp_path / "ckpt")
    image = photo(tmp_path / "x.png")
    args = ("colorize", str(image), "--model", str(ckpt), "--out", str(tmp_path / "out"), "--no-progress")
    run_zoo(*args, env=env, check_rc=0)
    line = one_line(run_zoo(*args, env={**env, "ZOO_DISABLE_PLUGINS": "tinyconvplug"}))
    assert "'tiny_conv'" in line and "disabled by ZOO_DISABLE_PLUGINS" in line and "'tinyconvplug'" in line
    assert "not installed" not in line


# ---- 8. weights that do not fit the spec -------------------------------------------------------------

def test_weights_that_do_not_fit_say_what_does_not_fit(checkpoint, tmp_path):
    wider = rewrite(checkpoint, tmp_path / "wider.safetensors",
                    change_spec=lambda spec: spec["generator"]["options"].update(ngf=16))
    foreign = rewrite(checkpoint, tmp_path / "foreign.safetensors", change_tensors=lambda tensors: {
        (k.replace("generator.", "generator.net.") if k.startswith("generator.") else k): v
        for k, v in tensors.items()})
    n_gen = sum(k.startswith("generator.") for k in load_file(str(checkpoint)))
    image = photo(tmp_path / "x.png")
    line = one_line(run_zoo("colorize", str(image), "--model", str(wider), "--out", str(tmp_path / "out")))
    assert "wider.safetensors" in line and "weights do not fit" in line and "shape mismatches ('0.weight'" in line
    line = one_line(run_zoo("eval", str(foreign)))
    assert "foreign.safetensors" in line and f"{n_gen} missing keys ('" in line
    assert f"{n_gen} unexpected keys ('net." in line
    for text in (line,):
        assert "Error(s) in loading state_dict" not in text


# ---- 9. issue 16, round 3: names that are not UTF-8 where libraries take only str; a full disk ---------------

def test_an_export_and_a_board_whose_names_are_not_utf8_are_written(run_dir, tmp_path, capsys):
    root = os.fsencode(tmp_path)
    onnx_out = os.fsdecode(root + b"/ex\xe9.onnx")  # the ONNX exporter takes str paths only
    proc = zoo_here(capsys, "export", "--model", str(run_dir), "--out", onnx_out)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "TypeError" not in proc.stderr, proc.stderr
    assert os.path.getsize(onnx_out) > 0 and "ex\\xe9.onnx" in proc.stderr
    run = os.fsdecode(root + b"/run\xe9")  # its name is drawn on the board's chart and written into its pages
    shutil.copytree(run_dir, run)
    board = os.fsdecode(root + b"/board\xe9")
    proc = subprocess.run([sys.executable, "-m", "zoo", "leaderboard", "--runs", run, "--out", board,
                           "--no-perceptual", "--no-progress"], capture_output=True, env={**os.environ, **FAST})
    stderr = proc.stderr.decode()  # zoo's messages are printable text
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    assert proc.stdout == os.fsencode(board) + b"\n"  # the folder's own bytes, for scripts
    assert "\\udc" not in stderr and "board\\xe9" in stderr  # the log line shows the byte as \xe9
    markdown = (Path(board) / "leaderboard.md").read_text(encoding="utf-8")  # valid UTF-8
    assert "run\\xe9" in markdown


def test_a_full_disk_is_one_line_for_export_plot_board_and_stdout(run_dir, tmp_path, small_disk, capsys):
    fill(small_disk)
    cases = {"export": ["export", "--model", str(run_dir), "--out", str(small_disk / "m.onnx")],
             "plot": ["plot", str(run_dir), "--out", str(small_disk / "curves.png")],
             "leaderboard": ["leaderboard", "--runs", str(run_dir), "--out", str(small_disk / "board"),
                             "--no-perceptual", "--no-progress"]}
    for name, args in cases.items():
        line = one_line(zoo_here(capsys, *args))
        assert "No space left on device" in line and "free disk space" in line, (name, line)
        assert str(small_disk) in line, (name, line)  # the file that could not be written is named
    assert sorted(os.listdir(small_disk)) == ["board", "filler"]
    assert os.listdir(small_disk / "board") == [".zoo-board.lock"]  # only zoo's lock: no marker, no board file
    with open(small_disk / "eval.json", "w") as stdout:  # `zoo list > FILE` on a full disk
        proc = subprocess.run([sys.executable, "-m", "zoo", "list"], stdout=stdout, stderr=subprocess.PIPE, text=True)
    line = one_line(proc)
    assert "No space left on device" in line
