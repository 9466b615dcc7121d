"""eccv16 (Zhang et al. 2016): bins computed from the gamut, annealed-mean decoding, soft encoding, rebalancing,
and a real `zoo train` + `zoo colorize` with its own classification loss."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import run_zoo, zoo_here
from zoo.evaluate import GRAY_BASELINE
from zoo.hookspecs import StepContext
from zoo.registry import get_registry
from zoo_plugins.generators.eccv16 import ab_bins, annealed_mean
from zoo_plugins.losses.eccv16_ce import rebalancing_weights, soft_encode

pytestmark = pytest.mark.usefixtures("one_thread")


def srgb_ab(levels=40):
    from skimage.color import rgb2lab

    g = np.linspace(0, 1, levels)
    rgb = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 1, 3)
    return rgb2lab(rgb)[:, 0, 1:]


def test_bins_are_in_gamut_and_cover_it():
    bins = ab_bins(10).numpy()
    assert 240 <= len(bins) <= 313  # the paper's 313 uses a gamut test it does not specify; ours: see the module
    assert np.all(bins % 10 == 0) and len(np.unique(bins, axis=0)) == len(bins)
    ab = srgb_ab()  # sRGB colours converted by skimage (not by zoo.lab)
    # cover: every sRGB colour lies in some bin's cell
    cheb = np.abs(ab[:, None, :] - bins[None]).max(-1).min(1)
    assert cheb.max() <= 5 + 1e-6
    # in gamut: every bin's cell holds sRGB colours (a little slack: this sample is coarser than the plugin's)
    nearest = np.abs(bins[:, None, :] - ab[None]).max(-1).min(1)
    assert nearest.max() <= 5 + 1.0
    assert (nearest <= 5).mean() > 0.97


def test_annealed_mean_is_the_mode_at_t0_and_the_mean_at_t1():
    bins = ab_bins(10)
    torch.manual_seed(0)
    logits = torch.randn(2, len(bins), 3, 3) * 3
    mode = bins[logits.argmax(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(annealed_mean(logits, bins, 1e-3), mode, atol=1e-3, rtol=0)
    p = torch.softmax(logits, 1)
    mean = (p[:, :, None] * bins.T[None, :, :, None, None].transpose(1, 2)).sum(1)
    torch.testing.assert_close(annealed_mean(logits, bins, 1.0), mean, atol=1e-4, rtol=1e-5)
    spread = annealed_mean(logits, bins, 0.38)
    assert not torch.allclose(spread, mode) and not torch.allclose(spread, mean)


def test_soft_encoding_and_rebalancing():
    bins = ab_bins(10)
    ab = torch.tensor([[[[3.0, 40.0]], [[-12.0, 20.0]]]])  # (1, 2, 1, 2): pixels (3, -12) and (40, 20)
    z = soft_encode(ab, bins, 5, 5.0)
    assert z.shape == (1, len(bins), 1, 2)
    torch.testing.assert_close(z.sum(1), torch.ones(1, 1, 2))
    assert ((z > 0).sum(1) == 5).all()
    assert bins[z.argmax(1)[0, 0]].tolist() == [[0.0, -10.0], [40.0, 20.0]]  # the nearest bin weighs most
    prior = torch.ones(len(bins))
    prior[0] = 1000.0  # a common colour
    w = rebalancing_weights(prior, bins, 5.0, 0.5)
    p = prior / prior.sum()
    assert (p * w).sum().item() == pytest.approx(1.0, rel=1e-5)
    assert w[0] < w[-1]  # common colours weigh less
    assert torch.allclose(rebalancing_weights(prior, bins, 5.0, 1.0), torch.ones(len(bins)), atol=1e-5)


def test_the_loss_learns_the_prior_and_refuses_a_generator_without_logits():
    loss = get_registry().create("pixel_loss", "eccv16_ce")
    assert loss.counts.sum() == 0  # the probe call does not count
    bins = len(ab_bins(10))
    logits = torch.zeros(1, bins, 2, 2, requires_grad=True)
    real = torch.full((1, 2, 8, 8), 0.2)
    value = loss(StepContext("generator", torch.zeros(1, 1, 8, 8), real, real, {"logits": logits}))
    assert value.item() > 0 and loss.counts.sum() == 4
    value.backward()
    assert logits.grad.abs().sum() > 0
    with pytest.raises(Exception, match="needs a generator output 'logits'"):
        loss(StepContext("generator", torch.zeros(1, 1, 8, 8), real, real, {}))


def test_zoo_train_then_colorize_eval_export_eccv16(tmp_path, photos, capsys):
    run_zoo("train", "--data", str(photos), "--steps", "2", "--out", str(tmp_path / "e"),
            "--gen", "eccv16", "--pixel-loss", "eccv16_ce", "--image-size", "32", "--batch-size", "4",
            "--set", "generator.options.ngf=8", "--set", "generator.options.n_blocks=1",
            "--set", "discriminator.options.ndf=8", "--set", "pixel_weight=1", "--set", "gan_weight=0",
            "--set", "num_samples=2", "--set", "log_every=1", "--no-progress", check_rc=0)
    rows = [json.loads(line) for line in (tmp_path / "e" / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "stage" in r] == [1, 2]
    assert all(np.isfinite(r["g_pixel"]) and r["g_pixel"] > 0 for r in rows if "stage" in r)
    out = tmp_path / "colour"
    photo = sorted(photos.iterdir())[0]
    run_zoo("colorize", str(photo), "--model", str(tmp_path / "e"), "--out", str(out), "--no-progress",
            check_rc=0)
    assert len(list(out.iterdir())) == 1
    # the checkpoint scores and exports like any other (the generator's auxiliary logits stay inside)
    proc = zoo_here(capsys, "eval", str(tmp_path / "e"), "--data", str(photos), "--json", "--no-perceptual")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["models"]) == {"e", GRAY_BASELINE}
    assert report["models"]["e"] and all(np.isfinite(v) for v in report["models"]["e"].values())
    exported = tmp_path / "eccv16.pt2"
    proc = zoo_here(capsys, "export", "--model", str(tmp_path / "e"), "--out", str(exported))
    assert proc.returncode == 0 and exported.stat().st_size > 0, proc.stderr
    program = torch.export.load(str(exported)).module()
    ab = program(torch.zeros(1, 1, 32, 32))
    assert ab.shape == (1, 2, 32, 32) and bool(torch.isfinite(ab).all())


def test_the_rebalancing_prior_is_saved_and_a_resumed_run_is_exact(tmp_path):
    """eccv16_ce's running class counts (the empirical prior) are part of each checkpoint's training state: a run
    stopped at step 2 and resumed to 4 ends with exactly the weights of a straight 4-step run."""
    from conftest import assert_same_tensors, train
    from zoo.checkpoint import load_state, state_path_for
    from zoo.engine import Trainer

    def spec(steps):
        from zoo.spec import build_spec

        flags = {"data.image_size": 32, "data.batch_size": 4, "steps": steps, "generator.name": "eccv16",
                 "pixel_loss.name": "eccv16_ce", "checkpoint_every": 2, "sample_every": 100, "precision": "fp32"}
        return build_spec(None, None, flags, ["generator.options.ngf=8", "generator.options.n_blocks=1",
                                              "discriminator.options.ndf=8", "data.load_size=40", "num_samples=2",
                                              "pixel_weight=1", "gan_weight=0"])[0]

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(spec(4), straight)
    train(spec(2), resumed)
    state = load_state(state_path_for(resumed / "checkpoints" / "step-000002.safetensors"))
    counts = state["losses"]["pixel_loss"]["counts"]
    assert counts.sum() > 0 and int((counts > 0).sum()) > 1  # real batches counted, over several bins
    Trainer.resume(resumed, steps=4, progress=False, log=lambda _: None).fit()
    assert_same_tensors(straight / "checkpoints" / "step-000004.safetensors",
                        resumed / "checkpoints" / "step-000004.safetensors")
