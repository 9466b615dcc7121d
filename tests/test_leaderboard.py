"""`zoo leaderboard` end to end on a tiny budget: files, ranking, self-contained HTML rendered by Chromium."""
import base64
import io
import json
import os
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat

from zoo.errors import SpecError
from zoo.evaluate import GRAY_BASELINE
from zoo.leaderboard import Budget, sort_rows
from zoo.leaderboard_render import render_markdown
from zoo.metrics import METRICS

from conftest import run_zoo

TINY_LEADERBOARD = ["--gens", "unet", "--budget", "2", "--image-size", "32", "--batch-size", "4",
                    "--set", "generator.options.n_down=3", "--set", "generator.options.ngf=8",
                    "--set", "discriminator.options.ndf=8", "--set", "data.load_size=40", "--set", "num_samples=2",
                    "--no-progress"]


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    out = tmp_path_factory.mktemp("leaderboard") / "board"
    proc = run_zoo("leaderboard", *TINY_LEADERBOARD, "--out", str(out), check_rc=0)
    assert proc.stdout.strip() == str(out)
    return out


def test_leaderboard_writes_json_markdown_and_html(board):
    data = json.loads((board / "leaderboard.json").read_text())
    rows = data["rows"]
    assert [r["model"] for r in rows if r["model"] != GRAY_BASELINE] == ["unet"]
    assert any(r["model"] == GRAY_BASELINE for r in rows)
    assert [r["rank"] for r in rows] == [1, 2]
    assert [r["deltae00"] for r in rows] == sorted(r["deltae00"] for r in rows)  # default: dE00, lower first
    unet = next(r for r in rows if r["model"] == "unet")
    assert set(METRICS) <= set(unet)
    assert unet["steps"] == 2 and unet["params"] > 0 and unet["train_img_per_s"] > 0 and unet["infer_img_per_s"] > 0
    assert unet["generator_options"]["n_down"] == 3  # the user's --set wins over the preset
    assert os.path.isfile(unet["checkpoint"]) and unet["checkpoint"].endswith("step-000002.safetensors")
    assert data["protocol"]["image_size"] == 32 and data["protocol"]["held_out"]
    assert data["budget"]["steps"] == 2
    assert data["hardware"]["cpu"] and data["hardware"]["cpu_cores"] >= 1
    assert {"torch", "zoo", "fastai", "timm", "scikit-image"} <= set(data["versions"])
    assert set(data["vs_gray"]["unet"]) == {"better", "worse"}

    md = (board / "leaderboard.md").read_text()
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len(table) == 2 + len(rows)  # header, alignment row, one row per model and the gray baseline
    assert len({ln.replace("\\|", "").count("|") for ln in table}) == 1  # every row has the same columns
    assert f"**{GRAY_BASELINE}**" in md and "Hardware" in md
    assert md == render_markdown(data)  # the markdown renders from the JSON alone


def test_leaderboard_html_is_self_contained(board):
    page = (board / "leaderboard.html").read_text()
    assert "<script" not in page and 'src="http' not in page and "<link" not in page
    uris = [part.split('"', 1)[0] for part in page.split('src="data:image/png;base64,')[1:]]
    assert len(uris) == 2 * 3  # two validation photos x (gray input, unet, ground truth)
    for uri in uris:
        assert Image.open(io.BytesIO(base64.b64decode(uri))).size == (32, 32)


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
                    (board / "leaderboard.html").resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 1600)
    colours = img.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50  # text, table shading and photos, not a blank page
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


def test_model_spec_fits_each_component_by_its_declared_depth(tmp_path):
    from zoo.leaderboard import LeaderboardConfig, model_spec

    config = LeaderboardConfig.from_cli(["unet"], None, "1", None, str(tmp_path / "board"), image_size=16)
    spec = model_spec(config, "unet", 1)
    # the cpu preset's n_down 6 and n_layers 3 do not fit 16 px: lowered to the deepest that do
    assert spec.generator.options["n_down"] == 4 and spec.discriminator.options["n_layers"] == 2
    config = LeaderboardConfig.from_cli(["unet"], None, "1", None, str(tmp_path / "board"), image_size=16,
                                        overrides=["generator.options.n_down=2"])
    assert model_spec(config, "unet", 1).generator.options["n_down"] == 2  # the user's --set wins
