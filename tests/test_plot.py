"""zoo plot and zoo.plot: real runs, real PNGs read back with PIL."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import run_zoo, train_tiny

# matplotlib's first two cycle colours (C0, C1): one per run
C0, C1 = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    # a log row every step: curves of two and three points
    return (train_tiny(root / "a", steps=2, extra_set=["log_every=1"]),
            train_tiny(root / "b", steps=3, extra_set=["log_every=1"]))


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def has_colour(img, colour, tol=12):
    return int((np.abs(img - np.array(colour)).max(axis=2) <= tol).sum())


def longest_dark_run(img):
    """The longest horizontal run of near-black pixels (an axis spine)."""
    dark = img.max(axis=2) < 60
    best = 0
    for row in dark:
        padded = np.concatenate([[0], row.astype(int), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def test_plot_one_run_is_a_real_plot(runs, tmp_path):
    out = tmp_path / "curves.png"
    proc = run_zoo("plot", str(runs[0]), "--out", str(out), check_rc=0)
    assert "wrote" in proc.stdout
    img = pixels(out)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # not blank
    assert longest_dark_run(img) > 100  # axes are drawn
    assert has_colour(img, C0) > 30 and has_colour(img, C1) == 0  # one run: one line colour
    keys = set().union(*(json.loads(l) for l in (runs[0] / "losses.jsonl").read_text().splitlines()))
    assert {"g_pixel", "val_l1"} <= keys  # the log really holds losses and validation rows


def test_two_runs_two_colours(runs, tmp_path):
    out = tmp_path / "both.png"
    run_zoo("plot", *map(str, runs), "--out", str(out), check_rc=0)
    img = pixels(out)
    assert has_colour(img, C0) > 30 and has_colour(img, C1) > 30


def test_write_curves_in_run_folder(runs, tmp_path):
    from zoo.plot import write_curves

    run = shutil.copytree(runs[0], tmp_path / "copy")
    path = write_curves(run)
    assert path == run / "curves.png" and has_colour(pixels(path), C0) > 30
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "losses.jsonl").write_text("")
    assert write_curves(empty) is None and not (empty / "curves.png").exists()
    first_row = (run / "losses.jsonl").read_text().splitlines()[0]
    (empty / "losses.jsonl").write_text(first_row + "\n")  # one row: no curve yet
    assert write_curves(empty) is None and not (empty / "curves.png").exists()


def test_corrupt_lines_skipped_and_counted(runs, tmp_path):
    run = shutil.copytree(runs[0], tmp_path / "run")
    with open(run / "losses.jsonl", "a") as fh:
        fh.write('{"step": 9, "g_pix\n[1, 2]\nnot json\n')
    proc = run_zoo("plot", str(run), "--out", str(tmp_path / "c.png"), check_rc=0)
    assert "skipped 3 corrupt line(s)" in proc.stderr
    assert (tmp_path / "c.png").is_file()


def test_bad_inputs_one_line(tmp_path, runs):
    def fails(*args):
        proc = run_zoo("plot", *args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        return proc.stderr

    assert "does not exist" in fails(str(tmp_path / "nope"), "--out", str(tmp_path / "x.png"))
    (tmp_path / "folder").mkdir()
    assert "not a zoo run folder" in fails(str(tmp_path / "folder"), "--out", str(tmp_path / "x.png"))
    (tmp_path / "folder" / "losses.jsonl").write_text("garbage\n{]\n")
    assert "2 corrupt line(s)" in fails(str(tmp_path / "folder"), "--out", str(tmp_path / "x.png"))
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    assert "not replaced" in fails(str(runs[0]), "--out", str(mine))
    assert mine.read_text() == "mine"
    assert "must end in .png" in fails(str(runs[0]), "--out", str(tmp_path / "new.jpg"))
    assert not (tmp_path / "new.jpg").exists() and not (tmp_path / "x.png").exists()
