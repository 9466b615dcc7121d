"""The training engine and `zoo train`, end to end on real photos."""
import json
from pathlib import Path

import torch

from zoo.checkpoint import load_state
from zoo.runfolder import latest_checkpoint, list_checkpoints
from zoo.engine import Trainer
from zoo.text import shown

from zoo.cli import main

from conftest import FAST, TINY, error_lines, run_zoo, tiny_spec, train


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def spec(steps, **flags):
    """The TINY spec on the embedded photos, logging every step."""
    return tiny_spec(steps=steps, **{"checkpoint_every": 2, "sample_every": 3, "log_every": 1, **flags})


def final_weights(run_dir):
    ckpt, _, _ = latest_checkpoint(run_dir)
    return ckpt


def test_train_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    proc = run_zoo("train", "--gen", "unet", "--disc", "patch", "--steps", "4", "--out", str(out),
                   "--set", "sample_every=2", "--set", "log_every=1", *TINY, check_rc=0)
    assert "using preset 'cpu'" in proc.stderr
    # precision auto (the default) on a CPU: bf16 where it has native bf16 maths (avx512_bf16 or AMX), else fp32
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("zoo: precision ")]
    if cpu_flags():
        used = "bf16" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "fp32"
        layout = "channels_last" if used == "bf16" else "NCHW"
        assert line.startswith(f"zoo: precision {used} (auto: ") and line.endswith(
            f"; {layout} layout; torch.compile off (auto: off on cpu; compile=on pays in long runs)"), line
        assert latest_checkpoint(out, with_state=True)[1]["precision"] == used
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
    # 3 columns (gray | prediction | truth) x 2 validation rows (num_samples=2) of 32 px cells shown at 128 px,
    # 2 px apart, under a 14 px title row
    assert grid.size == (3 * (128 + 2) + 2, 14 + 2 * (128 + 2) + 2)
    # checkpoint_every is 500: only the end of the run is saved
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000004.safetensors"]
    ckpt = final_weights(out)
    assert json.loads(ckpt.spec_json) == spec  # a checkpoint alone rebuilds the run


def test_samples_come_from_validation_images(tmp_path):
    trainer = Trainer.create(spec(1), run_dir=tmp_path / "r", progress=False)
    val_names, train_names = set(trainer.data.val.names), set(trainer.data.train.names)
    # the embedded photos: 7 for training, 2 held out, and the sample grid shows the held-out ones
    assert val_names == {"skimage:coffee", "matplotlib:grace_hopper.jpg"} and len(train_names) == 7
    assert not val_names & train_names


# Exact resume (fp32, bf16, fp16): tests/test_precision.py.


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = train(spec(2), tmp_path / "a").models.generator.state_dict()
    b = train(spec(2), tmp_path / "b").models.generator.state_dict()
    c = train(spec(2, seed=1), tmp_path / "c").models.generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoint_contains_training_state(tmp_path):
    train(spec(2, **{"gen_optim.lr": 3e-4, "disc_optim.lr": 1e-4}), tmp_path / "r")
    ckpt, state, notes = latest_checkpoint(tmp_path / "r", with_state=True)
    assert ckpt.step == 2 and state["step"] == 2 and notes == []
    assert set(state) >= {"gen_optim", "disc_optim", "rng"}
    saved = load_state(ckpt.state_path)
    # the optimizers' own state: the run's learning rates, and Adam's step count after 2 steps
    assert saved["gen_optim"]["param_groups"][0]["lr"] == 3e-4 and saved["disc_optim"]["param_groups"][0]["lr"] == 1e-4
    assert {float(s["step"]) for s in saved["gen_optim"]["state"].values()} == {2.0}


def test_a_run_is_not_overwritten_and_resume_continues_it_unchanged(tmp_path, capsys):
    out = tmp_path / "run"
    train(spec(2), out)
    before = {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()}
    # the same --out again: refused, pointing at --resume (in-process: no training starts, nothing is written)
    assert main(["train", "--steps", "1", "--out", str(out), *TINY]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert f"already has checkpoints: continue it with --resume {shown(out)}" in line
    # --resume continues the run's own spec: changing it is refused
    assert main(["train", "--resume", str(out), "--gen", "unet"]) == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "--resume continues a run" in line
    assert {p.name: p.read_bytes() for p in (out / "checkpoints").iterdir()} == before
    run_zoo("train", "--resume", str(out), "--steps", "3", "--no-progress", env=FAST, check_rc=0)
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [
        "step-000002.safetensors", "step-000003.safetensors"]
    assert [json.loads(line)["step"] for line in (out / "losses.jsonl").read_text().splitlines()
            if "d_real" in line] == [1, 2, 3]


def test_pretraining_stage_then_gan(tmp_path):
    t = train(spec(2, **{"pretrain.steps": 2}), tmp_path / "p")
    rows = [json.loads(line) for line in (tmp_path / "p" / "losses.jsonl").read_text().splitlines()]
    stages = [r["stage"] for r in rows if "stage" in r]
    assert stages == ["pretrain", "pretrain", "gan", "gan"]
    assert "d_real" not in rows[0] and "d_real" in rows[-2 if "val_l1" in rows[-1] else -1]
    assert t.step == 4
