"""Contract 2 (zoo.hookspecs "Version 2"): the new built-in losses against direct computations, the kit on
broken v2 plugins, name clashes, provenance, and real `zoo train` runs of v2 combinations."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import zoo.errors
import zoo.testing
from conftest import make_plugin_dist, run_zoo, tiny_args, tiny_spec, train
from zoo.hookspecs import DiscriminatorOutput, StepContext
from zoo.registry import get_registry

pytestmark = pytest.mark.usefixtures("one_thread")


def build(kind, name, options=None):
    return get_registry().create(kind, name, options or {})


def ctx_with(role, real_logits, fake_logits, **kw):
    n = real_logits.shape[0]
    zeros = torch.zeros(n, 1, 2, 2)
    return StepContext(role, zeros, torch.zeros(n, 2, 2, 2), torch.zeros(n, 2, 2, 2),
                       d_real=DiscriminatorOutput([real_logits]), d_fake=DiscriminatorOutput([fake_logits]), **kw)


def test_hinge_d_and_g_against_hand_computed_values():
    real = torch.tensor([0.5, 2.0, -1.0, 0.0]).view(1, 1, 2, 2)
    fake = torch.tensor([-2.0, 0.5, 1.0, -0.5]).view(1, 1, 2, 2)
    loss = build("gan_loss", "hinge")
    # D: mean relu(1 - real) = (0.5 + 0 + 2 + 1) / 4 = 0.875; mean relu(1 + fake) = (0 + 1.5 + 2 + 0.5) / 4 = 1
    assert loss(ctx_with("discriminator", real, fake)).item() == pytest.approx(1.875)
    # G: -mean(fake) = -(-2 + 0.5 + 1 - 0.5) / 4 = 0.25 (not a hinge: the asymmetric form)
    assert loss(ctx_with("generator", real, fake)).item() == pytest.approx(0.25)
    assert build("gan_loss", "hinge", {"margin": 2.0})(ctx_with("discriminator", real, fake)).item() == \
        pytest.approx((1.5 + 0 + 3 + 2) / 4 + (0 + 2.5 + 3 + 1.5) / 4)


def small_d():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3, padding=1))


def assert_same_grads(value, expected, D):
    """The gradients of two losses wrt D's weights agree (a weight neither uses, e.g. the last bias under a
    gradient penalty, counts as zero) and are not all zero."""
    params = list(D.parameters())
    got = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    want = torch.autograd.grad(expected, params, retain_graph=True, allow_unused=True)
    for p, a, b in zip(params, got, want):
        a = torch.zeros_like(p) if a is None else a
        b = torch.zeros_like(p) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(g is not None and g.abs().sum() > 0 for g in got)


def wgan_gp_by_hand(D, L, real, fake, lam=10.0):
    """WGAN-GP's D loss computed directly in fp32 (draws eps from the global RNG, as the loss does): (loss, gp)."""
    eps = torch.rand(L.shape[0], 1, 1, 1)
    x_real, x_fake = torch.cat([L, real], 1), torch.cat([L, fake], 1)
    x_hat = (eps * x_real + (1 - eps) * x_fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).flatten(1).mean(1).sum(), x_hat, create_graph=True)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return D(x_fake).mean() - D(x_real).mean() + lam * gp, gp


def r1_by_hand(D, L, real, gamma):
    """R1 = gamma / 2 * E ||grad_x D(x)||^2 on real inputs, directly in fp32."""
    x = torch.cat([L, real], 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).flatten(1).mean(1).sum(), x, create_graph=True)
    return gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()


def lab_batch(n=3, size=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    L = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    return L, torch.rand(n, 2, size, size, generator=g) * 2 - 1, torch.rand(n, 2, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_wgan_gp_penalty_against_autograd(autocast):
    D = small_d()
    L, real, fake = lab_batch()
    loss = build("gan_loss", "wgan_gp")
    ctx = StepContext("discriminator", L, real, fake, discriminator=D,
                      d_real=DiscriminatorOutput([D(torch.cat([L, real], 1))]),
                      d_fake=DiscriminatorOutput([D(torch.cat([L, fake], 1))]))
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss(ctx)
    torch.manual_seed(7)
    expected, gp = wgan_gp_by_hand(D, L, real, fake)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    # the penalty trains D: the gradients of the whole loss wrt D's weights match the direct ones
    assert_same_grads(value, expected, D)
    assert gp.item() > 0
    assert loss(ctx_with("generator", torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 3.0))).item() == -3.0


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
def test_r1_against_autograd(autocast):
    D = small_d()
    L, real, fake = lab_batch()
    term = build("loss", "r1", {"gamma": 4.0})
    ctx = StepContext("discriminator", L, real, fake, discriminator=D)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = term(ctx)
    expected = r1_by_hand(D, L, real, 4.0)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-7)
    assert_same_grads(value, expected, D)


@pytest.mark.parametrize("name", ["wgan_gp", "r1"])
def test_a_penalty_under_fp16_autocast_and_a_grad_scaler_gives_the_fp32_gradients(name):
    """fp16 training: the scaled loss's backward through the penalty's double-backward graph, unscaled by the
    GradScaler, gives D the gradients of the fp32 loss computed by hand (the scale cancels out; fp16 rounding
    within a few per cent)."""
    D = small_d()
    L, real, fake = lab_batch()
    opt = torch.optim.SGD(D.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    module = build("gan_loss", "wgan_gp") if name == "wgan_gp" else build("loss", "r1", {"gamma": 4.0})
    torch.manual_seed(7)
    with torch.autocast("cpu", dtype=torch.float16):
        ctx = StepContext("discriminator", L, real, fake, discriminator=D,
                          d_real=DiscriminatorOutput([D(torch.cat([L, real], 1))]),
                          d_fake=DiscriminatorOutput([D(torch.cat([L, fake], 1))]))
        value = module(ctx)
    scaler.scale(value).backward()
    scaler.unscale_(opt)
    got = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()]  # a penalty
    D.zero_grad()  # leaves the last bias without a gradient
    torch.manual_seed(7)
    expected = wgan_gp_by_hand(D, L, real, fake)[0] if name == "wgan_gp" else r1_by_hand(D, L, real, 4.0)
    expected.backward()
    for p, a in zip(D.parameters(), got):
        want = torch.zeros_like(p) if p.grad is None else p.grad
        torch.testing.assert_close(a, want, rtol=3e-2, atol=2e-3)
    assert any(g.abs().sum() > 0 for g in got) and all(torch.isfinite(g).all() for g in got)


def test_feature_matching_on_known_features():
    term = build("loss", "feature_matching")
    real = [torch.ones(2, 3, 4, 4), torch.full((2, 5, 2, 2), 2.0)]
    fake = [torch.zeros(2, 3, 4, 4, requires_grad=True), torch.full((2, 5, 2, 2), 1.5, requires_grad=True)]
    ctx = StepContext("generator", None, None, None, d_real=DiscriminatorOutput([torch.zeros(2, 1, 1, 1)], real),
                      d_fake=DiscriminatorOutput([torch.zeros(2, 1, 1, 1)], fake))
    value = term(ctx)
    assert value.item() == pytest.approx((1.0 + 0.5) / 2)
    value.backward()
    assert fake[0].grad is not None and real[0].grad is None  # real features are targets
    assert build("loss", "feature_matching", {"layers": 1})(ctx).item() == pytest.approx(0.5)
    with pytest.raises(zoo.ZooError, match="needs a discriminator that returns features"):
        term(ctx_with("generator", torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)))


def test_rgb_l1_against_skimage():
    from skimage.color import lab2rgb

    g = torch.Generator().manual_seed(3)
    L = torch.rand(2, 1, 5, 5, generator=g) * 1.6 - 0.8
    real, fake = (torch.rand(2, 2, 5, 5, generator=g) * 0.6 - 0.3 for _ in range(2))
    fake.requires_grad_(True)
    value = build("pixel_loss", "rgb_l1")(StepContext("generator", L, real, fake))

    def rgb(ab):
        lab = torch.cat([(L + 1) * 50, ab.detach() * 110], 1).permute(0, 2, 3, 1).double().numpy()
        return np.stack([lab2rgb(im) for im in lab])

    assert value.item() == pytest.approx(float(np.abs(rgb(fake) - rgb(real)).mean()), abs=2e-4)
    (grad,) = torch.autograd.grad(value, fake)
    assert grad.abs().sum() > 0  # differentiable Lab -> sRGB


def test_multiscale_returns_one_map_per_scale_and_features():
    D = build("discriminator", "multiscale", {"ndf": 8, "n_layers": 1, "n_scales": 3})
    out = DiscriminatorOutput.of(D(torch.zeros(2, 3, 48, 48)))
    assert [tuple(m.shape) for m in out.logits] == [(2, 1, 22, 22), (2, 1, 10, 10), (2, 1, 4, 4)]
    assert len(out.features) == 3 * 2  # two blocks per PatchGAN


# ---- the contract kit on broken v2 plugins ---------------------------------------------------------------

HEADER = """
import torch
import torch.nn as nn
import zoo

class Opts(zoo.Options):
    pass
"""

BROKEN_V2 = {
    "no_role": ("gan_loss", "register_gan_losses", "contract=2", """
        class Loss(nn.Module):  # the D objective in both roles
            def forward(self, ctx):
                return torch.relu(1 - ctx.d_real.logits[0]).mean() + torch.relu(1 + ctx.d_fake.logits[0]).mean()
        def build(o, c):
            return Loss()
    """, r"generator role: D\(fake\)=1 must cost less .* does it read ctx.role\?"),
    "detached_penalty": ("loss", "register_losses", "trains='discriminator'", """
        class Penalty(nn.Module):
            def forward(self, ctx):
                x = ctx.real_input.detach().requires_grad_(True)
                out = ctx.discriminator_fp32(x).logits[0].sum()
                (g,) = torch.autograd.grad(out, x)  # no create_graph: D is not trained by it
                return g.pow(2).sum() / x.shape[0]
        def build(o, c):
            return Penalty()
    """, "in the discriminator role it carries no gradient"),
    "aux_no_decoding": ("generator", "register_generators", "contract=2", """
        class Gen(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 4, 3, padding=1)
            def forward(self, L):
                logits = self.conv(L)
                if self.training:
                    return {"logits": logits}
                return torch.tanh(logits[:, :2])
        def build(o, c):
            return Gen()
    """, r"auxiliary outputs \['logits'\] with no decoding to ab"),
}


@pytest.mark.parametrize("name", list(BROKEN_V2))
def test_kit_fails_a_broken_v2_component(name, tmp_path, monkeypatch):
    kind, hook, declaration, body, message = BROKEN_V2[name]
    code = textwrap.dedent(HEADER) + textwrap.dedent(body) + textwrap.dedent(f"""
        @zoo.hookimpl
        def {hook}(register):
            register({name!r}, build, Opts, {declaration})
    """)
    make_plugin_dist(tmp_path, f"broken-{name}", {f"broken_{name}": code}, {name: f"broken_{name}"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AssertionError, match=message) as info:
        zoo.testing.check_component(kind, name, image_size=32)
    assert f"broken-{name} 0.1" in str(info.value) and "\n" not in str(info.value)


# ---- names and provenance ---------------------------------------------------------------------------------

OTHER_HINGE = """
import torch
import zoo

class Opts(zoo.Options):
    pass

class Loss(torch.nn.Module):
    def forward(self, logits, target_is_real):
        return torch.relu(1 - logits).mean() if target_is_real else torch.relu(1 + logits).mean()

@zoo.hookimpl
def register_gan_losses(register):
    register("hinge", lambda o, c: Loss(), Opts)
"""


def test_a_clash_is_reported_where_the_name_is_used(tmp_path, photos):
    env = make_plugin_dist(tmp_path / "site", "other-gan", {"other_hinge": OTHER_HINGE}, {"ohinge": "other_hinge"},
                           version="2.0")
    listing = run_zoo("list", "--kind", "gan_loss", env=env, check_rc=0).stdout
    assert "other-gan:hinge  (other-gan 2.0)" in listing and "zoo:hinge  (zoo " in listing
    plugins = run_zoo("plugins", env=env, check_rc=0).stdout
    assert "clash: gan loss 'hinge' is registered by several packages" in plugins
    proc = run_zoo(*tiny_args(photos, tmp_path / "runs", 1, "--gan-loss", "hinge"), env=env, check_rc=2)
    assert proc.stderr.strip().splitlines()[-1].startswith("zoo: error: gan loss 'hinge' is registered by several")
    assert "'other-gan:hinge' or 'zoo:hinge'" in proc.stderr and "Traceback" not in proc.stderr
    run_zoo(*tiny_args(photos, tmp_path / "runs" / "o", 1, "--gan-loss", "other-gan:hinge"), env=env,
            check_rc=0)
    spec = json.loads((tmp_path / "runs" / "o" / "spec.json").read_text())
    assert spec["gan_loss"]["name"] == "other-gan:hinge" and spec["gan_loss"]["provider"] == "other-gan==2.0"


def test_spec_records_providers_and_resume_checks_them(tmp_path):
    run = tmp_path / "run"
    trainer = train(tiny_spec(steps=1, **{"gan_loss.name": "hinge"}), run)
    spec = json.loads((run / "spec.json").read_text())
    assert spec["gan_loss"]["provider"] == f"zoo=={zoo.__version__}"
    assert spec["generator"]["provider"] == f"zoo=={zoo.__version__}"
    from zoo.checkpoint import load_checkpoint
    assert json.loads(load_checkpoint(trainer.paths.checkpoint_path(1)).spec_json)["gan_loss"]["provider"] == \
        f"zoo=={zoo.__version__}"
    # another distribution: refused, one line
    spec["gan_loss"]["provider"] = "other-gan==2.0"
    (run / "spec.json").write_text(json.dumps(spec))
    proc = run_zoo("train", "--resume", str(run), "--steps", "2", "--no-progress", check_rc=2)
    assert "gan loss 'hinge' was recorded from 'other-gan==2.0' but now comes from zoo" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # another version of the same distribution: one warning line, and the run goes on
    spec["gan_loss"]["provider"] = "zoo==0.0.1"
    (run / "spec.json").write_text(json.dumps(spec))
    proc = run_zoo("train", "--resume", str(run), "--steps", "2", "--no-progress", check_rc=0)
    assert "zoo: warning: gan loss 'hinge' was recorded from zoo==0.0.1 and now comes from zoo==" in proc.stderr


OTHER_UNET = """
import torch
import zoo

class Opts(zoo.Options):
    pass

@zoo.hookimpl
def register_generators(register):
    register("unet", lambda o, c: torch.nn.Conv2d(1, 2, 1), Opts)
"""


def _with_generator_provider(src: Path, dst: Path, provider: str) -> Path:
    """A copy of checkpoint ``src`` whose embedded spec records ``provider`` for its generator (weights unchanged)."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(src), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    spec = json.loads(metadata["spec"])
    spec["generator"]["provider"] = provider
    save_file(tensors, str(dst), metadata={**metadata, "spec": json.dumps(spec)})
    return dst


def test_checkpoints_load_the_component_their_spec_recorded(tmp_path, tiny_run, photos):
    """A package installed after training that also registers the run's generator name does not change or break
    what colorize (any checkpoint loader) builds: the recorded provider picks zoo's; a provider that is gone is
    refused in one line naming the checkpoint."""
    from zoo.loading import load_trained
    from zoo.registry import load_registry
    env = make_plugin_dist(tmp_path / "site", "other-gen", {"other_unet": OTHER_UNET}, {"ounet": "other_unet"},
                           version="2.0")
    assert "clash: generator 'unet'" in run_zoo("plugins", env=env, check_rc=0).stdout
    out = tmp_path / "out"
    proc = run_zoo("colorize", str(photos / "astronaut.png"), "--model", str(tiny_run), "--out", str(out),
                   "--no-progress", env=env, check_rc=0)
    assert (out / "astronaut.png").is_file() and "Traceback" not in proc.stderr
    # in process: the same checkpoint, recorded from a distribution that no longer provides the name
    ckpt = sorted((tiny_run / "checkpoints").glob("step-*.safetensors"))[-1]
    moved = _with_generator_provider(ckpt, tmp_path / "step-000002.safetensors", "gone-gen==1.0")
    with pytest.raises(zoo.errors.CheckpointError) as info:
        load_trained(moved, registry=load_registry())
    msg = str(info.value)
    assert msg.startswith(f"'{moved}'") and "recorded from 'gone-gen==1.0'" in msg and "\n" not in msg
    assert load_trained(ckpt, registry=load_registry()).generator.__class__.__name__ != "Conv2d"


# ---- real training through `zoo train` -----------------------------------------------------------------------

def test_zoo_train_hinge_multiscale_r1_feature_matching(tmp_path, photos):
    run_zoo(*tiny_args(photos, tmp_path / "r", 2, "--gan-loss", "hinge", "--disc", "multiscale",
                       "--set", "discriminator.options.n_layers=1", "--set", "discriminator.options.n_scales=2",
                       "--set", "losses=[{name: r1, options: {gamma: 1}}, {name: feature_matching, weight: 10}]",
                       "--set", "log_every=1"), check_rc=0)
    rows = [json.loads(line) for line in (tmp_path / "r" / "losses.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "stage" in r]
    assert len(rows) == 2 and {"d_gan", "d_r1", "g_gan", "g_pixel", "g_feature_matching"} <= set(rows[0])
    assert all(np.isfinite(v) for r in rows for k, v in r.items() if k.startswith(("d_", "g_")))
    assert rows[0]["d_r1"] > 0


def test_zoo_train_wgan_gp_rgb_l1(tmp_path, photos):
    run_zoo(*tiny_args(photos, tmp_path / "w", 2, "--gan-loss", "wgan_gp", "--pixel-loss", "rgb_l1",
                       "--set", "discriminator.options.norm=instance", "--set", "log_every=1"), check_rc=0)
    rows = [json.loads(line) for line in (tmp_path / "w" / "losses.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "stage" in r] == [1, 2]


def test_v2_losses_under_bf16_autocast_train_in_process(tmp_path):
    spec = tiny_spec(steps=2, extra_set=["precision=bf16", "discriminator.options.norm=instance",
                                         "losses=[{name: r1}]"], **{"gan_loss.name": "wgan_gp"})
    trainer = train(spec, tmp_path / "run")
    assert trainer.runtime.precision == "bf16" and trainer.step == 2


def test_perceptual_wiring_with_random_weights():
    loss = build("pixel_loss", "perceptual", {"pretrained": False, "layer": "relu2_2"})
    assert not any(p.requires_grad for p in loss.parameters())  # the VGG is frozen, never trained
    L, real, fake = lab_batch(2, 16)
    fake.requires_grad_(True)
    value = loss(StepContext("generator", L, real * 0.3, fake * 0.3))
    (grad,) = torch.autograd.grad(value, fake)
    assert value.item() > 0 and grad.abs().sum() > 0
    assert loss(StepContext("generator", L, real * 0.3, real * 0.3)).item() == 0
    loss.train()
    assert not loss.vgg.training


def test_perceptual_pretrained_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setattr("urllib.request.urlopen", _unreachable)
    with pytest.raises(zoo.ZooError) as info:
        build("pixel_loss", "perceptual")
    msg = str(info.value)
    assert "pretrained VGG16 weights are not cached" in msg and "pretrained=false" in msg and "\n" not in msg


def _unreachable(*args, **kwargs):
    raise OSError("network is unreachable")


def test_a_penalty_trains_under_fp16_with_a_grad_scaler(tmp_path):
    spec = tiny_spec(steps=1, extra_set=["precision=fp16", "discriminator.options.norm=instance",
                                         "losses=[{name: r1}]"], **{"gan_loss.name": "wgan_gp"})
    trainer = train(spec, tmp_path / "run")
    assert trainer.runtime.precision == "fp16" and trainer.models.disc_scaler.is_enabled()
    rows = [json.loads(line) for line in trainer.paths.losses.read_text().splitlines() if '"stage"' in line]
    assert all(np.isfinite(v) for k, v in rows[-1].items() if k.startswith(("d_", "g_")))


V2_REGISTERED_AS_V1 = {
    "multi_d": ("discriminator", "register_discriminators", """
        class Disc(nn.Module):  # two scales, as pix2pixHD's: a v2 output
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 1, 3, padding=1)
            def forward(self, x):
                return [self.conv(x), self.conv(nn.functional.avg_pool2d(x, 2))]
        def build(o, c):
            return Disc()
    """, r"returned list, expected \(2, 1, h, w\): several logit maps or features need contract 2: register it "
         r"with contract=2"),
    "ctx_hinge": ("gan_loss", "register_gan_losses", """
        class Loss(nn.Module):  # written for loss(ctx)
            def forward(self, ctx):
                return torch.relu(1 - ctx.d_real.logits[0]).mean()
        def build(o, c):
            return Loss()
    """, r"it was called as a version 1 loss, loss\(logits, target_is_real\): a loss that takes one StepContext "
         r"must be registered with contract=2"),
}


@pytest.mark.parametrize("name", list(V2_REGISTERED_AS_V1))
def test_a_v2_component_registered_without_contract_2_is_told_to_register_it_so(name, tmp_path, monkeypatch):
    kind, hook, body, message = V2_REGISTERED_AS_V1[name]
    code = textwrap.dedent(HEADER) + textwrap.dedent(body) + textwrap.dedent(f"""
        @zoo.hookimpl
        def {hook}(register):
            register({name!r}, build, Opts)
    """)
    make_plugin_dist(tmp_path, f"v1-{name}", {f"v1_{name}": code}, {name: f"v1_{name}"})
    monkeypatch.syspath_prepend(str(tmp_path))
    get_registry.cache_clear()
    try:
        with pytest.raises(zoo.errors.PluginError, match=message) as info:
            get_registry().create(kind, name, {})
    finally:
        get_registry.cache_clear()
    assert f"v1-{name} 0.1" in str(info.value) and "\n" not in str(info.value)
