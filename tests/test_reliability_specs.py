"""Reliability corpus, specs and config files: each mistake is one `zoo: error:` line, exit 2, and nothing
a config file holds can make zoo run code. tests/test_spec.py has the basic cases; these are the rest."""
from __future__ import annotations

import os

import pytest

from zoo.errors import SpecError
from zoo.spec import build_spec, parse_override, read_config

from conftest import TINY, run_zoo
from conftest import FAST, expect_error, one_error_line, tiny_spec, zoo_here


def train_cli(tmp_path, *args: str):
    return run_zoo("train", "--steps", "1", "--out", str(tmp_path / "run"), *TINY, *args, env=FAST)


@pytest.mark.parametrize("name, text, words", [
    # a component that cannot take the image size: caught when it is built, before any data is read
    ("deep_patch.yaml", "discriminator: {options: {n_layers: 5}}\n",
     "patch: n_layers 5 needs an image size >= 96; image size 32 is too small"),
    # out of range through a file (test_spec covers --set)
    ("negative_lr.yaml", "gen_optim:\n  lr: -0.001\n", "invalid spec: gen_optim.lr: Input should be greater than 0"),
])
def test_config_file_mistakes_via_cli(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    expect_error(train_cli(tmp_path, "--config", str(tmp_path / name)), 2, words)
    assert not (tmp_path / "run").exists()


def test_yaml_payload_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    config = tmp_path / "evil.yaml"
    config.write_text(f"steps: 1\ndata: !!python/object/apply:os.system ['touch {marker}']\n")
    proc = train_cli(tmp_path, "--config", str(config))
    expect_error(proc, 2, "line 2: refused YAML tag '!!python/object/apply:os.system'", "plain data only")
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch {m}']", "!!python/name:os.system",
                                 "!!python/object/new:subprocess.Popen [['touch', '{m}']]"])
def test_python_yaml_tags_never_run_from_files_or_set(tmp_path, tag):
    marker = tmp_path / "PWNED"
    payload = tag.format(m=marker)
    (tmp_path / "evil.yaml").write_text(f"steps: {payload}\n")
    with pytest.raises(SpecError, match="refused YAML tag"):
        read_config(tmp_path / "evil.yaml")
    path, value = parse_override(f"data.source={payload}")  # --set reads YAML scalars: a tag stays a string
    assert path == ["data", "source"] and value == payload
    assert not marker.exists()


@pytest.mark.parametrize("name, text, words", [
    ("twice.yaml", "steps: 1\nepochs: 2\nsteps: 3\n", "line 3: malformed YAML: duplicate key 'steps'"),
    ("nested_twice.yaml", "data:\n  image_size: 32\n  image_size: 64\n", "duplicate key 'image_size'"),
    ("dup.json", '{"steps": 1, "data": {"batch_size": 4, "batch_size": 8}}', "malformed JSON: duplicate key 'batch_size'"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ("inf_weight.toml", "pixel_weight = inf\n", "invalid spec: pixel_weight: Input should be a finite number"),
])
def test_config_files_that_would_silently_lose_a_value_or_crash(tmp_path, name, text, words):
    (tmp_path / name).write_text(text)
    with pytest.raises(SpecError) as info:
        build_spec(None, tmp_path / name)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_yaml_merge_keys_still_override(tmp_path):
    (tmp_path / "merge.yaml").write_text("base: &b {ngf: 16, n_down: 3}\ngenerator:\n  name: unet\n  options:\n"
                                         "    <<: *b\n    ngf: 8\n")
    assert read_config(tmp_path / "merge.yaml")["generator"]["options"] == {"ngf": 8, "n_down": 3}


def test_config_folder_and_binary_file(tmp_path):
    (tmp_path / "conf.yaml").mkdir()
    with pytest.raises(SpecError, match="is a folder"):
        read_config(tmp_path / "conf.yaml")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00\x01 not text")
    with pytest.raises(SpecError, match=r"bin\.json' is not UTF-8 text \(byte 0xff at offset 0\); save it as UTF-8"):
        read_config(tmp_path / "bin.json")
    (tmp_path / "latin1.yaml").write_bytes("steps: 3  # caf\xe9\n".encode("latin-1"))  # valid YAML, wrong encoding
    with pytest.raises(SpecError, match=r"latin1\.yaml' is not UTF-8 text \(byte 0xe9 at offset 15\)"):
        read_config(tmp_path / "latin1.yaml")


@pytest.mark.parametrize("override, words", [
    ("pixel_weight=.inf", "pixel_weight: Input should be a finite number"),
    ("gen_optim.lr=.nan", "gen_optim.lr: Input should be a finite number"),
    ("init.gain=.inf", "init.gain: Input should be a finite number"),
    ("seed=-1", "seed: Input should be greater than or equal to 0"),
    ("seed=9223372036854775807", "seed: Input should be less than or equal to 4294967295"),
    ("data.split_seed=-3", "data.split_seed: Input should be greater than or equal to 0"),
    ("data.image_size=100000", "data.image_size: Input should be less than or equal to 4096"),
])
def test_values_that_used_to_crash_mid_run_are_spec_errors(override, words):
    # seed 2**63-1 overflowed the torch generator seed at step 1; split_seed -3 crashed numpy; an inf pixel
    # weight only showed up as a NaN loss.
    with pytest.raises(SpecError) as info:
        build_spec(None, None, {}, [override])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_largest_seed_trains(tmp_path, photos):
    import torch

    from zoo.engine import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer.create(tiny_spec(photos, 1, seed=2**32 - 1, sample_every=1000), run_dir=tmp_path / "r",
                                 progress=False, log=lambda line: None)
        assert trainer.fit().name == "step-000001.safetensors"
    finally:
        torch.set_num_threads(threads)


def test_resume_of_missing_or_empty_run_folder(tmp_path):
    proc = run_zoo("train", "--resume", str(tmp_path / "nope"), "--no-progress", env=FAST)
    expect_error(proc, 2, "is not a zoo run folder (no spec.json)")
    # a run killed before its first checkpoint: spec.json, no checkpoints
    from zoo.engine import Trainer
    from zoo.errors import CheckpointError

    (tmp_path / "early").mkdir()
    (tmp_path / "early" / "spec.json").write_text(build_spec(None, None, {"steps": 1})[0].model_dump_json())
    with pytest.raises(CheckpointError, match="no checkpoint found in"):
        Trainer.resume(tmp_path / "early", progress=False, log=lambda line: None)
    (tmp_path / "early" / "spec.json").write_text('{"steps": 1, "generator": ')
    with pytest.raises(CheckpointError, match="spec.json' is corrupt"):
        Trainer.resume(tmp_path / "early", progress=False, log=lambda line: None)


# --- issue 16: configs that are not regular files, and names from outside shown escaped --------------------

def test_dev_null_is_an_empty_config_layer():
    assert read_config("/dev/null") == {}
    assert build_spec(None, "/dev/null")[0] == build_spec(None, None)[0]


@pytest.mark.parametrize("text, expected", [
    ('{"steps": 3, "data": {"batch_size": 2}}', {"steps": 3, "data": {"batch_size": 2}}),  # JSON
    ("# a comment\nsteps = 3\n[data]\nbatch_size = 2\n", {"steps": 3, "data": {"batch_size": 2}}),  # TOML
    ("steps: 3\ndata:\n  batch_size: 2\n", {"steps": 3, "data": {"batch_size": 2}}),  # YAML
])
def test_a_fifo_is_read_once_with_its_format_sniffed(tmp_path, text, expected):
    import os
    import threading

    fifo = tmp_path / "config"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as f:
            f.write(text)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert read_config(fifo) == expected
    finally:
        writer.join(timeout=10)


def test_process_substitution_config_trains(tmp_path, photos):
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    command = (f'"$0" -m zoo train --config <(printf "steps: 1\\nseed: 7\\n") --data "$1" --out "$2" '
               + " ".join(f"'{arg}'" for arg in TINY))
    proc = subprocess.run(["bash", "-c", command, sys.executable, str(photos), str(out)], capture_output=True,
                          text=True, env={**os.environ, **FAST}, timeout=300)
    assert proc.returncode == 0 and "does not exist" not in proc.stderr, proc.stderr
    import json

    spec = json.loads((out / "spec.json").read_text())
    assert spec["steps"] == 1 and spec["seed"] == 7


def test_only_a_missing_config_does_not_exist(tmp_path):
    with pytest.raises(SpecError, match=r"config file '.*nope.yaml' does not exist$"):
        read_config(tmp_path / "nope.yaml")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "gone.yaml")
    with pytest.raises(SpecError, match="is a broken link"):
        read_config(tmp_path / "dangling.yaml")
    (tmp_path / "notes.txt").write_text("steps: 1\n")
    with pytest.raises(SpecError, match=r"unknown format '.txt'; use .yaml, .yml, .toml or .json"):
        read_config(tmp_path / "notes.txt")


def test_config_keys_and_file_names_are_shown_escaped(tmp_path):
    (tmp_path / "keys.yaml").write_text('"\\e[2Jcolour\\nx": 1\n')
    with pytest.raises(SpecError) as info:
        build_spec(None, tmp_path / "keys.yaml")
    message = str(info.value)
    assert "\x1b" not in message and "\n" not in message and "\\x1b[2Jcolour\\nx: unknown key" in message
    evil = tmp_path / "a\x1b[2J\nb.yaml"
    evil.write_text("steps: [\n")
    with pytest.raises(SpecError) as info:
        read_config(evil)
    assert "\x1b" not in str(info.value) and "\n" not in str(info.value) and "a\\x1b[2J\\nb.yaml" in str(info.value)
    with pytest.raises(SpecError) as info:
        parse_override("\x1b[2J")
    assert "\x1b" not in str(info.value) and "--set '\\x1b[2J'" in str(info.value)


def test_a_config_name_that_is_not_utf8_is_shown_by_its_bytes(tmp_path):
    import os

    path = tmp_path / os.fsdecode(b"lat\xe9.yaml")
    path.write_text("steps: [\n")
    with pytest.raises(SpecError) as info:
        read_config(path)
    message = str(info.value)
    assert "lat\\xe9.yaml" in message and "malformed YAML" in message
    message.encode("utf-8")  # printable: no lone surrogate left in it


@pytest.mark.parametrize("name", ["..", ".", "", "../../escaped", "/tmp/abs", "a/b", "a\\b", "a\x1b[2Jb", "a\nb",
                                  "a" * 256])
def test_a_run_name_that_is_a_path_is_refused(name):
    with pytest.raises(SpecError) as info:
        tiny_spec(run_name=name)
    message = str(info.value)
    assert message.startswith("invalid spec: run_name: ") and "a run name is " in message, message
    assert "\x1b" not in message and "\n" not in message


def test_a_run_name_of_dots_never_trains_outside_out(tmp_path, capsys):
    from conftest import zoo_here

    proc = zoo_here(capsys, "train", "--steps", "1", *TINY, "--set", f"out={tmp_path / 'runs' / '..' / '..'}",
                    "--set", "run_name=..")
    expect_error(proc, 2, "invalid spec: run_name: ", "a run name is one folder name")
    assert sorted(os.listdir(tmp_path)) == [] and not os.path.exists(tmp_path.parent / "spec.json")


# ---- issue 16, round 3: usage errors and device names are one clear line ------------------------------------

@pytest.mark.parametrize("args, words", [
    (["train", "--steps", "1.5"], "argument --steps: invalid int value: '1.5' (see 'zoo train --help')"),
    (["colorize", "a.png", "--model", "x"], "the following arguments are required: --out (see 'zoo colorize --help')"),
    (["train", "\x1b[2Jx"], "unrecognized arguments: \\x1b[2Jx"),  # escaped, never raw ESC
    (["trian"], "invalid choice: 'trian'"),
    (["data"], "the following arguments are required: ACTION"),
])
def test_a_usage_error_is_one_escaped_line_not_the_usage_block(capsys, args, words):
    line = one_error_line(zoo_here(capsys, *args))
    assert words in line and "\x1b" not in line


@pytest.mark.parametrize("args", [["--device", "bogus"], ["--set", "device=meta"], ["--device", ""],
                                  ["--device", "cuda:99999"]])
def test_a_device_that_is_no_name_says_which_are(capsys, args):
    line = one_error_line(zoo_here(capsys, "train", "--steps", "1", *args))
    assert "is not a device: use auto, cpu, cuda, cuda:N or mps" in line and "pattern" not in line
