"""Reliability corpus, the run folder: resume flags, --out folders, the writer lock, odd names, full disks, out of
memory, foreign weights, leftovers of a killed save.

The real `zoo train` command on real files (`run_zoo`: its entry point in this process, a `python -m zoo`
subprocess where a process is the point): real signals and kills sent to a real process, a real second process
holding the lock, a real tmpfs for the full disk (skipped where it cannot be mounted), a real third-party plugin
whose forward fails a real allocation. In every failure case: the documented exit code, one `zoo: error:` line, no traceback, and nothing
of the run or of the user's files changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from zoo.runfolder import list_checkpoints
from zoo.spec import spec_from_json
from zoo.text import shown

from conftest import FAST, TINY, expect_error, expect_ok, fill, make_plugin_dist, run_zoo, tiny_args


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), folders included as names."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def run_state(run: Path) -> dict[str, str]:
    """What a refused command must leave as it was: spec.json, the loss log and every checkpoint file."""
    return {k: v for k, v in tree_digest(run).items() if not k.endswith(".zoo.lock")}


def train(photos: Path, out: Path, steps: int, *extra: str) -> subprocess.CompletedProcess:
    proc = run_zoo(*tiny_args(photos, out, steps, "--set", "checkpoint_every=1", *extra), env=FAST)
    expect_ok(proc)
    return proc


def wait_for(predicate, proc: subprocess.Popen, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_long_run(photos: Path, out: Path) -> subprocess.Popen:
    """A tiny run of many steps that checkpoints every step, started in the background."""
    args = tiny_args(photos, out, 5000, "--set", "checkpoint_every=1", "--set", "sample_every=100000")
    proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **FAST})
    wait_for(lambda: list_checkpoints(out / "checkpoints"), proc, "a first checkpoint")
    return proc


# ----------------------------------------------------------------------------------------------------
# 1. Resume flags go through the same validation as a new run, before anything is written


@pytest.fixture(scope="module")
def short_run(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("resume") / "run"
    train(photos, out, 2)
    return out


@pytest.mark.parametrize("flags, words", [
    (["--steps", "-1"], "steps: Input should be greater than or equal to 1"),
    (["--steps", "0"], "steps: Input should be greater than or equal to 1"),
    (["--epochs", "-3"], "epochs: Input should be greater than or equal to 1"),
    (["--device", "bogus"], "device: 'bogus' is not a device: use auto, cpu, cuda, cuda:N or mps"),
    (["--device", "cuda:7"], "cuda:7"),  # a well-formed device this machine does not have
])
def test_resume_flags_are_validated_before_anything_is_written(short_run, flags, words):
    before = run_state(short_run)
    proc = run_zoo("train", "--resume", str(short_run), *flags, "--no-progress", env=FAST)
    line = expect_error(proc, 2, words)
    if flags[0] != "--device" or flags[1] == "bogus":
        assert "nothing was changed" in line and f"--resume '{short_run}'" in line
    assert run_state(short_run) == before


def test_a_refused_resume_leaves_a_run_that_resumes_and_colorizes(short_run, photos, tmp_path):
    for flags in (["--steps", "-1"], ["--device", "bogus"]):
        run_zoo("train", "--resume", str(short_run), *flags, "--no-progress", env=FAST)
    colorized = run_zoo("colorize", str(photos / "coffee.png"), "--model", str(short_run), "--out",
                        str(tmp_path / "color"), "--no-progress", env=FAST)
    expect_ok(colorized)
    assert (tmp_path / "color" / "coffee.png").is_file()
    run = tmp_path / "copy"
    shutil.copytree(short_run, run)
    spec_before = (run / "spec.json").read_bytes()
    expect_ok(run_zoo("train", "--resume", str(run), "--steps", "3", "--no-progress", env=FAST))
    assert list_checkpoints(run / "checkpoints")[-1].name == "step-000003.safetensors"
    assert json.loads((run / "spec.json").read_text())["steps"] == 3  # written with the new checkpoint
    assert json.loads(spec_before)["steps"] == 2


# ----------------------------------------------------------------------------------------------------
# 2. --out: a new folder, an empty one or one zoo made; never a folder of the user's files


def test_out_dot_next_to_the_config_is_refused_and_nothing_changes(tmp_path, photos):
    work = tmp_path / "work"
    work.mkdir()
    (work / "spec.json").write_text(json.dumps({"steps": 2, "data": {"source": str(photos)}}))
    (work / "notes.txt").write_text("mine")
    before = tree_digest(work)
    proc = run_zoo("train", "--config", "spec.json", "--out", ".", *TINY, cwd=work, env=FAST)
    expect_error(proc, 2, "--out '.' is a folder holding files zoo did not make", "notes.txt", "nothing in it was "
                 "changed")
    assert tree_digest(work) == before


def test_out_inside_or_equal_to_the_data_folder(tmp_path, photos):
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    before = tree_digest(data)
    expect_error(run_zoo(*tiny_args(data, data, 1), env=FAST), 2, "holding files zoo did not make")
    assert tree_digest(data) == before
    # the run folder inside the data folder: its sample grids and checkpoints are never training data
    first = train(data, data / "run2", 2)
    counts = [line for line in first.stderr.splitlines() if line.startswith(f"zoo: data {data}")]
    assert counts and "5 train / 1 validation" in counts[0], first.stderr
    assert list((data / "run2" / "samples").glob("*.png"))
    resumed = run_zoo("train", "--resume", str(data / "run2"), "--steps", "3", "--no-progress", env=FAST)
    expect_ok(resumed)
    assert "5 train / 1 validation" in resumed.stderr
    other = train(data, data / "run3", 1)
    assert "5 train / 1 validation" in other.stderr


def test_out_that_is_a_file_or_has_odd_characters_is_one_escaped_line(tmp_path, photos):
    taken = tmp_path / "taken\x1b[2J"
    taken.write_text("a file where the run folder should go")
    proc = run_zoo(*tiny_args(photos, taken, 1), env=FAST)
    line = expect_error(proc, 2, "is a file, not a folder", "taken\\x1b[2J")
    assert "\x1b" not in proc.stderr and "\x1b" not in line
    assert taken.read_text() == "a file where the run folder should go"


def test_out_that_is_a_fifo_is_one_line(tmp_path, photos):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    expect_error(run_zoo(*tiny_args(photos, fifo, 1), env=FAST), 2, "is a FIFO, not a folder")


def test_a_lock_file_that_is_a_symbolic_link_is_refused_and_its_target_untouched(short_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    (run / ".zoo.lock").unlink(missing_ok=True)
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's file")
    (run / ".zoo.lock").symlink_to(mine)
    before = run_state(run)
    proc = run_zoo("train", "--resume", str(run), "--steps", "3", "--no-progress", env=FAST)
    expect_error(proc, 2, "cannot take the lock", "it must be a plain file zoo made")
    assert mine.read_text() == "the user's file" and run_state(run) == before


def test_a_zoo_run_folder_without_checkpoints_can_be_reused(tmp_path, photos):
    out = tmp_path / "run"
    train(photos, out, 1)
    shutil.rmtree(out / "checkpoints")  # as a run killed before its first checkpoint would leave it
    expect_ok(run_zoo(*tiny_args(photos, out, 1), env=FAST))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-000001.safetensors"]


# ----------------------------------------------------------------------------------------------------
# 3. One writer per run folder; 8. a killed save's temporary files go with the next good save


def test_a_second_writer_is_refused_naming_the_pid(tmp_path, photos):
    out = tmp_path / "run"
    first = start_long_run(photos, out)
    try:
        spec = (out / "spec.json").read_bytes()
        second = run_zoo("train", "--resume", str(out), "--steps", "6000", "--no-progress", env=FAST)
        expect_error(second, 2, f"run folder '{out}' is in use by another zoo process (PID {first.pid})",
                     "nothing was written")
        assert (out / "spec.json").read_bytes() == spec
        assert first.poll() is None  # the first run was not disturbed
    finally:
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=240)
    assert first.returncode == 130, stderr
    step = list_checkpoints(out / "checkpoints")[-1].name
    steps = int(step.split("-")[1].split(".")[0])
    expect_ok(run_zoo("train", "--resume", str(out), "--steps", str(steps + 1), "--no-progress", env=FAST))


def test_sigkill_releases_the_lock_and_the_next_save_removes_leftovers(tmp_path, photos):
    out = tmp_path / "run"
    first = start_long_run(photos, out)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=60)
    ckpts = out / "checkpoints"
    # what a save killed half-way leaves (fresh files: the lock, not their age, says they are leftovers)
    leftovers = [ckpts / ".step-999998.safetensors.abc123.tmp", ckpts / ".step-999998.state.pt.xyz789.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a checkpoint")
    newest = list_checkpoints(ckpts)[-1]
    step = int(newest.name.split("-")[1].split(".")[0])
    proc = run_zoo("train", "--resume", str(out), "--steps", str(step + 1), "--no-progress", env=FAST)
    expect_ok(proc)
    assert not any(p.exists() for p in leftovers) and not list(ckpts.glob("*.tmp"))
    assert list_checkpoints(ckpts)[-1].name == f"step-{step + 1:06d}.safetensors"


# ----------------------------------------------------------------------------------------------------
# 4. Names that are not UTF-8


def run_bytes(*args: str) -> tuple[int, bytes, str]:
    """The zoo command with arguments that may hold undecodable bytes; (rc, stdout bytes, stderr text)."""
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, env={**os.environ, **FAST},
                          timeout=300)
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "surrogateescape")


def test_data_and_out_folders_whose_names_are_not_utf8(tmp_path, photos):
    data = os.fsdecode(os.fsencode(tmp_path) + b"/lat\xe9dir")
    out = os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9sult")
    shutil.copytree(photos, data)
    rc, stdout, stderr = run_bytes(*tiny_args(Path(data), Path(out), 2))
    assert rc == 0 and "Traceback" not in stderr, stderr
    assert stdout == os.fsencode(out) + b"\n"  # the folder's own bytes, usable by a script
    spec = spec_from_json((Path(out) / "spec.json").read_text(encoding="ascii"))  # ASCII JSON, \udcXX escapes
    assert spec.data.source == data
    assert f"-> {shown(out)}" in stderr and "r\\xe9sult" in stderr  # shown escaped in zoo's log lines
    assert "lat\\xe9dir" in stderr and "\\udc" not in stderr  # every log line, the data line too
    assert "TensorBoard" not in stderr and list((Path(out) / "tb").glob("events.out.tfevents.*"))  # events written
    rc, _, stderr = run_bytes("train", "--resume", out, "--steps", "3", "--no-progress")
    assert rc == 0 and "Traceback" not in stderr, stderr
    assert list_checkpoints(Path(out) / "checkpoints")[-1].name == "step-000003.safetensors"


def test_a_spec_json_with_invalid_utf8_is_one_line_on_resume(short_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    raw = (run / "spec.json").read_bytes()
    assert b'"patch"' in raw
    (run / "spec.json").write_bytes(raw.replace(b'"patch"', b'"pa\xff\xfetch"'))
    before = run_state(run)
    proc = run_zoo("train", "--resume", str(run), "--steps", "3", "--no-progress", env=FAST)
    expect_error(proc, 2, "spec.json' is corrupt: not UTF-8 text")
    assert run_state(run) == before


# ----------------------------------------------------------------------------------------------------
# 5. A sample grid that cannot be written: a warning, and training goes on


def test_a_sample_grid_that_cannot_be_written_warns_and_training_goes_on(tmp_path, photos):
    out = tmp_path / "run"
    train(photos, out, 2, "--set", "sample_every=1")
    shutil.rmtree(out / "samples")
    (out / "samples").write_text("a file where the samples folder goes")
    proc = run_zoo("train", "--resume", str(out), "--steps", "4", "--no-progress", env=FAST)
    expect_ok(proc)
    warnings = [line for line in proc.stderr.splitlines() if "cannot write the sample grid" in line]
    assert len(warnings) == 2 and "step 3" in warnings[0] and "training goes on" in warnings[0], proc.stderr
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-000004.safetensors"


def test_a_full_disk_warns_for_samples_and_stops_cleanly_at_the_checkpoint(small_disk, photos):
    out = small_disk / "run"
    train(photos, out, 2, "--set", "sample_every=1", "--set", "keep_checkpoints=2")
    before = {k: v for k, v in run_state(out).items() if k.startswith("checkpoints")}
    fill(small_disk)
    proc = run_zoo("train", "--resume", str(out), "--steps", "4", "--no-progress", env=FAST)
    expect_error(proc, 2, "cannot write checkpoint", "No space left on device", "earlier checkpoints are intact")
    assert any("cannot write the sample grid of step 3" in line for line in proc.stderr.splitlines()), proc.stderr
    assert {k: v for k, v in run_state(out).items() if k.startswith("checkpoints")} == before
    (small_disk / "filler").unlink()
    expect_ok(run_zoo("train", "--resume", str(out), "--steps", "4", "--no-progress", env=FAST))
    assert list_checkpoints(out / "checkpoints")[-1].name == "step-000004.safetensors"


# ----------------------------------------------------------------------------------------------------
# 6. Out of memory in a step


HUNGRY = """
    import torch
    from pydantic import Field
    from torch import nn

    import zoo


    class HungryOptions(zoo.Options):
        after: int = Field(3, ge=0, description="training forwards before one asks for an impossible allocation")


    class Hungry(nn.Module):
        def __init__(self, options):
            super().__init__()
            self.after, self.calls = options.after, 0
            self.net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh())

        def forward(self, L):
            if self.training and torch.is_grad_enabled():
                self.calls += 1
                if self.calls > self.after:  # a real allocation the allocator cannot serve (2**62 bytes)
                    torch.empty(2**62, dtype=torch.uint8, device=L.device)
            return self.net(L)


    @zoo.hookimpl
    def register_generators(register):
        register("hungry", lambda options, context: Hungry(options), HungryOptions)
"""


def test_out_of_memory_in_a_step_says_what_to_lower_and_keeps_the_checkpoints(tmp_path, photos):
    env = {**make_plugin_dist(tmp_path / "site", "hungry", {"hungry_mod": HUNGRY}, {"hungry": "hungry_mod"}), **FAST}
    out = tmp_path / "run"
    args = ["train", "--data", str(photos), "--gen", "hungry", "--steps", "10", "--out", str(out), "--image-size",
            "32", "--batch-size", "4", "--set", "discriminator.options.ndf=8", "--set", "checkpoint_every=1",
            "--set", "keep_checkpoints=5", "--no-progress"]
    proc = run_zoo(*args, env=env)
    expect_error(proc, 3, "out of memory in step 4 (gan stage, batch 4 of 32 px", "--batch-size", "--image-size",
                 "step-000003.safetensors, is kept")
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == [f"step-{s:06d}.safetensors" for s in (1, 2, 3)]


# ----------------------------------------------------------------------------------------------------
# 7. Weights that do not fit: say what is wrong, name the checkpoint, fall back on resume


def test_foreign_weights_are_named_and_resume_falls_back(tmp_path, photos):
    run, other = tmp_path / "run", tmp_path / "other"
    train(photos, run, 3)
    train(photos, other, 1, "--set", "generator.options.ngf=16")
    newest = run / "checkpoints" / "step-000003.safetensors"
    with safe_open(str(newest), framework="pt") as fh:
        metadata = fh.metadata()
    foreign = load_file(str(other / "checkpoints" / "step-000001.safetensors"))
    save_file(foreign, str(newest), metadata=metadata)  # run's spec, another run's (wider) weights
    proc = run_zoo("train", "--resume", str(run), "--steps", "4", "--no-progress", env=FAST)
    expect_ok(proc)
    notes = [line for line in proc.stderr.splitlines() if "skipped damaged checkpoint" in line]
    assert len(notes) == 1, proc.stderr
    assert "step-000003.safetensors" in notes[0] and "generator weights do not fit" in notes[0]
    assert "shape mismatches ('" in notes[0] and "checkpoint (16," in notes[0] and "net (8," in notes[0]
    assert "falling back to an older checkpoint" in notes[0]
    assert "from step-000002.safetensors (step 2 of 4)" in proc.stderr

    # keys that are not there at all: counted and named; the model is refused by `zoo colorize` in one line
    tensors = load_file(str(newest))
    dropped = sorted(k for k in tensors if k.startswith("generator."))[:2]
    missing = {k: v for k, v in tensors.items() if k not in dropped}
    broken = tmp_path / "broken.safetensors"
    save_file(missing, str(broken), metadata=metadata)
    proc = run_zoo("colorize", str(photos / "coffee.png"), "--model", str(broken), "--out", str(tmp_path / "c"),
                   "--no-progress", env=FAST)
    line = expect_error(proc, 2, f"checkpoint '{broken}'", "generator weights do not fit")
    assert "2 missing keys (" in line and shown(dropped[0][len("generator."):]) in line


# ----------------------------------------------------------------------------------------------------
# A new run into a folder another new run is writing; --out paths through folders not made yet


def test_a_new_run_into_the_folder_of_a_running_new_run_changes_nothing(tmp_path, photos, capsys):
    from conftest import zoo_here

    out = tmp_path / "run"
    args = tiny_args(photos, out, 5000, "--set", "checkpoint_every=100000", "--set", "sample_every=100000")
    first = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, **FAST})
    try:  # before its first checkpoint: the folder holds a spec.json and a loss log, no checkpoint yet
        wait_for(lambda: (out / "losses.jsonl").is_file() and (out / "losses.jsonl").stat().st_size, first, "a log")
        spec, log = (out / "spec.json").read_bytes(), (out / "losses.jsonl").read_bytes()
        second = zoo_here(capsys, *tiny_args(photos, out, 3, "--seed", "7"))
        expect_error(second, 2, f"run folder {shown(out)} is in use by another zoo process (PID {first.pid})",
                     "nothing was written")
        assert (out / "spec.json").read_bytes() == spec  # not the second run's spec (seed 7)
        assert (out / "losses.jsonl").read_bytes().startswith(log)  # the first run's log not deleted
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=240)
    assert first.returncode == 130


def test_out_through_a_folder_not_made_yet_is_checked_where_it_lands(tmp_path, photos, capsys):
    from conftest import zoo_here

    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    # 'mine/new/..' is 'mine' once 'new' is made: a folder of the user's files (also 'runs/../../..': the root)
    proc = zoo_here(capsys, *tiny_args(photos, user / "new" / "..", 1))
    expect_error(proc, 2, f"--out {shown(user)} is a folder holding files zoo did not make (1 entry: 'notes.txt')")
    assert sorted(os.listdir(user)) == ["notes.txt"] and (user / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("entry", ["losses.jsonl", "samples", "checkpoints", "spec.json"])
def test_a_run_folder_entry_that_is_a_symbolic_link_is_refused_and_its_target_untouched(short_run, tmp_path, entry,
                                                                                        capsys):
    from conftest import zoo_here

    run = tmp_path / "run"
    shutil.copytree(short_run, run)
    target = tmp_path / "users" / entry  # the user's own file or folder, where the link points
    target.parent.mkdir()
    shutil.move(run / entry, target)
    (run / entry).symlink_to(target)
    before = sorted((p.name, p.read_bytes()) for p in ([target] if target.is_file() else target.iterdir()))
    proc = zoo_here(capsys, "train", "--resume", str(run), "--steps", "4", "--no-progress")
    expect_error(proc, 2, f"run folder {shown(run)}: {shown(entry)} is a symbolic link", "nothing was written")
    assert sorted((p.name, p.read_bytes()) for p in ([target] if target.is_file() else target.iterdir())) == before
