"""TrainSpec: layering, file formats, one-line validation errors."""
import json

import pytest

from zoo.errors import SpecError
from zoo.registry import load_registry
from zoo.spec import PRESETS, build_spec, spec_from_json, spec_to_json, validate_spec

from conftest import run_zoo


def test_defaults_reproduce_the_seed_hyperparameters():
    spec, why = build_spec("seed")
    assert "seed" in why
    assert spec.data.image_size == 256 and spec.data.batch_size == 16 and spec.pixel_weight == 100
    assert (spec.gen_optim.lr, spec.gen_optim.beta1, spec.gen_optim.beta2) == (2e-4, 0.5, 0.999)
    assert spec.disc_optim == spec.gen_optim
    assert (spec.init.kind, spec.init.gain) == ("normal", 0.02)
    assert spec.generator.options == {"n_down": 8, "ngf": 64}
    assert spec.discriminator.options == {"ndf": 64, "n_layers": 3}
    assert spec.gan_loss.name == "vanilla" and spec.data.source == "coco-sample"


def test_default_preset_is_cpu_and_says_why():
    spec, why = build_spec()
    assert "'cpu'" in why and "default" in why and spec.data.image_size == 64


@pytest.mark.parametrize("fmt", ["yaml", "toml", "json"])
def test_config_files_and_overrides(tmp_path, fmt):
    body = {
        "yaml": "generator:\n  name: unet\n  options: {ngf: 16}\nsteps: 7\ndata:\n  batch_size: 8\n",
        "toml": "steps = 7\n[generator]\nname = 'unet'\n[generator.options]\nngf = 16\n[data]\nbatch_size = 8\n",
        "json": json.dumps({"generator": {"name": "unet", "options": {"ngf": 16}}, "steps": 7,
                            "data": {"batch_size": 8}}),
    }[fmt]
    path = tmp_path / f"spec.{fmt}"
    path.write_text(body)
    spec, _ = build_spec(None, path, {"epochs": 3}, ["generator.options.ngf=24", "gen_optim.lr=1e-3"])
    assert spec.generator.options == {"n_down": 6, "ngf": 24}  # preset n_down kept, file then --set
    assert spec.steps == 7 and spec.epochs == 3 and spec.data.batch_size == 8 and spec.gen_optim.lr == 1e-3


def test_switching_component_drops_the_previous_components_options():
    spec, _ = build_spec(None, None, {"generator.name": "resnet18_unet"})
    assert spec.generator.name == "resnet18_unet" and spec.generator.options == {}


def test_resolved_spec_fills_component_defaults_and_roundtrips():
    spec = build_spec()[0].resolved(load_registry())
    assert spec.generator.options["dropout"] == 0.5
    again = spec_from_json(spec_to_json(spec))
    assert again == spec


@pytest.mark.parametrize("override, expected", [
    ("gen_optim.lr=-1", "gen_optim.lr: Input should be greater than 0"),
    ("data.batch_size=0", "data.batch_size"),
    ("colour=1", "colour: unknown key"),
    ("data.image_size=abc", "data.image_size"),
])
def test_invalid_values_raise_one_line(override, expected):
    with pytest.raises(SpecError) as info:
        build_spec(None, None, {}, [override])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_needs_a_length():
    with pytest.raises(SpecError, match="give steps or epochs"):
        validate_spec({})


@pytest.mark.parametrize("name, text, expected", [
    ("bad.yaml", "steps: [1, 2\n", "malformed YAML"),
    ("bad.json", "{\"steps\": }", "malformed JSON"),
    ("bad.toml", "steps = = 3", "malformed TOML"),
    ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("spec.ini", "[x]", "unknown format"),
])
def test_malformed_config_files(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError, match=expected):
        build_spec(None, path)


@pytest.mark.parametrize("args, expected", [
    (["--gen", "unte"], "Did you mean 'unet'?"),
    (["--set", "gen_optim.lr=-0.1"], "gen_optim.lr: Input should be greater than 0"),
    (["--set", "generator.options.depth=3"], "generator 'unet' options: depth: unknown key"),
    (["--image-size", "48"], "n_down"),
    (["--config", "/nonexistent/spec.yaml"], "does not exist"),
    (["--preset", "sed"], "Did you mean 'seed'?"),
    (["--data", "/nonexistent/folder"], "not a folder"),
    (["--set", "novalue"], "expected dotted.key=value"),
])
def test_cli_spec_errors_are_one_line_exit_2(tmp_path, args, expected):
    proc = run_zoo("train", "--steps", "1", "--out", str(tmp_path / "run"), "--no-progress", *args)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_presets_are_valid():
    reg = load_registry()
    for name in PRESETS:
        spec, _ = build_spec(name)
        spec.resolved(reg)
