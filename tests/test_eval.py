"""`zoo eval` end to end on a tiny trained run, the gray baseline, the PSNR rule and bad input."""
import json
import math

import numpy as np
import pytest
import skimage.data
from PIL import Image

from zoo import metrics
from zoo.evaluate import GRAY_BASELINE, evaluate, load_images

from conftest import expect_error, run_zoo


# tiny_run: the session's 2-step TINY run on the embedded photos, folder name "run" (conftest)


def test_eval_json_has_protocol_models_gray_baseline_and_per_image_rows(tiny_run):
    proc = run_zoo("eval", str(tiny_run), "--json", check_rc=0)
    result = json.loads(proc.stdout)
    assert {"protocol", "models", "images"} <= set(result)
    protocol = result["protocol"]
    assert protocol["image_size"] == 32  # the run's training size
    assert protocol["split"] == "val" and protocol["held_out"] and protocol["images"] == 2
    assert protocol["psnr_max_db"] == metrics.PSNR_MAX_DB and "psnr_rule" in protocol
    assert set(result["models"]) == {GRAY_BASELINE, "run"}
    rows = result["images"]
    assert len(rows) == 2 * 2  # two validation photos x (gray baseline, run)
    assert {r["image"] for r in rows} == {"skimage:coffee", "matplotlib:grace_hopper.jpg"}
    for name, means in result["models"].items():
        assert set(means) == set(metrics.METRICS)
        mine = [r for r in rows if r["model"] == name]
        for key, value in means.items():  # the mean is the plain mean over images
            assert value == pytest.approx(np.mean([r[key] for r in mine]))
    gray = result["models"][GRAY_BASELINE]
    assert gray["colorfulness"] < 1.0 < gray["colorfulness_truth"]  # the gray baseline has (almost) no colour
    assert gray["ab_l1_lab"] == pytest.approx(110 * gray["ab_l1"])


def test_eval_text_table_shares_one_table_for_several_models(tiny_run):
    ckpt = sorted((tiny_run / "checkpoints").glob("step-*.safetensors"))[-1]
    proc = run_zoo("eval", str(tiny_run), str(ckpt), "--split", "train", "--size", "64", "--means-only", check_rc=0)
    out = proc.stdout
    assert "7 train images of embedded at 64x64 px (NOT held out from training)" in out
    assert "psnr_rule: PSNR per image capped at 100 dB" in out
    table = out[out.index("\nmodel ") + 1:].splitlines()
    header, rule, *rows = table
    assert header.split()[:3] == ["model", "ab", "L1"] and set(rule.replace(" ", "")) == {"-"}
    names = [r.split("  ")[0].strip() for r in rows]
    assert names == [GRAY_BASELINE, "run", f"run/{ckpt.stem}"]
    # the run folder resolves to its newest checkpoint: the same weights, the same numbers
    assert rows[1].split()[1:] == rows[2].split()[1:]
    assert len({len(r) for r in table}) <= 2  # aligned columns (the rule may be shorter than padded rows)


def test_gray_photos_keep_the_psnr_mean_finite(tmp_path):
    gray = np.repeat(skimage.data.camera()[..., None], 3, axis=-1)
    Image.fromarray(gray).save(tmp_path / "camera.png")
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "astronaut.png")
    images = load_images(str(tmp_path), "all", 32)
    result = evaluate([], images)
    psnr = {r["image"]: r["psnr"] for r in result.rows if r["model"] == GRAY_BASELINE}
    camera = next(v for k, v in psnr.items() if k.endswith("camera.png"))
    assert camera == metrics.PSNR_MAX_DB  # doing nothing on a gray photo is exact: infinite PSNR, capped
    assert next(v for k, v in psnr.items() if k.endswith("astronaut.png")) < 40
    mean = result.means[GRAY_BASELINE]["psnr"]
    assert math.isfinite(mean) and mean == pytest.approx(np.mean(list(psnr.values())))
    json.dumps(result.to_json(), allow_nan=False)  # no inf/NaN anywhere


def test_eval_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "model.safetensors"
    bogus.write_text("not a checkpoint at all")
    line = expect_error(run_zoo("eval", str(bogus)), 2)
    assert "model.safetensors" in line and "not a zoo checkpoint" in line


def test_eval_refuses_a_source_with_no_images(tiny_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = expect_error(run_zoo("eval", str(tiny_run), "--data", str(empty)), 2)
    assert "no images" in line and str(empty) in line
