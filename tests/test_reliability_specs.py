"""Reliability corpus, specs and config files: each mistake is one `zoo: error:` line, exit 2, and nothing
a config file holds can make zoo run code. tests/test_spec.py has the basic cases; these are the rest."""
from __future__ import annotations

import pytest

from zoo.errors import SpecError
from zoo.spec import build_spec, parse_override, read_config

from conftest import TINY, run_zoo
from test_reliability_data import FAST, expect_error, photos, tiny_spec  # noqa: F401 (photos: a fixture)


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
    with pytest.raises(SpecError, match="cannot read config file"):
        read_config(tmp_path / "bin.json")


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
