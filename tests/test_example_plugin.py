"""examples/zoo-example-plugin, installed as a real distribution: listed, contract-checked, trained from the CLI,
and faithful to its papers (parameter counts, receptive fields, spectral norms). Its hinge loss moved into zoo as a contract 2 built-in
(the asymmetric form; see tests/test_losses_v2.py).

It is pip-installed by .ci/run; elsewhere the conftest `example_plugin` fixture installs it for this module the
way pip would (a dist-info with its real entry points), so these tests pass either way."""
import json
import math
import subprocess
import sys

import pytest
import torch

import zoo
import zoo.testing
from zoo.errors import SpecError
from zoo.component import BuildContext
from zoo.registry import get_registry

from conftest import EXAMPLE_PROJECT as PROJECT
from conftest import EXAMPLE_PLUGIN, REPO, run_zoo

pytestmark = pytest.mark.usefixtures("example_plugin")

COMPONENTS = {"resnet9": "generator", "pixel": "discriminator", "sn_patch": "discriminator"}


def build(kind, name, options=None, size=32):
    return get_registry().get(kind, name).create(options, BuildContext(image_size=size))


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_installed_as_its_own_distribution():
    assert PROJECT["name"] == "zoo-example-plugin"
    entry_points = PROJECT["entry-points"]["zoo"]
    assert set(entry_points) == set(COMPONENTS)
    for name, kind in COMPONENTS.items():
        plugin = get_registry().get(kind, name).plugin
        assert (plugin.distribution, plugin.version) == (PROJECT["name"], PROJECT["version"])
        assert plugin.module == entry_points[name] == f"zoo_example_plugin.{name}"


def test_zoo_list_and_zoo_plugins_show_it():
    listing = json.loads(run_zoo("list", "--json", check_rc=0).stdout)
    for name, kind in COMPONENTS.items():
        (row,) = [c for c in listing[kind] if c["name"] == name]
        assert (row["distribution"], row["version"]) == (PROJECT["name"], PROJECT["version"])
        # the listing shows every option with the default the component really gets, each described
        defaults = get_registry().get(kind, name).options({}).model_dump()
        assert {o["name"]: o["default"] for o in row["options"]} == defaults
        assert all(o["description"] for o in row["options"])
    text = run_zoo("plugins", check_rc=0).stdout.splitlines()
    for name, kind in COMPONENTS.items():
        line = f"{name}: zoo_example_plugin.{name} from {PROJECT['name']} {PROJECT['version']} [loaded]"
        assert line in text
        assert text[text.index(line) + 1] == f"    provides {kind}:{name}"


def test_registry_parametrized_code_picks_it_up():
    assert "resnet9" in zoo.names("generator")
    assert {"pixel", "sn_patch"} <= set(zoo.names("discriminator")) and "hinge" in zoo.names("gan_loss")  # zoo's own
    ids = {p.id for p in zoo.testing.parametrize_registered().args[1]}
    assert {f"{kind}-{name}" for name, kind in COMPONENTS.items()} <= ids


@pytest.mark.skipif(not list((REPO / "benchmarks").glob("test_*.py")), reason="no benchmarks/ in this checkout")
def test_benchmarks_include_it_with_no_edit():
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "--collect-only", "-q", "-p",
                           "no:cacheprovider"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[resnet9]" in proc.stdout and "[sn_patch]" in proc.stdout and "[pixel]" in proc.stdout


@pytest.mark.parametrize("name,size,option_sets", [
    ("resnet9", 36, [{"ngf": 8, "n_blocks": 2}]),  # any multiple of 4, not only powers of 2
    ("pixel", 20, [{"ndf": 8, "norm": "instance"}]),
    ("sn_patch", 48, [{"ndf": 8, "n_layers": 3}]),
])
def test_passes_the_contract_kit(name, size, option_sets):
    report = zoo.testing.check_component(COMPONENTS[name], name, image_size=size, option_sets=option_sets)
    assert report.provider.startswith(f"{PROJECT['name']} {PROJECT['version']}") and not report.refused


def test_trains_from_the_cli(tmp_path):
    out = tmp_path / "run"
    run_zoo("train", "--gen", "resnet9", "--disc", "sn_patch", "--gan-loss", "hinge", "--steps", "2",
            "--image-size", "32", "--batch-size", "4", "--set", "generator.options.ngf=8",
            "--set", "generator.options.n_blocks=2", "--set", "discriminator.options.ndf=8", "--set",
            "num_samples=2", "--set", "log_every=1", "--out", str(out), "--no-progress", check_rc=0)
    spec = json.loads((out / "spec.json").read_text())
    assert [spec[k]["name"] for k in ("generator", "discriminator", "gan_loss")] == ["resnet9", "sn_patch", "hinge"]
    assert spec["generator"]["provider"] == f"{PROJECT['name']}=={PROJECT['version']}"
    assert spec["gan_loss"]["provider"].startswith("zoo==")
    assert spec["generator"]["options"] == {"ngf": 8, "n_blocks": 2, "norm": "batch", "dropout": 0.5}
    rows = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "d_gan" in r]  # zoo's hinge is contract 2: one D objective
    assert len(steps) == 2 and all(math.isfinite(r[k]) for r in steps for k in ("d_gan", "g_gan"))
    # the checkpoint (spectral-norm parametrizations included) loads back into both nets
    from zoo.loading import load_trained

    model, disc = load_trained(out, with_discriminator=True)
    assert model.name == "resnet9" and any("parametrizations" in k for k in disc.state_dict())
    with torch.no_grad():
        assert model.generator(torch.zeros(1, 1, 32, 32)).shape == (1, 2, 32, 32)


# --- resnet9 --------------------------------------------------------------------------------------------

def resnet9_params(ngf, n_blocks, norm, c_in=1, c_out=2):
    """Parameters of the c7s1-ngf, d2ngf, d4ngf, n x R4ngf, u2ngf, ungf, c7s1-c_out network, counted by hand."""
    per_norm = 2 if norm == "batch" else 0  # affine BatchNorm; pix2pix's InstanceNorm has no parameters
    bias = 0 if norm == "batch" else 1
    conv = lambda k, a, b: k * k * a * b + b * bias + b * per_norm  # noqa: E731 (conv + its norm)
    return (conv(7, c_in, ngf) + conv(3, ngf, 2 * ngf) + conv(3, 2 * ngf, 4 * ngf)
            + n_blocks * 2 * conv(3, 4 * ngf, 4 * ngf)
            + conv(3, 4 * ngf, 2 * ngf) + conv(3, 2 * ngf, ngf) + 7 * 7 * ngf * c_out + c_out)


def test_resnet9_is_pix2pix_resnet_9blocks():
    assert resnet9_params(64, 9, "instance", 3, 3) == 11_378_179  # CycleGAN/pix2pix G for 3 -> 3 channels
    assert count(build("generator", "resnet9", {"norm": "instance"})) == resnet9_params(64, 9, "instance")
    net = build("generator", "resnet9")
    assert count(net) == resnet9_params(64, 9, "batch") == 11_374_018
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in net.modules()) == 2 + 2 * 9
    assert sum(isinstance(m, torch.nn.Dropout) for m in net.modules()) == 9


@pytest.mark.parametrize("size", [8, 20, 44])
def test_resnet9_any_multiple_of_4(size):
    net = build("generator", "resnet9", {"ngf": 4, "n_blocks": 1}, size=size).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, size, size)).shape == (1, 2, size, size)


@pytest.mark.parametrize("size,hint", [(30, "use 28 or 32"), (4, "use 8")])
def test_resnet9_refuses_other_sizes_in_one_line(size, hint):
    with pytest.raises(SpecError, match=f"resnet9: image size {size} is not a multiple of 4.*{hint}") as info:
        build("generator", "resnet9", size=size)
    assert "\n" not in str(info.value)


def test_resnet9_option_bounds():
    component = get_registry().get("generator", "resnet9")
    for bad in ({"n_blocks": 0}, {"ngf": 2}, {"dropout": 1.0}, {"norm": "group"}):
        with pytest.raises(SpecError):
            component.options(bad)


# --- discriminators -------------------------------------------------------------------------------------

def receptive_field(net, size):
    x = torch.randn(1, 3, size, size, requires_grad=True)
    logits = net(x)
    h, w = logits.shape[2:]
    logits[0, 0, h // 2, w // 2].backward()
    rows, cols = torch.nonzero(x.grad[0].abs().sum(0), as_tuple=True)
    return (rows.max() - rows.min() + 1).item(), (cols.max() - cols.min() + 1).item()


def test_pixel_sees_one_pixel():
    net = build("discriminator", "pixel", size=32).eval()
    assert count(net) == (3 * 64 + 64) + 64 * 128 + 2 * 128 + 128  # pix2pix PixelDiscriminator, ndf 64
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    assert receptive_field(net, 32) == (1, 1)


def test_sn_patch_is_a_70x70_patchgan_with_unit_spectral_norms():
    torch.manual_seed(0)  # the power iteration starts from random vectors
    net = build("discriminator", "sn_patch", {"ndf": 8}, size=256)
    assert net(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert receptive_field(net.eval(), 128) == (70, 70)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in net.modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 5 and all(hasattr(m, "parametrizations") for m in convs)
    net.train()
    x = torch.zeros(1, 3, 32, 32)
    for _ in range(40):  # one power iteration per training forward
        net(x)
    norms = [torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2).item() for m in convs]
    assert all(abs(n - 1) < 2e-2 for n in norms), norms


def test_sn_patch_too_deep_for_image_size():
    with pytest.raises(SpecError, match="sn_patch: n_layers 5 needs an image size >= 96"):
        build("discriminator", "sn_patch", {"n_layers": 5}, size=64)


def test_readme_and_ci_install_the_example_plugin():
    """The README's first command installs zoo and its test tools alone; .ci/run runs that same line, then
    installs the example plugin (the tests need it) as its own package."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    setup = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]"'
    assert setup in readme.splitlines(), "the README's first set-up command changed"
    install = 'pip install -e ".[test]"'
    assert install in ci, ".ci/run does not run the README's install line"
    plugin = f"pip install -e {EXAMPLE_PLUGIN.relative_to(REPO)}"
    assert plugin in ci, ".ci/run does not install the example plugin"
    test = "python -m pytest -n auto --maxprocesses 4"  # the README's test command, run by CI as it is
    assert test in readme.splitlines(), "the README's test command changed"
    assert ci.index(install) < ci.index(plugin) < ci.index(test)
