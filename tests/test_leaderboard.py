"""`zoo leaderboard` end to end on tiny budgets: entries x seeds, intervals and ties, a separate test set, reuse of
finished runs, continuing after Ctrl-C, --runs, --merge, output-folder safety, board files, and the self-contained
HTML rendered by Chromium."""
import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageStat

from zoo.errors import SpecError
from zoo.evaluate import GRAY_BASELINE
from zoo.board_entries import Budget
from zoo.board_folder import MARKER
from zoo.board_ranking import sort_rows
from zoo.leaderboard_render import render_markdown
from zoo.metrics import METRICS

from conftest import FAST, PHOTOS, expect_error, expect_ok, photo, run_zoo, zoo_here

TINY_BOARD = ["--budget", "2", "--image-size", "32", "--batch-size", "4",
              "--set", "generator.options.n_down=3", "--set", "generator.options.ngf=8",
              "--set", "discriminator.options.ndf=8", "--set", "data.load_size=40", "--set", "num_samples=2",
              "--no-progress", "--no-perceptual"]
GRID = ["--gens", "unet", "--gan-losses", "vanilla,lsgan", "--seeds", "2"]


@pytest.fixture(scope="module")
def board(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("leaderboard") / "board"
    args = ["leaderboard", *GRID, *TINY_BOARD, "--eval-data", str(photos), "--out", str(out)]
    proc = run_zoo(*args, env=FAST, check_rc=0)
    assert proc.stdout.strip() == str(out)
    return out, args, proc


def load(folder):
    return json.loads((folder / "leaderboard.json").read_text())


def test_grid_entries_seeds_and_a_separate_test_set(board, photos):
    out, _, proc = board
    data = load(out)
    assert [e["name"] for e in data["entries"]] == ["vanilla", "lsgan"]  # the grid, named by what varies
    for e in data["entries"]:
        assert [r["seed"] for r in e["runs"]] == [0, 1]
        assert e["spec"]["gan_loss"]["name"] == e["name"] and e["spec"]["generator"]["options"]["n_down"] == 3
        assert all(os.path.isfile(out / r["checkpoint"]) for r in e["runs"])
    hashes = [r["spec_hash"] for e in data["entries"] for r in e["runs"]]
    assert len(set(hashes)) == 4  # every (entry, seed) is its own run
    p = data["protocol"]
    assert p["training_data"] == "embedded" and p["eval_data"] == str(photos)
    assert p["eval_images"] == 6 and p["split_rule"] == "all of its images" and p["seeds"] == 2
    assert p["fid"].startswith("skipped") and p["lpips"].startswith("skipped")
    # per-image scores of every run and the gray baseline
    assert len(data["images"]) == (2 * 2 + 1) * 6
    assert {r["seed"] for r in data["images"] if r["model"] == "lsgan"} == {0, 1}
    import zoo
    assert all(e["spec"][slot]["provider"] == f"zoo=={zoo.__version__}" for e in data["entries"]
               for slot in ("generator", "discriminator", "gan_loss", "pixel_loss"))  # provenance of every slot
    assert "about" in proc.stderr and "left" in proc.stderr  # time per run and the time left, in the log
    assert {"torch", "scipy", "scikit-image"} <= set(data["versions"]) and data["hardware"]["cpu_cores"] >= 1


def test_rows_have_seed_intervals_and_paired_differences_from_the_leader(board):
    from zoo.stats import is_tied, paired_difference, seed_interval

    data = load(board[0])
    rows = data["rows"]
    assert [r["deltae00"] for r in rows] == sorted(r["deltae00"] for r in rows)
    leader = rows[0]
    for row in rows:
        if row["baseline"]:
            continue
        entry = next(e for e in data["entries"] if e["name"] == row["model"])
        per_seed = [r["means"]["deltae00"] for r in entry["runs"]]
        ci = seed_interval(per_seed)
        assert row["deltae00"] == pytest.approx(ci["mean"]) and row["deltae00_ci"] == pytest.approx([ci["low"],
                                                                                                    ci["high"]])
        # the mean of a seed is the mean over the test images of that run's per-image scores
        for run in entry["runs"]:
            mine = [r["deltae00"] for r in data["images"] if r["model"] == row["model"] and r["seed"] == run["seed"]]
            assert run["means"]["deltae00"] == pytest.approx(np.mean(mine))
    for row in rows[1:]:
        d = row["vs_leader"]["deltae00"]
        names = data["image_names"]

        def cells(model):
            seeds = sorted({r["seed"] for r in data["images"] if r["model"] == model}, key=lambda s: (s is None, s))
            return np.array([[next(r["deltae00"] for r in data["images"] if r["model"] == model and r["seed"] == s
                                   and r["image"] == n) for n in names] for s in seeds])

        a, b = cells(row["model"]), cells(leader["model"])
        if a.shape != b.shape:  # the gray baseline is one deterministic row: it pairs with every seed
            a, b = np.broadcast_to(a, (max(len(a), len(b)), len(names))), np.broadcast_to(b, (max(len(a), len(b)),
                                                                                                 len(names)))
        expected = paired_difference(a, b)
        assert d["diff"] == pytest.approx(expected["diff"]) and d["low"] == pytest.approx(expected["low"])
        assert row["tied_with_leader"] == is_tied(expected)
        assert row["rank_label"] == ("=1" if is_tied(expected) else str(row["rank"]))
    md = (board[0] / "leaderboard.md").read_text()
    assert md == render_markdown(data)  # the markdown renders from the JSON alone
    table = [ln for ln in md.split("## Pairwise differences")[0].splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(rows) and len({ln.replace("\\|", "").count("|") for ln in table}) == 1
    assert "[" in table[3] and "tied" in md  # intervals in the cells; the tie rule is stated


def test_every_pair_of_rows_has_a_paired_difference_on_the_sort_metric(board):
    """Not only against the leader: each pair (a ranked above b) has a - b with its interval, the same paired
    bootstrap as the leader column (so the leader's pairs are that column negated), shown as a matrix."""
    data = load(board[0])
    rows, pw = data["rows"], data["pairwise"]
    assert pw["key"] == "deltae00" and pw["models"] == [r["model"] for r in rows]
    n = len(rows)
    assert [(p["a"], p["b"]) for p in pw["pairs"]] == [(rows[i]["model"], rows[j]["model"]) for i in range(n)
                                                        for j in range(i + 1, n)]
    for p in pw["pairs"]:
        if p["a"] == rows[0]["model"]:  # the leader's pairs: the leader column, negated
            d = next(r for r in rows if r["model"] == p["b"])["vs_leader"]["deltae00"]
            assert p["diff"] == pytest.approx(-d["diff"]) and p["tied"] == d["tied"]
        assert p["diff"] <= 1e-12 and p["low"] <= p["diff"] <= p["high"]  # a ranked above b: lower dE00
        assert p["tied"] == (p["low"] <= 0 <= p["high"])
    md = (board[0] / "leaderboard.md").read_text()
    matrix = md.split("## Pairwise differences")[1].split("## How")[0]
    assert len([ln for ln in matrix.splitlines() if ln.startswith("| ")]) == n  # header + one row per model but last
    html = (board[0] / "leaderboard.html").read_text()
    assert '<table class="pairs">' in html and html.count("<h2>Pairwise differences</h2>") == 1


def test_rerunning_the_same_command_evaluates_without_training(board):
    out, args, _ = board
    before = load(out)
    proc = run_zoo(*args, env=FAST, check_rc=0)
    assert proc.stderr.count("finished run reused") == 4 and "training unet" not in proc.stderr
    after = load(out)
    assert [r["means"] for e in after["entries"] for r in e["runs"]] == \
        [r["means"] for e in before["entries"] for r in e["runs"]]


def test_ctrl_c_saves_and_the_same_command_continues(tmp_path):
    import time

    out = tmp_path / "board"
    args = [sys.executable, "-m", "zoo", "leaderboard", "--gens", "unet", *TINY_BOARD, "--budget", "200",
            "--set", "checkpoint_every=1000", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **FAST})
    for line in proc.stderr:
        if "zoo: training unet" in line:
            break
    time.sleep(0.8)  # inside the training loop
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the 200 steps finished before the signal (a very fast machine)")
    assert proc.returncode == 130 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("zoo: error:")]
    assert len(line) == 1 and "rerun the same command" in line[0]
    assert (out / MARKER).is_file() and not (out / "leaderboard.json").exists()
    assert json.loads((out / MARKER).read_text())["runs"] == {}  # nothing is marked finished
    saved = list(out.glob("runs/*/checkpoints/step-*.safetensors"))  # the engine saved on the signal
    again = run_zoo(*args[3:], env=FAST, check_rc=0)
    assert ("resuming" in again.stderr) == bool(saved)
    assert load(out)["entries"][0]["runs"][0]["steps"] == 200


def test_runs_ranks_finished_runs_and_merge_combines_boards_of_one_protocol(board, tiny_run, photos, tmp_path):
    ranked = tmp_path / "ranked"
    proc = run_zoo("leaderboard", "--runs", str(tiny_run), "--eval-data", str(photos), "--out", str(ranked),
                   "--no-progress", "--no-perceptual", env=FAST)
    expect_ok(proc)
    assert "training" not in proc.stderr
    data = load(ranked)
    assert [e["name"] for e in data["entries"]] == ["run"] and data["budget"]["description"].startswith("existing")
    merged = tmp_path / "merged"
    proc = run_zoo("leaderboard", "--merge", str(board[0] / "leaderboard.json"), str(ranked / "leaderboard.json"),
                   "--out", str(merged), env=FAST)
    expect_ok(proc)
    combined = load(merged)
    assert sorted(e["name"] for e in combined["entries"]) == ["lsgan", "run", "vanilla"]
    assert len(combined["rows"]) == 4 and {r["model"] for r in combined["rows"]} >= {GRAY_BASELINE, "run"}
    assert "run" in combined["samples"]["cells"]
    # a board scored at another image size (as another machine's board would be): refused in one line
    other = load(ranked)
    other["protocol"]["image_size"] = 48
    (tmp_path / "other.json").write_text(json.dumps(other))
    line = expect_error(run_zoo("leaderboard", "--merge", str(board[0] / "leaderboard.json"),
                                str(tmp_path / "other.json"), "--out", str(tmp_path / "m2"), env=FAST), 2,
                        "another protocol")
    assert "image_size" in line
    assert not (tmp_path / "m2").exists()


def test_a_board_folder_is_written_by_one_zoo_process_at_a_time(board, tmp_path, capsys):
    from zoo.board_folder import BOARD_LOCK
    from zoo.runfolder import RunLock

    out, source = tmp_path / "merged", str(board[0] / "leaderboard.json")
    out.mkdir()
    with RunLock.take(out / BOARD_LOCK, out, what="leaderboard folder"):  # as a board running in another process
        expect_error(zoo_here(capsys, "leaderboard", "--merge", source, "--out", str(out)), 2,
                     "leaderboard folder", "in use by another zoo process", f"PID {os.getpid()}")
        assert [p.name for p in out.iterdir()] == [BOARD_LOCK]  # refused before its marker or any file
    expect_ok(zoo_here(capsys, "leaderboard", "--merge", source, "--out", str(out)))
    assert {p.name for p in out.iterdir()} == {BOARD_LOCK, MARKER, "leaderboard.json", "leaderboard.md",
                                               "leaderboard.html"}
    expect_ok(zoo_here(capsys, "leaderboard", "--merge", source, "--out", str(out)))  # the lock file is zoo's own


@pytest.mark.parametrize("damage, words", [
    (lambda b: b["images"][0].update(psnr="31.2"), ["images.0", "psnr is str, not a number"]),
    (lambda b: b.pop("protocol"), ["protocol: Field required"]),
    (lambda b: b["entries"][0].update(runs=None), ["entries.0.runs"]),
    (lambda b: b["samples"].update(cells=[]), ["samples.cells"]),
    (lambda b: b["sort"].pop("key"), ["sort.key"]),
])
def test_a_damaged_board_is_refused_in_one_line_before_anything_is_written(board, tmp_path, capsys, damage, words):
    data = load(board[0])
    damage(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    out = tmp_path / "merged"
    proc = zoo_here(capsys, "leaderboard", "--merge", str(board[0] / "leaderboard.json"), str(bad), "--out", str(out))
    expect_error(proc, 2, "bad.json", "not a leaderboard.json written by this zoo", *words)
    assert not out.exists()


def test_out_must_be_new_empty_or_a_board_zoo_made(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    proc = zoo_here(capsys, "leaderboard", "--gens", "unet", *TINY_BOARD, "--out", str(foreign))
    assert proc.returncode == 2 and "zoo did not make" in proc.stderr and "Traceback" not in proc.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    proc = zoo_here(capsys, "leaderboard", "--gens", "unet", *TINY_BOARD, "--out", str(a_file))
    assert proc.returncode == 2 and "not a folder" in proc.stderr and a_file.read_text() == "x"


def test_board_file_entries_are_whole_specs_fitted_by_declarations(tmp_path):
    from zoo.board_entries import LeaderboardConfig, entry_spec

    (tmp_path / "wide.yaml").write_text("generator:\n  options:\n    ngf: 16\n")
    board = tmp_path / "board.yaml"
    board.write_text("set: [discriminator.options.ndf=8]\n"
                     "entries:\n"
                     "  - name: small\n    set: [generator.options.ngf=8]\n"
                     "  - name: wide\n    config: wide.yaml\n"
                     "  - name: lsgan-run\n    spec: {gan_loss: {name: lsgan}, pixel_weight: 50}\n")
    config = LeaderboardConfig.from_cli(config=str(board), image_size=16, out=str(tmp_path / "out"), seeds=2)
    assert [e.name for e in config.entries] == ["small", "wide", "lsgan-run"]
    small, wide, ls = (entry_spec(config, e) for e in config.entries)
    assert small.generator.options["ngf"] == 8 and wide.generator.options["ngf"] == 16
    assert ls.gan_loss.name == "lsgan" and ls.pixel_weight == 50
    for spec in (small, wide, ls):
        # the cpu preset's n_down 6 and n_layers 3 do not fit 16 px: lowered by the declared depth options
        assert spec.generator.options["n_down"] == 4 and spec.discriminator.options["n_layers"] == 2
        assert spec.discriminator.options["ndf"] == 8  # the board's set applies to every entry
    assert entry_spec(config, config.entries[0], seed_index=1).seed == 1
    assert config.budget is None  # a board file (a config) carries its own length unless --budget says otherwise
    board.write_text("entries:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(SpecError, match="two entries are named 'a'"):
        LeaderboardConfig.from_cli(config=str(board))
    board.write_text("entries:\n  - {name: a, sett: []}\n")
    with pytest.raises(SpecError, match="unknown key 'sett'"):
        LeaderboardConfig.from_cli(config=str(board))


def test_grid_flags_preset_and_v2_components_make_one_entry_per_combination(tmp_path):
    """--discs, --pixel-losses and --gan-losses with v2 components (multiscale D, hinge, eccv16's classification
    loss) and --preset: one entry per combination, named by what varies, each a spec that resolves and fits 32 px."""
    from zoo.board_entries import LeaderboardConfig, entry_spec
    from zoo.registry import get_registry

    config = LeaderboardConfig.from_cli(gens=["unet"], discs=["patch", "multiscale"], gan_losses=["hinge"],
                                        pixel_losses=["l1", "rgb_l1"], preset="cpu", image_size=32,
                                        out=str(tmp_path / "b"))
    assert [e.name for e in config.entries] == ["patch/l1", "patch/rgb_l1", "multiscale/l1", "multiscale/rgb_l1"]
    specs = [entry_spec(config, e).resolved(get_registry()) for e in config.entries]
    assert [(s.discriminator.name, s.pixel_loss.name, s.gan_loss.name) for s in specs] == [
        ("patch", "l1", "hinge"), ("patch", "rgb_l1", "hinge"), ("multiscale", "l1", "hinge"),
        ("multiscale", "rgb_l1", "hinge")]
    # the preset's values, fitted to 32 px by each component's declared depth option
    assert all(s.data.image_size == 32 and s.generator.options["ngf"] == 32 for s in specs)
    assert all(s.generator.options["n_down"] == 5 for s in specs)
    eccv = LeaderboardConfig.from_cli(gens=["eccv16"], pixel_losses=["eccv16_ce"], image_size=32)
    assert [e.name for e in eccv.entries] == ["eccv16"]
    spec = entry_spec(eccv, eccv.entries[0]).resolved(get_registry())
    assert (spec.generator.name, spec.pixel_loss.name) == ("eccv16", "eccv16_ce")
    with pytest.raises(SpecError, match="--pixel-losses is empty"):
        LeaderboardConfig.from_cli(pixel_losses=[])


def test_a_changed_training_folder_is_a_new_run_not_a_reused_one(tmp_path, photos):
    """The run identity includes the training data: adding, replacing or touching a file changes the data
    fingerprint and so the spec hash (a board then trains again instead of reusing a run of other data); the
    same files give the same hash."""
    import shutil
    from zoo.board_entries import Budget, LeaderboardConfig, entry_spec
    from zoo.board_folder import data_fingerprint, spec_hash
    from zoo.registry import get_registry

    data = tmp_path / "data"
    shutil.copytree(photos, data)
    config = LeaderboardConfig.from_cli(gens=["unet"], data=str(data), image_size=32, budget="2")
    spec = entry_spec(config, config.entries[0]).resolved(get_registry())

    def identity():
        fp = data_fingerprint(spec)
        return fp["train"] + fp["val"], spec_hash(spec, config.budget, fp)

    n, first = identity()
    assert n == len(PHOTOS) and identity()[1] == first
    assert spec_hash(spec, Budget.parse("3"), data_fingerprint(spec)) != first  # the budget is part of it too
    photo("coffee").save(data / "extra.png")
    n2, added = identity()
    assert n2 == n + 1 and added != first
    (data / "extra.png").unlink()
    assert identity()[1] == first  # back to the same files: the same run
    target = data / "chelsea.png"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, edited later
    assert identity()[1] not in (first, added)


def test_eval_data_split_picks_that_split_of_the_test_source_and_records_the_rule(photos):
    """--eval-data scores all of its images unless --split names one; the protocol's rule says which."""
    from zoo.board_entries import LeaderboardConfig, entry_spec
    from zoo.leaderboard import _eval_images
    from zoo.sources import resolve_source

    for split, expected in ((None, len(PHOTOS)), ("val", None), ("train", None)):
        config = LeaderboardConfig.from_cli(gens=["unet"], image_size=32, eval_data=str(photos), split=split)
        spec = entry_spec(config, config.entries[0])
        images, rule = _eval_images(config, spec, log=lambda _: None)
        if split is None:
            assert len(images.names) == expected and rule == "all of its images"
        else:
            src = resolve_source(str(photos), seed=spec.data.split_seed, val_fraction=spec.data.val_fraction)
            side = src.val if split == "val" else src.train
            assert sorted(images.names) == sorted(item.name for item in side) and 0 < len(side) < len(PHOTOS)
            assert rule.startswith(f"its {split} split") and str(spec.data.split_seed) in rule


def test_progress_is_one_board_bar_and_each_trainings_bar(tmp_path, photos, capsys):
    """Without --no-progress: one overall bar over entries x seeds ("board", unit run) that reaches the total,
    and each training's own step bar, on stderr; stdout is still only the board folder."""
    out = tmp_path / "b"
    args = [a for a in TINY_BOARD if a != "--no-progress"]
    proc = zoo_here(capsys, "leaderboard", "--gens", "unet", "--seeds", "2", *args, "--eval-data", str(photos),
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    lines = proc.stderr.replace("\r", "\n").splitlines()
    board = [ln for ln in lines if ln.startswith("board:")]
    # the rate reads "s/run" or "run/s" (slow or fast), likewise "step"
    assert any("board: 100%" in ln and "| 2/2 [" in ln and "run" in ln for ln in board)  # runs: 1/2 then 2/2
    assert any("| 1/2 [" in ln for ln in board)
    steps = [ln for ln in lines if "step" in ln and "| 2/2 [" in ln and not ln.startswith("board:")]  # each training's bar reached its 2 steps
    assert len(steps) >= 2 and any("g_pixel=" in ln for ln in steps)  # with the losses once they are read


def test_leaderboard_html_is_self_contained_and_sortable(board):
    data = load(board[0])
    page = (board[0] / "leaderboard.html").read_text()
    assert 'src="http' not in page and "<link" not in page and "<script src" not in page
    assert page.count("<script>") == 1 and "addEventListener('click'" in page  # the inline sorter
    uris = [part.split('"', 1)[0] for part in page.split('src="data:image/png;base64,')[1:]]
    plot, *cells = uris
    assert Image.open(io.BytesIO(base64.b64decode(plot))).size == (640, 400)  # quality vs throughput
    n = len(data["samples"]["images"])
    assert len(cells) == n * (1 + len(data["entries"]) + 1)  # gray input, every entry, ground truth
    for uri in cells:
        assert Image.open(io.BytesIO(base64.b64decode(uri))).size == (32, 32)
    for row in data["rows"]:
        assert f'data-v="{row["deltae00"]}"' in page  # the sort keys are the JSON's numbers


def test_leaderboard_html_renders_in_headless_chromium(board, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (CI must have it: see .ci/run)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,1600",
                    (board[0] / "leaderboard.html").resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # text, table shading, the plot and photos, not a blank page
    assert max(ImageStat.Stat(img).stddev) > 20
    assert any(abs(r - g) > 40 or abs(g - b) > 40 for _, (r, g, b) in (colours or img.getcolors(1 << 24)))


def test_leaderboard_refuses_an_unknown_generator(tmp_path):
    out = tmp_path / "board"
    proc = run_zoo("leaderboard", "--gens", "unet,unte2", "--out", str(out))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("zoo: error:")]
    assert len(lines) == 1 and "no generator named 'unte2'" in lines[0] and "Available:" in lines[0]
    assert not out.exists()  # refused before anything trained


def test_budget_parses_steps_and_minutes():
    assert Budget.parse("300") == Budget(steps=300)
    assert Budget.parse("3m").seconds == 180 and Budget.parse("2.5min").seconds == 150
    assert Budget.parse("90s").seconds == 90
    assert Budget.parse("3m").steps_for(seconds_per_step=4.0) == 45
    assert Budget.parse("1m").steps_for(seconds_per_step=600.0) == 1  # at least one step
    assert Budget.parse("300").steps_for(seconds_per_step=4.0) == 300
    for bad in ("abc", "0", "1.5", "-3m", "3h"):
        with pytest.raises(SpecError, match="--budget"):
            Budget.parse(bad)


def test_sort_rows_follows_each_metrics_direction():
    rows = [{"model": "a", "psnr": 20.0, "deltae00": 9.0, "train_img_per_s": None},
            {"model": "b", "psnr": 25.0, "deltae00": 12.0, "train_img_per_s": 3.0},
            {"model": "c", "psnr": 22.0, "deltae00": 5.0, "train_img_per_s": 9.0}]
    assert [r["model"] for r in sort_rows(rows, "deltae00")] == ["c", "a", "b"]  # lower is better
    assert [r["model"] for r in sort_rows(rows, "psnr")] == ["b", "c", "a"]  # higher is better
    assert [r["model"] for r in sort_rows(rows, "train_img_per_s")] == ["c", "b", "a"]  # no value: last
    assert set(METRICS) <= set(__import__("zoo.board_entries", fromlist=["SORT_KEYS"]).SORT_KEYS)
