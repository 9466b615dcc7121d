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
        offline = {k for k in ("lpips", "fid") if protocol[k].startswith("skipped")}
        assert set(means) == set(metrics.ALL_METRICS) - offline  # FID/LPIPS only when their weights are here
        mine = [r for r in rows if r["model"] == name]
        for key in metrics.METRICS:  # the mean is the plain mean over images
            value = means[key]
            assert value == pytest.approx(np.mean([r[key] for r in mine]))
    for name, means in result["models"].items():  # dataset-level |dCF|: |mean CF(pred) - mean CF(truth)|
        mine = [r for r in rows if r["model"] == name]
        assert means["colorfulness_dataset_abs_diff"] == pytest.approx(
            abs(np.mean([r["colorfulness"] for r in mine]) - np.mean([r["colorfulness_truth"] for r in mine])))
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


# ---- eval scores what colorize writes, in the training precision -------------------------------------

HIGH_LR = ["gen_optim.lr=0.01", "pixel_weight=0"]  # a few steps already give strong colours


@pytest.fixture(scope="module")
def colourful_run(tmp_path_factory):
    from conftest import train_tiny

    return train_tiny(tmp_path_factory.mktemp("colourful") / "run", steps=4, extra_set=HIGH_LR)


def test_eval_predictions_are_exactly_what_colorize_writes(colourful_run, tmp_path):
    """Each photo at the eval size, colorized by the real `zoo colorize`, equals eval's prediction pixel for pixel
    (the out-of-gamut handling included: the model's colours are strong enough to need it)."""
    import torch
    from zoo.evaluate import evaluate_paths
    from zoo.lab import denormalize_lab, fit_gamut, lab_to_rgb, uint8_to_model_input

    images = load_images("embedded", "all", 32)
    evaluation = evaluate_paths([str(colourful_run)], split="all", device="cpu", previews=len(images.names),
                                log=lambda m: None)
    predicted = evaluation.previews["run"]
    photos = []
    for i, image in enumerate(images.images):  # the eval's own resized ground truth, as files
        photos.append(tmp_path / f"{i}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(photos[-1])
    out = tmp_path / "out"
    run_zoo("colorize", *map(str, photos), "--model", str(colourful_run), "--out", str(out), "--batch-size", "3",
            "--device", "cpu", "--no-progress", check_rc=0)
    written = np.stack([np.asarray(Image.open(out / p.name)) for p in photos])
    assert written.shape == predicted.shape == (len(photos), 32, 32, 3)
    assert np.array_equal(written, predicted)
    # the gamut rule mattered: clipping per channel would have given other pixels
    from zoo.inference import Predictor

    L, _ = uint8_to_model_input(images.images)
    lab = denormalize_lab(L, Predictor.load(colourful_run, device="cpu").predict_ab(L))
    assert not torch.equal(lab_to_rgb(lab), fit_gamut(lab))


def test_eval_runs_in_the_training_precision_and_fp32_on_request(colourful_run):
    import torch
    from zoo.inference import Predictor, inference_runtime

    default = json.loads(run_zoo("eval", str(colourful_run), "--json", "--device", "cpu", check_rc=0).stdout)
    fp32 = json.loads(run_zoo("eval", str(colourful_run), "--json", "--device", "cpu", "--precision", "fp32",
                              check_rc=0).stdout)
    assert default["model_info"]["run"]["precision"] == inference_runtime("cpu", "auto").precision
    assert fp32["model_info"]["run"]["precision"] == "fp32"
    for key, tolerance in (("ab_l1", 0.002), ("psnr", 0.1), ("deltae00", 0.1)):  # bf16 here: a small difference
        assert default["models"]["run"][key] == pytest.approx(fp32["models"]["run"][key], abs=tolerance), key
    # bf16 against fp32 on the same inputs (forced: it runs on any CPU): ab within 0.02 (about 2 Lab units)
    images = load_images("embedded", "all", 32)
    from zoo.lab import uint8_to_model_input

    L, _ = uint8_to_model_input(images.images)
    ab32 = Predictor.load(colourful_run, device="cpu", precision="fp32").predict_ab(L)
    ab16 = Predictor.load(colourful_run, device="cpu", precision="bf16").predict_ab(L)
    assert ab32.abs().max() > 0.1  # coloured (over 11 Lab units somewhere): the comparison means something
    assert 0 < (ab32 - ab16).abs().max() < 0.02
    assert torch.equal(ab32, Predictor.load(colourful_run, device="cpu", precision="fp32").predict_ab(L))


def test_saturation_sweep_scores_each_value_as_colorize_writes_it(tiny_run, capsys):
    from conftest import zoo_here

    proc = zoo_here(capsys, "eval", str(tiny_run), "--json", "--no-perceptual", "--saturation", "0,1,2")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    names = [f"run S={s}" for s in ("0", "1", "2")]
    assert set(report["models"]) == {GRAY_BASELINE, *names}
    assert [report["model_info"][n]["saturation"] for n in names] == [0.0, 1.0, 2.0]
    # S=0 writes the gray image: every RGB metric of every image equals the gray baseline's
    rgb = ("psnr", "ssim", "deltae00", "colorfulness")
    by_model = {}
    for row in report["images"]:
        by_model.setdefault(row["model"], []).append([row[k] for k in rgb])
    assert by_model["run S=0"] == by_model[GRAY_BASELINE] and len(by_model[GRAY_BASELINE]) >= 2
    cf = {n: report["models"][n]["colorfulness"] for n in names}
    assert cf["run S=0"] == report["models"][GRAY_BASELINE]["colorfulness"] <= cf["run S=1"] <= cf["run S=2"]
    # and S=1 alone is the plain evaluation
    plain = json.loads(zoo_here(capsys, "eval", str(tiny_run), "--json", "--no-perceptual").stdout)
    assert plain["models"]["run"] == report["models"]["run S=1"]
    bad = zoo_here(capsys, "eval", str(tiny_run), "--saturation", "1,x")
    assert bad.returncode == 2 and "--saturation takes numbers separated by commas" in bad.stderr
