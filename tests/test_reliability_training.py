"""Reliability corpus, faults during training: signals, NaN/Inf, damaged checkpoints, failed writes, unsafe files.

Real runs of the `zoo` command (signals sent to a real process, a real third-party plugin that turns the loss
bad), real files damaged on disk. In every case: the documented exit code, one `zoo: error:` line, no
traceback, and earlier checkpoints intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.checkpoint import NonFiniteWeights
from zoo.runfolder import list_checkpoints, save_checkpoint
from zoo.fileio import atomic_write
from zoo.engine import Trainer
from zoo.text import shown

from conftest import (FAST, assert_same_tensors, expect_error, expect_ok, make_plugin_dist, run_zoo, tiny_args,
                      tiny_spec, train, zoo_here)

STEPS = 30


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


# ----------------------------------------------------------------------------------------------------
# Signals


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, photos):
    """The final checkpoint of the same STEPS-step run, never interrupted (trained in this process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = train(tiny_spec(photos, STEPS, log_every=1, checkpoint_every=1000, sample_every=1000),
                             tmp_path_factory.mktemp("uninterrupted") / "run")
    finally:
        torch.set_num_threads(before)
    return trainer.paths.checkpoints / f"step-{STEPS:06d}.safetensors"


@pytest.mark.parametrize("sig, rc", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_stops_cleanly_and_resume_ends_with_the_same_weights(tmp_path, photos, uninterrupted, sig, rc):
    out = tmp_path / "run"
    args = tiny_args(photos, out, STEPS, "--set", "log_every=1", "--set", "checkpoint_every=1000",
                     "--set", "sample_every=1000")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **FAST})
    losses = out / "losses.jsonl"
    deadline = time.monotonic() + 240
    while not (losses.is_file() and losses.stat().st_size > 0):  # training has started: step 1 is logged
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=240)
    stopped = subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)
    line = expect_error(stopped, rc, f"stopped by {sig.name} at step ", f"continue with: zoo train --resume {shown(out)}")
    step = int(line.split(" at step ")[1].split()[0])
    assert 1 <= step < STEPS
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved] == [f"step-{step:06d}.safetensors"] and shown(saved[0]) in line
    assert f"zoo: {sig.name} received: finishing step " in stderr and "saving a checkpoint" in stderr

    resumed = run_zoo("train", "--resume", str(out), "--no-progress", env=FAST)
    expect_ok(resumed)
    assert f"from step-{step:06d}.safetensors (step {step} of {STEPS})" in resumed.stderr
    assert_same_tensors(out / "checkpoints" / f"step-{STEPS:06d}.safetensors", uninterrupted)
    steps = [json.loads(row)["step"] for row in losses.read_text().splitlines() if "d_real" in row]
    assert steps == list(range(1, STEPS + 1))  # the loss log has each step once, none lost


# ----------------------------------------------------------------------------------------------------
# NaN / Inf

BAD_LOSS = """
    import torch
    from pydantic import Field
    from torch import nn

    import zoo


    class BadL1Options(zoo.Options):
        after: int = Field(3, ge=0, description="training steps with a true L1 before things go wrong")
        value: float = Field(float("nan"), description="what the loss becomes (bad_l1)")


    class BadL1(nn.Module):
        def __init__(self, options, poison_gradient):
            super().__init__()
            self.options, self.poison_gradient, self.calls = options, poison_gradient, 0

        def forward(self, fake, real):
            loss = (fake - real).abs().mean()
            if not torch.is_grad_enabled():  # zoo's contract probe
                return loss
            self.calls += 1
            if self.calls <= self.options.after:
                return loss
            if self.poison_gradient:  # the loss stays finite, its gradient is nan: d sqrt(x)/dx at 0 times 0
                return loss + 0.0 * torch.sqrt((fake * 0.0).sum())
            return loss * self.options.value


    @zoo.hookimpl
    def register_pixel_losses(register):
        register("bad_l1", lambda options, context: BadL1(options, False), BadL1Options)
        register("bad_grad_l1", lambda options, context: BadL1(options, True), BadL1Options)
"""


@pytest.fixture(scope="module")
def bad_loss_env(tmp_path_factory):
    env = make_plugin_dist(tmp_path_factory.mktemp("site") / "badloss", "badloss", {"badloss_mod": BAD_LOSS},
                           {"badloss": "badloss_mod"})
    return {**env, **FAST}


@pytest.mark.parametrize("loss, value, words", [
    ("bad_l1", "nan", "loss g_pixel became nan at step 4 (gan stage); stopped without saving it"),
    ("bad_grad_l1", "nan", "weights 'generator."),  # finite loss, nan gradient: caught when step 4 is saved
])
def test_nan_or_inf_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, photos, bad_loss_env,
                                                                             loss, value, words):
    out = tmp_path / "run"
    proc = run_zoo(*tiny_args(photos, out, 10, "--pixel-loss", loss, "--set", f"pixel_loss.options.value=.{value}",
                              "--set", "checkpoint_every=1", "--set", "keep_checkpoints=5"), env=bad_loss_env)
    line = expect_error(proc, 3, words, "step-000003.safetensors", f"--resume {shown(out)}")
    if loss == "bad_grad_l1":
        assert "hold nan at step 4: not saved" in line
    saved = list_checkpoints(out / "checkpoints")
    assert [p.name for p in saved] == [f"step-{s:06d}.safetensors" for s in (1, 2, 3)]
    for path in saved:
        assert all(bool(torch.isfinite(t).all()) for t in tensors(path).values() if t.is_floating_point())
    assert not list((out / "checkpoints").glob("*.tmp")) and not list((out / "checkpoints").glob(".*"))


def test_inf_loss_stops_before_any_checkpoint(tmp_path, photos, one_thread):
    import textwrap
    import types

    from zoo.engine import TrainingStopped
    from zoo.registry import load_registry

    mod = types.ModuleType("badloss_here")
    exec(compile(textwrap.dedent(BAD_LOSS), "badloss_here", "exec"), mod.__dict__)
    registry = load_registry(extra_plugins=(("badloss_here", mod),))
    spec = tiny_spec(photos, 5, sample_every=1000, **{"pixel_loss.name": "bad_l1"})
    spec = spec.model_copy(update={"pixel_loss": spec.pixel_loss.model_copy(
        update={"options": {"after": 1, "value": float("inf")}})})
    trainer = Trainer.create(spec, run_dir=tmp_path / "run", registry=registry, progress=False, log=lambda m: None)
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    assert info.value.exit_code == 3
    assert str(info.value).startswith("loss g_pixel became inf at step 2 (gan stage); stopped without saving it; "
                                      "no checkpoint was saved yet")
    assert not list_checkpoints(tmp_path / "run" / "checkpoints")


def test_non_finite_weights_before_any_checkpoint(tmp_path):
    net = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        net.weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteWeights, match=r"'generator.weight' hold inf at step 7: not saved, no checkpoint"):
        save_checkpoint(tmp_path / "checkpoints", 7, "{}", net, None, None)
    assert not list_checkpoints(tmp_path / "checkpoints")


# ----------------------------------------------------------------------------------------------------
# Damaged checkpoints, failed writes


def test_resume_falls_back_past_damaged_checkpoints_and_says_so(tmp_path, photos, one_thread):
    run = tmp_path / "run"
    train(tiny_spec(photos, 4, checkpoint_every=1, sample_every=1000), run)
    ckpts = run / "checkpoints"
    assert [p.name for p in list_checkpoints(ckpts)] == [f"step-{s:06d}.safetensors" for s in (2, 3, 4)]
    # a crash in the middle of writing step 4's weights (what atomic writes prevent, done by hand), a torn
    # training state for step 3, and the temporary file a save killed with SIGKILL leaves behind
    weights = (ckpts / "step-000004.safetensors").read_bytes()
    (ckpts / "step-000004.safetensors").write_bytes(weights[: len(weights) // 3])
    (ckpts / "step-000003.state.pt").write_bytes((ckpts / "step-000003.state.pt").read_bytes()[:100])
    leftover = ckpts / ".step-000005.safetensors.k1ll3d.tmp"
    leftover.write_bytes(weights[:1000])
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))

    proc = run_zoo("train", "--resume", str(run), "--steps", "5", "--no-progress", env=FAST)
    expect_ok(proc)
    notes = [line for line in proc.stderr.splitlines() if "skipped damaged checkpoint" in line]
    assert len(notes) == 2, proc.stderr
    assert "step-000004.safetensors" in notes[0] and "falling back to an older checkpoint" in notes[0]
    assert "step-000003.safetensors" in notes[1] and "training state" in notes[1]
    assert "resuming" in proc.stderr and "from step-000002.safetensors (step 2 of 5)" in proc.stderr
    assert [p.name for p in list_checkpoints(ckpts)] == [f"step-{s:06d}.safetensors" for s in (3, 4, 5)]
    assert not leftover.exists() and not list(ckpts.glob("*.tmp"))
    # nothing lost: the damaged steps were trained again, and the run ends as one that was never damaged
    straight = train(tiny_spec(photos, 5, checkpoint_every=1, sample_every=1000), tmp_path / "straight")
    for step in (4, 5):
        assert_same_tensors(ckpts / f"step-{step:06d}.safetensors",
                            straight.paths.checkpoints / f"step-{step:06d}.safetensors")


def test_every_checkpoint_damaged_or_unsafe_is_one_line_and_runs_nothing(tmp_path, photos, one_thread):
    run = tmp_path / "run"
    train(tiny_spec(photos, 2, checkpoint_every=1, sample_every=1000), run)
    ckpts = run / "checkpoints"
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    # step 2: a torch.save zip that would run a command when unpickled; step 1: the same as a raw pickle
    torch.save({"step": 2, "gen_optim": Payload()}, ckpts / "step-000002.state.pt")
    (ckpts / "step-000001.state.pt").write_bytes(pickle.dumps({"step": 1, "x": Payload()}))
    before = digest(ckpts)
    proc = run_zoo("train", "--resume", str(run), "--steps", "3", "--no-progress", env=FAST)
    line = expect_error(proc, 2, "every checkpoint in", "is damaged", "step-000002.safetensors",
                        "step-000001.safetensors")
    assert "unsafe" in line or "refused" in line
    assert not marker.exists()
    assert digest(ckpts) == before  # nothing deleted or rewritten


def test_a_failed_checkpoint_write_is_one_line_and_leaves_no_temporary_file(tmp_path, photos, one_thread):
    run = tmp_path / "run"
    train(tiny_spec(photos, 1, sample_every=1000), run)
    ckpts = run / "checkpoints"
    before = digest(ckpts)
    (ckpts / "step-000002.safetensors").mkdir()  # the rename into place fails, as on a broken file system
    proc = run_zoo("train", "--resume", str(run), "--steps", "2", "--no-progress", env=FAST)
    expect_error(proc, 2, f"cannot write checkpoint {shown(ckpts / 'step-000002.safetensors')}", "earlier "
                 "checkpoints are intact", f"zoo train --resume {shown(run)}")
    assert {k: v for k, v in digest(ckpts).items() if k.startswith("step-000001")} == before
    assert not list(ckpts.glob("*.tmp")) and not list(ckpts.glob(".*"))


def test_atomic_write_keeps_the_old_file_when_a_write_fails(tmp_path):
    target = tmp_path / "spec.json"
    target.write_text("old")

    def crash_half_way(tmp):
        Path(tmp).write_text("half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, crash_half_way)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]
    atomic_write(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["spec.json"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it, not mkstemp's 0600


def test_out_folder_that_is_a_file_is_one_line(tmp_path, photos, capsys):
    (tmp_path / "taken").write_text("a file where the run folder should go")
    proc = zoo_here(capsys, *tiny_args(photos, tmp_path / "taken", 1))  # fails before training: in this process
    expect_error(proc, 2, str(tmp_path / "taken"))
    assert (tmp_path / "taken").read_text() == "a file where the run folder should go"  # left as it was
