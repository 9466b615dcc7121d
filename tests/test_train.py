"""The training engine and `zoo train`, end to end on real photos."""
import json

import pytest
import torch

from zoo.checkpoint import load_state
from zoo.runfolder import latest_checkpoint, list_checkpoints
from zoo.engine import Trainer
from zoo.spec import build_spec

from conftest import TINY, TINY_SET, run_zoo



def tiny_spec(steps, **flags):
    spec, _ = build_spec(None, None, {"data.image_size": 32, "data.batch_size": 4, "steps": steps,
                                      "checkpoint_every": 2, "sample_every": 3, "log_every": 1, **flags}, TINY_SET)
    return spec


def final_weights(run_dir):
    ckpt, _, _ = latest_checkpoint(run_dir)
    return ckpt


def test_train_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run_zoo("train", "--gen", "unet", "--disc", "patch", "--steps", "4", "--out", str(out),
                   "--set", "sample_every=2", "--set", "log_every=1", *TINY, check_rc=0)
    assert "using preset 'cpu'" in proc.stderr
    assert proc.stdout.strip() == str(out)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["generator"]["options"]["dropout"] == 0.5 and spec["steps"] == 4  # resolved: defaults filled
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "d_real" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    for r in train_rows:
        assert all(k in r for k in ("d_real", "d_fake", "g_gan", "g_pixel", "img_per_s"))
    assert any("val_l1" in r for r in rows)
    samples = sorted(p.name for p in (out / "samples").glob("*.png"))
    assert samples == ["step-000002.png", "step-000004.png"]
    from PIL import Image
    grid = Image.open(out / "samples" / "step-000004.png")
    assert grid.width > grid.height  # 3 columns (gray | prediction | truth) of 2 validation rows
    ckpts = list_checkpoints(out / "checkpoints")
    assert ckpts and ckpts[-1].name == "step-000004.safetensors"
    ckpt = final_weights(out)
    assert json.loads(ckpt.spec_json) == spec  # a checkpoint alone rebuilds the run


def test_samples_come_from_validation_images(tmp_path):
    trainer = Trainer.create(tiny_spec(1), run_dir=tmp_path / "r", progress=False)
    val_names = set(trainer.data.val.names)
    assert val_names and not val_names & set(trainer.data.train.names)


def _train(spec, run_dir):
    t = Trainer.create(spec, run_dir=run_dir, progress=False, log=lambda m: None)
    t.fit()
    return t


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight = _train(tiny_spec(6), tmp_path / "straight")
    _train(tiny_spec(3), tmp_path / "resumed")  # stops after step 3 with a checkpoint
    resumed = Trainer.resume(tmp_path / "resumed", steps=6, progress=False, log=lambda m: None)
    assert resumed.step == 3
    resumed.fit()
    for a, b in ((straight.models.generator, resumed.models.generator),
                 (straight.models.discriminator, resumed.models.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    # and the run really changed the weights (the comparison above is not trivially true)
    fresh = Trainer.create(tiny_spec(6), run_dir=tmp_path / "fresh", progress=False, log=lambda m: None)
    assert not torch.equal(next(iter(fresh.models.generator.state_dict().values())),
                           next(iter(straight.models.generator.state_dict().values())))


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = _train(tiny_spec(2), tmp_path / "a").models.generator.state_dict()
    b = _train(tiny_spec(2), tmp_path / "b").models.generator.state_dict()
    c = _train(tiny_spec(2, seed=1), tmp_path / "c").models.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_contains_training_state(tmp_path):
    _train(tiny_spec(2), tmp_path / "r")
    ckpt, state, notes = latest_checkpoint(tmp_path / "r", with_state=True)
    assert ckpt.step == 2 and state["step"] == 2 and not notes
    assert set(state) >= {"gen_optim", "disc_optim", "rng"}
    assert load_state(ckpt.state_path)["gen_optim"]["param_groups"][0]["lr"] == 2e-4


def test_resume_cli_continues_and_refuses_spec_changes(tmp_path):
    out = tmp_path / "run"
    run_zoo("train", "--steps", "2", "--out", str(out), *TINY, check_rc=0)
    bad = run_zoo("train", "--resume", str(out), "--gen", "unet")
    assert bad.returncode == 2 and "--resume continues a run" in bad.stderr
    run_zoo("train", "--resume", str(out), "--steps", "3", "--no-progress", check_rc=0)
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-000003.safetensors"


def test_refuses_to_overwrite_a_run(tmp_path):
    out = tmp_path / "run"
    run_zoo("train", "--steps", "1", "--out", str(out), *TINY, check_rc=0)
    proc = run_zoo("train", "--steps", "1", "--out", str(out), *TINY)
    assert proc.returncode == 2 and "--resume" in proc.stderr


def test_pretraining_stage_then_gan(tmp_path):
    spec = tiny_spec(2, **{"pretrain.steps": 2})
    t = _train(spec, tmp_path / "p")
    rows = [json.loads(line) for line in (tmp_path / "p" / "losses.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in rows if "stage" in r]
    assert stages == ["pretrain", "pretrain", "gan", "gan"]
    assert "d_real" not in rows[0] and "d_real" in rows[-2 if "val_l1" in rows[-1] else -1]
    assert t.step == 4
