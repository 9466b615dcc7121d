"""Reliability corpus, hostile-user trial round 4 (issue 16): files of a run or a board that another command reads
back (``losses.jsonl``, ``spec.json``, ``.zoo-board.json``, a board to ``--merge``) damaged or hand-edited into
JSON of the wrong shape; the demo's download names; temporary files of a killed writer.

The real `zoo` command (`run_zoo` / `zoo_here`: its entry point in this process, a `python -m zoo` subprocess where
a kill is the point) on real files. Each failure case: the documented exit code, one `zoo: error:` line, no
traceback, and the user's files unchanged.
"""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import TINY, expect_error, expect_ok, zoo_here

DEEP = "[" * 100_000  # json's decoder recurses once per level: RecursionError, not a JSONDecodeError

TINY_BOARD = ["--gens", "unet", "--disc", "patch", "--budget", "1", "--seeds", "1", "--no-perceptual", *TINY]


@pytest.mark.parametrize("marker, words", [
    ({"runs": [], "probes": {}}, ["runs: Input should be a valid dictionary"]),
    ({"runs": None}, ["runs: Input should be a valid dictionary"]),
    ({"runs": {}, "probes": []}, ["probes: Input should be a valid dictionary"]),
    ({"runs": {"h": {"entry": 1, "checkpoint": "/etc/passwd"}}}, ["runs.h.entry: Input should be a valid string",
                                                                  "and 4 more"]),
    ({"probes": {"k": {"seconds_per_step": "fast"}}}, ["probes.k.seconds_per_step"]),
])
def test_a_board_marker_of_the_wrong_shape_is_one_line(tmp_path, capsys, photos, marker, words):
    """A `.zoo-board.json` that is JSON of the wrong shape (a list for `runs`, wrong types, a checkpoint outside
    the board) is refused before the board reads it; it used to end in an AttributeError/TypeError traceback."""
    board = tmp_path / "board"
    board.mkdir()
    text = json.dumps({"format": "zoo-board/1", **marker})
    (board / ".zoo-board.json").write_text(text)
    proc = zoo_here(capsys, "leaderboard", *TINY_BOARD, "--data", str(photos), "--out", str(board))
    expect_error(proc, 2, "board marker .zoo-board.json is damaged", *words, "move it away")
    assert (board / ".zoo-board.json").read_text() == text
    assert sorted(p.name for p in board.iterdir()) == [".zoo-board.json"]


def test_a_deeply_nested_board_marker_or_merged_board_is_one_line(tmp_path, capsys, tiny_run):
    board = tmp_path / "board"
    board.mkdir()
    (board / ".zoo-board.json").write_text(DEEP)
    proc = zoo_here(capsys, "leaderboard", "--runs", str(tiny_run), "--out", str(board), "--no-perceptual")
    expect_error(proc, 2, "is unreadable (nested too deeply)")
    (tmp_path / "deep.json").write_text(DEEP)
    proc = zoo_here(capsys, "leaderboard", "--merge", str(tmp_path / "deep.json"), "--out", str(tmp_path / "m"))
    expect_error(proc, 2, "not a readable leaderboard.json (nested too deeply)")
    assert not (tmp_path / "m").exists()


def test_a_deeply_nested_spec_json_is_one_line_on_resume(tmp_path, capsys, tiny_run):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "spec.json").write_text(DEEP)
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    proc = zoo_here(capsys, "train", "--resume", str(run))
    expect_error(proc, 2, "spec.json' is corrupt: JSON nested too deeply", "restore it")
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before


def test_losses_jsonl_lines_of_the_wrong_shape_are_skipped_by_zoo_plot(tmp_path, capsys, tiny_run):
    """Lines `zoo plot` cannot use are counted and skipped: a step of 1e400 (OverflowError), a 400-digit number
    (OverflowError in isfinite), a line nested 100,000 deep (RecursionError) used to be tracebacks."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    good = (run / "losses.jsonl").read_text()
    bad = ['{"step": 1e400, "g_gan": 1}', '{"step": 1' + "0" * 400 + ', "g_gan": 1}', '{"step": -3, "g_gan": 1}',
           DEEP, "[1, 2]", "null", '{"step": "x"}', "garbage", '{"step": 3, "g_gan": 1' + "0" * 400 + "}"]
    (run / "losses.jsonl").write_text(good + "\n".join(bad) + "\n")
    proc = zoo_here(capsys, "plot", str(run), "--out", str(tmp_path / "curves.png"))
    expect_ok(proc)
    assert "zoo: warning: skipped 8 corrupt line(s) in losses.jsonl" in proc.stderr
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_a_deeply_nested_cache_index_is_rebuilt(tmp_path, capsys, photos):
    cache = tmp_path / "cache"
    expect_ok(zoo_here(capsys, "data", "cache", str(photos), "--size", "32", "--cache-dir", str(cache)))
    (index,) = cache.rglob("index.json")
    index.write_text(DEEP)
    proc = zoo_here(capsys, "data", "cache", str(photos), "--size", "32", "--cache-dir", str(cache))
    expect_ok(proc)
    assert "is damaged (unreadable index (RecursionError)): rebuilding it" in proc.stdout + proc.stderr
    assert json.loads(index.read_text())["n"] == 6


def test_the_demo_download_name_holds_no_control_characters_from_the_upload(tiny_run, photos):
    """`zoo demo` (its Flask app, driven by Flask's test client in this process): an uploaded file named with ESC,
    a bidi override or a path gets a download name without them; the upload's own error messages show the name
    escaped. The ESC used to go raw into the Content-Disposition header."""
    import io
    from urllib.parse import quote

    from zoo import Colorizer
    from zoo.demo import create_app

    client = create_app([Colorizer.from_checkpoint(str(tiny_run), device="cpu")], ["run"]).test_client()
    photo = (photos / "chelsea.png").read_bytes()
    for name, stem in [("\x1b[2Jx\x07.png", "[2Jx"), ("caf\u00e9\u202egnp.png", "caf\u00e9gnp"),
                       ("..\\..\\evil.png", "evil"), ("\x1b.png", "photo")]:
        reply = client.post("/colorize", data={"model": "0", "photo": (io.BytesIO(photo), name)},
                            content_type="multipart/form-data")
        assert reply.status_code == 200, reply.get_data(as_text=True)
        for url in (reply.get_json()["gray"], reply.get_json()["results"][0]["url"]):
            download = client.get(f"/{url}?download=1")
            assert download.status_code == 200 and download.mimetype == "image/png"
            header = download.headers["Content-Disposition"]
            assert not any(ord(c) < 32 or c in "\x7f\u202e" for c in header), repr(header)
            assert any(f"{q}-" in header for q in (f"={stem}", f"=\"{stem}", f"''{quote(stem)}")), header
    reply = client.post("/colorize", data={"model": "0", "photo": (io.BytesIO(b"not an image"), "\x1b[2Jx.png")},
                        content_type="multipart/form-data")
    assert reply.status_code == 400 and reply.get_json()["error"] == "cannot use '\\x1b[2Jx.png': not an image"


KILLED_WRITER = """
import sys, time
from pathlib import Path
from zoo.fileio import atomic_write

def write(tmp):
    Path(tmp).write_bytes(b"half a file")
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write)
"""


def test_the_temporary_file_of_a_writer_killed_by_sigkill_is_taken_over_by_the_next_write(tmp_path, capsys,
                                                                                        tiny_run):
    """A real process writing an output through zoo's atomic_write (as `zoo export`, `zoo plot`, `zoo colorize`
    and the board do) is killed by SIGKILL mid-write: its temporary file used to stay in the user's folder for
    good. The next write of the same file takes it over (its flock died with the writer) and renames it; a live
    writer's temporary file is left alone, and a symbolic link planted under the temporary name is never written
    through."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "curves.png"
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert [p.name for p in tmp_path.iterdir()] == [".curves.png.zoo.tmp"]
    expect_ok(zoo_here(capsys, "plot", str(tiny_run), "--out", str(out)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    assert out.read_bytes().startswith(b"\x89PNG")

    live = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "other.png")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert live.stdout.readline().strip() == "writing"
        expect_ok(zoo_here(capsys, "plot", str(tiny_run), "--out", str(tmp_path / "other.png")))
        assert (tmp_path / ".other.png.zoo.tmp").read_bytes() == b"half a file"  # the live writer's, untouched
        assert (tmp_path / "other.png").read_bytes().startswith(b"\x89PNG")
    finally:
        live.kill()
        live.wait()

    mine = tmp_path / "mine.txt"
    mine.write_text("my notes")
    os.symlink(mine, tmp_path / ".third.png.zoo.tmp")
    expect_ok(zoo_here(capsys, "plot", str(tiny_run), "--out", str(tmp_path / "third.png")))
    assert mine.read_text() == "my notes" and (tmp_path / "third.png").read_bytes().startswith(b"\x89PNG")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".third.png.") and not p.is_symlink()]


@pytest.mark.parametrize("frames, shade, keep", [(20, 10, 0.3), (20, 10, 0.5), (20, 10, 0.67), (20, 10, 0.9),
                                                  (30, 8, 0.67)])
def test_a_truncated_video_is_one_line_saying_truncated(tmp_path, capsys, tiny_run, frames, shade, keep):
    """MP4s cut short (the moov index is written last): some open with a video stream whose codec never arrived
    (it used to be an AttributeError traceback from codec_context.width), some with one bare data stream (it
    used to say "it has no video stream", sending the user looking for a missing track, not a broken copy)."""
    import av
    import numpy as np

    clip = tmp_path / "clip.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 48, 3), i * shade, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * keep)])
    out = tmp_path / "out"
    proc = zoo_here(capsys, "colorize", str(cut), "--model", str(tiny_run), "--out", str(out), "--no-progress")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("zoo: skipped")]
    assert "truncated" in line and "no video stream" not in line, line
    if (frames, keep) == (30, 0.67):  # this cut opens with one bare data stream
        assert "no video or audio stream can be found in it" in line, line
    assert not out.exists() or not list(out.iterdir())


def test_a_cache_shard_left_half_written_is_rebuilt_by_the_next_run(tmp_path, capsys, photos):
    """What `zoo data cache` killed by SIGKILL mid-shard leaves (the index, a half-written `shard-*.u8.tmp`, no
    shard JSON): the same command continues, rewrites that shard and leaves no temporary file; --verify passes."""
    import os

    cache = tmp_path / "cache"
    expect_ok(zoo_here(capsys, "data", "cache", str(photos), "--size", "32", "--cache-dir", str(cache)))
    (folder,) = [p for p in cache.iterdir() if p.is_dir()]
    (folder / "shard-00000.json").unlink()
    (folder / "shard-00000.u8").unlink()
    (folder / "shard-00000.u8.tmp").write_bytes(os.urandom(100))
    proc = zoo_here(capsys, "data", "cache", str(photos), "--size", "32", "--cache-dir", str(cache), "--verify")
    expect_ok(proc)
    assert "verified 1 shards" in proc.stdout + proc.stderr
    assert not list(folder.glob("*.tmp"))


def test_inputs_whose_outputs_collide_are_all_written_and_nothing_of_the_user_replaced(tmp_path, capsys, tiny_run,
                                                                                      photos):
    """a.jpg + a.png + a-2.png: every input is written once under its own name (a.png, a-2.png, a-2-2.png). A
    renamed output skips a name that holds the user's own file: `OUT/a-2.png` of the user used to make zoo skip
    the input (exit 1, "pass --force", which would have replaced it); now it is written as a-3.png (0)."""
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    Image.open(photos / "rocket.png").save(src / "a.jpg")
    (src / "a.png").write_bytes((photos / "chelsea.png").read_bytes())
    (src / "a-2.png").write_bytes((photos / "coffee.png").read_bytes())
    out = tmp_path / "out"
    proc = zoo_here(capsys, "colorize", *(str(src / n) for n in ("a.jpg", "a.png", "a-2.png")), "--model",
                    str(tiny_run), "--out", str(out), "--no-progress")
    expect_ok(proc)
    assert sorted(p.name for p in out.iterdir()) == ["a-2-2.png", "a-2.png", "a.png"]
    assert len(set(p.read_bytes() for p in out.iterdir())) == 3

    mine_out = tmp_path / "mine"
    mine_out.mkdir()
    (mine_out / "a-2.png").write_bytes((photos / "astronaut.png").read_bytes())
    for _ in range(2):  # a rerun replaces zoo's own a-3.png and still leaves the user's a-2.png alone
        proc = zoo_here(capsys, "colorize", str(src / "a.jpg"), str(src / "a.png"), "--model", str(tiny_run),
                        "--out", str(mine_out), "--no-progress")
        expect_ok(proc)
        assert "writing '" in proc.stdout + proc.stderr and "a-3.png' instead" in proc.stdout + proc.stderr
        assert sorted(p.name for p in mine_out.iterdir()) == ["a-2.png", "a-3.png", "a.png"]
        assert (mine_out / "a-2.png").read_bytes() == (photos / "astronaut.png").read_bytes()


def test_a_marker_probe_without_a_step_time_is_measured_again(tmp_path, capsys, photos):
    """A marker's probe holding only the inference speed (the validated marker allows it) used to be a KeyError
    when its run had to be trained again; now the step time is measured and the board is written."""
    board = tmp_path / "board"
    args = ["leaderboard", *TINY_BOARD, "--data", str(photos), "--out", str(board)]
    expect_ok(zoo_here(capsys, *args))
    marker = json.loads((board / ".zoo-board.json").read_text())
    for probe in marker["probes"].values():
        del probe["seconds_per_step"]
    marker["runs"] = {}
    (board / ".zoo-board.json").write_text(json.dumps(marker))
    expect_ok(zoo_here(capsys, *args))
    again = json.loads((board / ".zoo-board.json").read_text())
    assert all(p["seconds_per_step"] > 0 for p in again["probes"].values()) and len(again["runs"]) == 1


@pytest.mark.parametrize("batch, warned", [(8, True), (2, False)])
def test_a_batch_larger_than_the_training_set_is_warned_once(tmp_path, capsys, photos, batch, warned):
    """Six photos (five train, one val) with --batch-size 8: every batch repeats images. The run still trains
    (a smoke test on a few photos is legitimate) but says so once, naming the numbers and the fix."""
    args = [a for a in TINY]
    args[args.index("--batch-size") + 1] = str(batch)
    proc = zoo_here(capsys, "train", "--data", str(photos), "--steps", "1", "--out", str(tmp_path / "run"), *args)
    expect_ok(proc)
    lines = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines() if "repeats images" in line]
    if warned:
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("zoo: warning: batch size 8 is larger than the ") and "--batch-size" in lines[0]
    else:
        assert lines == []


def test_a_cache_dir_that_is_a_file_the_data_folder_or_a_run_folder_is_refused(tmp_path, capsys, photos, tiny_run):
    """`zoo data cache --cache-dir` writes shards there: never among the photos it caches (the docs promise the
    cache is never inside the data folder), never in a run folder, and a file is said to be a file (it used to
    be "Not a directory: free disk space")."""
    data = tmp_path / "photos"
    shutil.copytree(photos, data)
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    before = {folder: sorted(p.name for p in folder.rglob("*")) for folder in (data, run)}
    cases = {str(data): "is inside the data folder", str(data / "sub"): "is inside the data folder",
             str(run): "is inside the zoo run folder", str(mine): "is a file, not a folder"}
    for cache_dir, words in cases.items():
        proc = zoo_here(capsys, "data", "cache", str(data), "--size", "40", "--cache-dir", cache_dir)
        expect_error(proc, 2, "--cache-dir (or $ZOO_CACHE_DIR)", words)
    assert {folder: sorted(p.name for p in folder.rglob("*")) for folder in (data, run)} == before
    assert mine.read_text() == "mine"
    expect_ok(zoo_here(capsys, "data", "cache", str(data), "--size", "40", "--cache-dir", str(tmp_path / "cache")))


def test_a_symlink_loop_in_a_colorized_folder_is_a_note_and_not_a_failure(tmp_path, capsys, photos, tiny_run):
    """`loop/up -> ..` lists the tree twice: every image is colorized once and the command succeeds (it used to
    count the loop as a failed image: "colorized 6 of 7 images; 1 failed: 'loop'", exit 1)."""
    tree = tmp_path / "tree"
    shutil.copytree(photos, tree / "photos")
    (tree / "photos" / "up").symlink_to("..")
    out = tmp_path / "out"
    proc = zoo_here(capsys, "colorize", str(tree), "--model", str(tiny_run), "--out", str(out), "--no-progress")
    expect_ok(proc)
    n = len(list(photos.iterdir()))
    assert sorted(p.name for p in (out / "photos").iterdir()) == sorted(p.name for p in photos.iterdir())
    assert [line for line in proc.stderr.splitlines() if "already listed" in line] == [
        f"zoo: note: '{tree / 'photos' / 'up'}' is a folder already listed (symlink loop or duplicate link); its "
        f"images are colorized once"]
    assert f"zoo: colorized {n} images into" in proc.stderr


@pytest.mark.parametrize("name, format, words", [
    ("m.pt2", "onnx", "--out 'm.pt2' does not end in .onnx, the suffix of an ONNX model: name it 'm.onnx'"),
    ("m.onnx", "pt2", "--out 'm.onnx' does not end in .pt2, the suffix of a torch.export program: name it 'm.pt2'"),
    ("model", None, "--out 'model' does not end in .onnx, the suffix of an ONNX model: name it 'model.onnx'")])
def test_an_export_name_whose_suffix_is_not_its_format_is_refused(tmp_path, capsys, tiny_run, monkeypatch, name,
                                                                   format, words):
    """`zoo export --out m.pt2 --format onnx` used to write an ONNX model named .pt2."""
    monkeypatch.chdir(tmp_path)
    proc = zoo_here(capsys, "export", "--model", str(tiny_run), "--out", name, *(["--format", format] if format else []))
    expect_error(proc, 2, words)
    assert list(tmp_path.iterdir()) == []
