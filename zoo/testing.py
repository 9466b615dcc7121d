"""The plugin contract as a test: run ``check_component`` in your plugin's own tests.

::

    import pytest
    import zoo
    import zoo.testing

    @pytest.mark.parametrize("name", ["my_gen"])
    def test_contract(name):
        zoo.testing.check_component("generator", name, image_size=32)

For one registered component, :func:`check_component` checks what :mod:`zoo.hookspecs` promises:

- the name addresses exactly one component (a short name two packages register fails: check ``package:name``);
- its options: every field has a default and a description, numeric fields have bounds, and an unknown key
  is rejected;
- for the default options, each ``option_sets`` entry and each option set the plugin declared with
  ``register(..., test_options=...)`` (fitted to ``image_size`` by its declared ``depth_option``): it builds at
  ``image_size``, maps inputs of the right shape and range to outputs of the right shape and range, and a
  backward pass reaches every parameter with finite gradients;
- a few steps of the real engine (:class:`zoo.engine.Trainer`, on the embedded photos, in a temporary
  folder) with the component in its slot, trained with its first declared test set (else the first
  ``option_sets`` entry, else its defaults), and in every other slot the slot's default component
  (:func:`zoo.spec.default_component`) with its own first declared test set: the losses stay finite and the
  weights it is responsible for change.

The default options and the declared sets may be refused at ``image_size`` with a one-line
:class:`zoo.ZooError` (the ``unet``'s default depth needs 256 px); the author's ``option_sets`` must build, and
at least one set must. A failure raises
``AssertionError`` naming the component, its plugin and distribution, the options and what broke.
:func:`image_size_for` gives the smallest image size at least 32 that a component's declarations allow.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent, ZooError
from zoo.hookspecs import DiscriminatorOutput
from zoo.component import KINDS, SLOT_KINDS, BuildContext, Component
from zoo.contract_probe import probe_context
from zoo.registry import Registry, describe_options, load_registry
from zoo.text import shown

#: the option key used to check that unknown keys are rejected
UNKNOWN_KEY = "zoo_contract_unknown_option"
BATCH = 2


@dataclass
class ContractReport:
    """What :func:`check_component` checked (returned when every check passed)."""

    kind: str
    name: str
    provider: str
    checked: list[dict[str, Any]] = field(default_factory=list)  # option sets built and checked
    refused: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (options, one-line reason)
    trained_with: dict[str, Any] | None = None
    last_losses: dict[str, float] = field(default_factory=dict)


class _Checker:
    def __init__(self, component: Component, image_size: int):
        self.component = component
        self.image_size = image_size
        self.options: dict[str, Any] | None = None

    def fail(self, what: str) -> None:
        c = self.component
        where = ""
        if self.options is not None:
            where = f" with options {self.options}" if self.options else " with default options"
        raise AssertionError(f"zoo contract: {c.title}{where} at "
                             f"{self.image_size} px: {what}")

    def without_prefix(self, message: str) -> str:
        """A registry error without its "<kind> '<name>' from <provider> " start, which fail() adds anyway."""
        c = self.component
        prefix = f"{c.title} "
        return message[len(prefix):] if message.startswith(prefix) else message

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.fail(what)


def check_component(kind: str, name: str, image_size: int = 64,
                    option_sets: Iterable[dict[str, Any]] | None = None, *, train_steps: int = 2,
                    registry: Registry | None = None, device: str = "cpu") -> ContractReport:
    """Check that the registered ``kind`` component ``name`` keeps the plugin contract; see the module doc.

    ``option_sets``: option dicts that must build at ``image_size`` (give small ones: the checks and the
    training run use them). ``registry``: the registry to check against (default: a fresh load of every
    installed plugin). Raises AssertionError on the first failure; returns a :class:`ContractReport`.
    """
    if kind not in KINDS:
        raise AssertionError(f"zoo contract: no component kind {shown(kind)}; kinds: {', '.join(KINDS)}")
    threads = torch.get_num_threads()
    # Tiny tensors: one thread saves the thread pool's cost per op; on a busy 2-core machine, pool threads
    # competing with other processes made these checks 5-10x slower (measured).
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):  # the checks seed torch; the caller's RNG state is left alone
            return _check_component(kind, name, image_size, option_sets, train_steps, registry, device)
    finally:
        torch.set_num_threads(threads)


def _check_component(kind, name, image_size, option_sets, train_steps, registry, device) -> ContractReport:
    if registry is None:
        try:
            registry = load_registry()
        except DuplicateComponent as exc:
            raise AssertionError(f"zoo contract: component names must be unique: {exc}") from None
    try:
        component = registry.get(kind, name)
    except DuplicateComponent as exc:
        raise AssertionError(f"zoo contract: component names must be unique: {exc}") from None
    except UnknownComponent as exc:
        hint = "" if registry.disabled() else " (is the plugin installed and in the entry-point group 'zoo'? see " \
                                                "`zoo plugins`)"
        raise AssertionError(f"zoo contract: {exc}{hint}") from None
    checker = _Checker(component, image_size)
    report = ContractReport(kind, name, component.plugin.provider)
    _check_options_model(checker)

    author_sets = [dict(s) for s in (option_sets or [])]
    candidates: list[tuple[dict[str, Any], str]] = [({}, "defaults")]
    for options, origin in [(s, "author") for s in author_sets] + \
            [(s, "declared") for s in component.test_option_sets(image_size)]:
        if all(options != s for s, _ in candidates):  # a set given twice is checked once
            candidates.append((options, origin))

    for options, origin in candidates:
        checker.options = options
        try:
            validated = component.options(options)
        except SpecError as exc:
            if origin != "author":
                report.refused.append((options, str(exc)))
                continue
            checker.fail(f"the option set is invalid: {exc}")
        try:
            module = component.create(validated, BuildContext(image_size=image_size))
        except PluginError as exc:
            checker.fail(checker.without_prefix(str(exc)))
        except ZooError as exc:
            checker.check("\n" not in str(exc), f"a refusal must be one line, got: {str(exc)!r}")
            if origin == "author":  # the defaults and declared sets may not fit every size: a refusal
                checker.fail(f"does not build: {exc}")
            report.refused.append((options, str(exc)))
            continue
        except Exception as exc:  # the builder raised past the registry: still the plugin's bug
            checker.fail(f"build raised {type(exc).__name__}: {exc}")
        checker.check(isinstance(module, nn.Module), f"build returned {type(module).__name__}, not an nn.Module")
        torch.manual_seed(0)
        try:
            _KIND_CHECKS[kind](checker, module)
        except AssertionError:
            raise
        except Exception as exc:
            checker.fail(f"raised {type(exc).__name__}: {exc}")
        report.checked.append(options)

    checker.options = None
    checker.check(bool(report.checked), "no option set builds: pass option_sets that fit this image size "
                                        f"(refused: {'; '.join(reason for _, reason in report.refused)})")
    declared = component.test_option_sets(image_size)
    train_options = next(s for s in declared + author_sets + [{}] if s in report.checked)
    checker.options = train_options
    report.trained_with = train_options
    report.last_losses = _train(checker, registry, train_options, train_steps, device)
    return report


def parametrize_registered(*kinds: str):
    """``@zoo.testing.parametrize_registered("generator")``: one test per registered component of these kinds
    (all kinds when none are given), with arguments ``kind, name``."""
    import pytest

    from zoo.registry import names

    kinds = kinds or tuple(KINDS)
    return pytest.mark.parametrize(("kind", "name"), [pytest.param(k, n, id=f"{k}-{n}")
                                                      for k in kinds for n in names(k)])


# ---- options ---------------------------------------------------------------------------------------------

def _check_options_model(checker: _Checker) -> None:
    component = checker.component
    try:
        component.options({})
    except SpecError as exc:
        checker.fail(f"every option needs a default: {exc}")
    for row in describe_options(component.options_model):
        checker.check(bool(row["description"]), f"option {row['name']!r} has no description: "
                                                f"use Field(..., description=...) (`zoo list` prints it)")
        if row["type"] in ("integer", "number"):
            checker.check(bool(row["bounds"]), f"numeric option {row['name']!r} has no bounds: add ge=/le= so "
                                               f"that a typo like -1 is an error")
    try:
        component.options({UNKNOWN_KEY: 1})
    except SpecError as exc:
        checker.check("unknown key" in str(exc), f"an unknown option key must be reported as one: {exc}")
    else:
        checker.fail(f"the unknown option key {UNKNOWN_KEY!r} was accepted: subclass zoo.Options "
                     f"(extra='forbid') so that typos are errors")


# ---- per-kind tensor checks ---------------------------------------------------------------------------

def _check_trainable(checker: _Checker, net: nn.Module) -> None:
    checker.check(any(p.requires_grad for p in net.parameters()),
                  "has no trainable parameters: weights kept in plain tensors or buffers are not trained "
                  "(use nn.Parameter or torch layers)")


def _check_gradients(checker: _Checker, module: nn.Module) -> None:
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    checker.check(not missing, f"no gradient reaches parameters {missing[:5]}: they are unused or detached")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]
    checker.check(not bad, f"non-finite gradients in {bad[:5]}")
    checker.check(not params or any(p.grad.abs().sum() > 0 for _, p in params), "every gradient is zero")


def _check_generator(checker: _Checker, net: nn.Module) -> None:
    size = checker.image_size
    _check_trainable(checker, net)
    net.train()
    x = (torch.rand(BATCH, 1, size, size) * 2 - 1).requires_grad_()
    out = net(x)
    expected = (BATCH, 2, size, size)
    aux = {}
    if isinstance(out, dict):
        checker.check(checker.component.contract == 2, "returned a dict in train mode: only a contract 2 generator "
                                                       "may (register it with contract=2, see zoo.hookspecs)")
        checker.check("ab" in out, f"returned auxiliary outputs {sorted(map(str, out))} with no decoding to ab: a v2 "
                                   f"generator's dict must hold 'ab' (the declared decoding, see zoo.hookspecs)")
        aux = {k: v for k, v in out.items() if k != "ab"}
        out = out["ab"]
    checker.check(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor {expected}")
    checker.check(tuple(out.shape) == expected, f"L {tuple(x.shape)} gave {tuple(out.shape)}, expected {expected}")
    checker.check(out.dtype == torch.float32, f"output dtype {out.dtype}, expected float32")
    checker.check(bool(torch.isfinite(out).all()), "output has NaN or inf")
    lo, hi = out.min().item(), out.max().item()
    checker.check(lo >= -1 and hi <= 1, f"output range [{lo:.3g}, {hi:.3g}] leaves [-1, 1]: end with a Tanh "
                                        f"(ab is scaled ab/110)")
    total = (out * torch.randn_like(out)).sum() + sum((v.float() * torch.randn_like(v.float())).sum()
                                                      for v in aux.values() if v.is_floating_point())
    total.backward()
    _check_gradients(checker, net)
    checker.check(x.grad is not None and x.grad.abs().sum() > 0, "the output does not depend on the input L")
    net.eval()
    with torch.no_grad():
        one = net(torch.rand(1, 1, size, size) * 2 - 1)
    checker.check(isinstance(one, torch.Tensor), f"in eval mode it returned {type(one).__name__}: inference, "
                                                 f"export and evaluation need ab (B, 2, H, W) in eval mode")
    checker.check(tuple(one.shape) == (1, 2, size, size), f"in eval mode batch 1 gave {tuple(one.shape)}")


def _check_discriminator(checker: _Checker, net: nn.Module) -> None:
    size = checker.image_size
    _check_trainable(checker, net)
    net.train()
    x = (torch.rand(BATCH, 3, size, size) * 2 - 1).requires_grad_()
    raw = net(x)
    if checker.component.contract == 2:
        try:
            result = DiscriminatorOutput.of(raw)
        except ValueError as exc:
            checker.fail(str(exc))
        maps, features = result.logits, result.features
    else:
        checker.check(isinstance(raw, torch.Tensor), f"returned {type(raw).__name__}, expected logits (B, 1, h, w) "
                                                     f"(several maps or features: register it with contract=2)")
        maps, features = [raw], []
    for out in maps:
        shape = tuple(out.shape)
        checker.check(out.dim() == 4 and shape[:2] == (BATCH, 1) and min(shape[2:]) >= 1,
                      f"Lab {tuple(x.shape)} gave {shape}, expected ({BATCH}, 1, h, w) with h, w >= 1")
        checker.check(bool(torch.isfinite(out).all()), "logits have NaN or inf")
    for f in features:
        checker.check(f.shape[0] == BATCH, f"a feature map has batch {f.shape[0]}, expected {BATCH}")
    out = torch.cat([m.flatten() for m in maps])
    (out * torch.randn_like(out)).sum().backward()
    _check_gradients(checker, net)
    checker.check(x.grad[:, :1].abs().sum() > 0 and x.grad[:, 1:].abs().sum() > 0,
                  "the logits must depend on both L (channel 0) and ab (channels 1-2): it is a conditional D")
    net.eval()
    with torch.no_grad():
        one = net(torch.rand(1, 3, size, size) * 2 - 1)
    one = DiscriminatorOutput.of(one).logits[0] if checker.component.contract == 2 else one
    checker.check(tuple(one.shape[:2]) == (1, 1), f"in eval mode batch 1 gave {tuple(one.shape)}")


def _scalar(checker: _Checker, value: Any, call: str) -> torch.Tensor:
    checker.check(isinstance(value, torch.Tensor) and value.dim() == 0,
                  f"{call} returned {getattr(value, 'shape', type(value).__name__)}, expected a scalar tensor")
    checker.check(bool(torch.isfinite(value)), f"{call} is {value.item()}")
    return value


def _check_gan_loss(checker: _Checker, loss: nn.Module) -> None:
    if checker.component.contract == 2:
        return _check_v2_loss(checker, loss)
    logits = torch.randn(BATCH, 1, 6, 6, requires_grad=True)
    for target in (True, False):
        value = _scalar(checker, loss(logits, target), f"loss(logits, {target})")
        (grad,) = torch.autograd.grad(value, logits)
        checker.check(bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0,
                      f"loss(logits, {target}) gives no finite, nonzero gradient to the logits")
    # Logits of 1 lean "real", 0 "undecided/fake" for BCE, least squares (targets 1/0), hinge and Wasserstein.
    real, fake = torch.ones(BATCH, 1, 6, 6), torch.zeros(BATCH, 1, 6, 6)
    with torch.no_grad():
        pairs = {t: (_scalar(checker, loss(real, t), f"loss(ones, {t})").item(),
                     _scalar(checker, loss(fake, t), f"loss(zeros, {t})").item()) for t in (True, False)}
    checker.check(pairs[True][0] < pairs[True][1], f"target real: loss on logits 1 ({pairs[True][0]:.4g}) must be "
                                                   f"lower than on logits 0 ({pairs[True][1]:.4g})")
    checker.check(pairs[False][1] < pairs[False][0], f"target fake: loss on logits 0 ({pairs[False][1]:.4g}) must "
                                                     f"be lower than on logits 1 ({pairs[False][0]:.4g})")


def _check_pixel_loss(checker: _Checker, loss: nn.Module) -> None:
    if checker.component.contract == 2:
        return _check_v2_loss(checker, loss)
    real = torch.rand(BATCH, 2, 8, 8) * 2 - 1
    fake = (torch.rand(BATCH, 2, 8, 8) * 2 - 1).requires_grad_()
    value = _scalar(checker, loss(fake, real), "loss(fake, real)")
    (grad,) = torch.autograd.grad(value, fake)
    checker.check(bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0,
                  "loss(fake, real) gives no finite, nonzero gradient to fake")
    same = _scalar(checker, loss(real.clone(), real), "loss(real, real)").item()
    checker.check(abs(same) < 1e-5, f"loss(real, real) is {same:.4g}, expected 0")
    checker.check(value.item() > same, f"loss(fake, real) {value.item():.4g} is not above loss(real, real)")


class _CountingD(nn.Module):
    """The probe discriminator, counting the calls a loss makes itself (penalties)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _v2_context(role: str, d_logits: tuple[float, float] | None = None, outputs: dict[str, int] | None = None):
    """A probe StepContext (zoo.contract_probe.probe_context) whose discriminator counts its calls; ``d_logits``
    (real, fake): constant logit maps instead of the probe net's, for the objective's direction checks."""
    ctx, net = probe_context(role, BATCH, 8, grad=True, outputs=outputs)
    ctx.discriminator = counting = _CountingD(net)
    if d_logits is not None:
        real, fake = d_logits
        shape = ctx.d_fake.logits[0].shape
        ctx.d_real = DiscriminatorOutput([torch.full(shape, real)], [f.detach() for f in ctx.d_real.features])
        ctx.d_fake = DiscriminatorOutput([torch.full(shape, fake, requires_grad=True)],
                                         [f.detach() for f in ctx.d_fake.features])
    return ctx, counting


def _check_v2_loss(checker: _Checker, loss: nn.Module) -> None:
    """A contract 2 loss (GAN loss, pixel loss or term), in each role it trains (see zoo.hookspecs)."""
    component = checker.component
    needs = component.output_channels(checker.options)
    for role in component.trains:
        ctx, counting = _v2_context(role, outputs=needs)
        value = _scalar(checker, loss(ctx), f"loss(ctx) in the {role} role")
        if role == "discriminator":
            checker.check(value.requires_grad, "in the discriminator role it carries no gradient: it must depend on "
                                               "ctx.d_real / ctx.d_fake or call ctx.discriminator")
            value.backward()
            grads = [p.grad for p in counting.parameters()]
            checker.check(any(g is not None and g.abs().sum() > 0 for g in grads),
                          "in the discriminator role no gradient reaches the discriminator's parameters")
            # a penalty: with D's outputs as constants, what it computes by calling D must still train D
            ctx, counting = _v2_context(role, (0.5, -0.5))
            calls_before = counting.calls
            value = loss(ctx)
            if counting.calls > calls_before:
                ok = value.requires_grad
                if ok:
                    value.backward()
                    ok = any(p.grad is not None and p.grad.abs().sum() > 0 for p in counting.parameters())
                checker.check(ok, "its penalty (it calls ctx.discriminator) carries no gradient to the "
                                  "discriminator's parameters: keep the graph (torch.autograd.grad(..., "
                                  "create_graph=True)) and do not .detach() it")
        else:
            checker.check(value.requires_grad, "in the generator role it carries no gradient to the generator's "
                                               "output: it must depend on ctx.fake_ab, ctx.outputs or ctx.d_fake")
            inputs = [ctx.fake_ab, *ctx.outputs.values()]
            grads = torch.autograd.grad(value, inputs, allow_unused=True)
            checker.check(any(g is not None and bool(torch.isfinite(g).all()) and g.abs().sum() > 0 for g in grads),
                          "in the generator role no finite, nonzero gradient reaches the generated ab"
                          + (f" or the outputs {sorted(needs)} it declares" if needs else ""))
    if component.kind == "gan_loss":  # the objectives point the right way in each role (grad on: penalties)
        good_d = loss(_v2_context("discriminator", (1.0, -1.0))[0]).item()
        bad_d = loss(_v2_context("discriminator", (-1.0, 1.0))[0]).item()
        fooled = loss(_v2_context("generator", (0.0, 1.0))[0]).item()
        caught = loss(_v2_context("generator", (0.0, -1.0))[0]).item()
        checker.check(good_d < bad_d, f"discriminator role: D(real)=1, D(fake)=-1 must cost less ({good_d:.4g}) than "
                                      f"D(real)=-1, D(fake)=1 ({bad_d:.4g})")
        checker.check(fooled < caught, f"generator role: D(fake)=1 must cost less ({fooled:.4g}) than D(fake)=-1 "
                                       f"({caught:.4g}): does it read ctx.role?")
    if component.kind == "pixel_loss" and not needs:  # a loss on ab alone: zero when fake == real
        ctx, _ = _v2_context("generator")
        ctx.fake_ab = ctx.real_ab.clone()
        with torch.no_grad():
            same = _scalar(checker, loss(ctx), "loss(ctx) with fake_ab == real_ab").item()
        checker.check(abs(same) < 1e-5, f"with fake_ab == real_ab it is {same:.4g}, expected 0")


def _check_term(checker: _Checker, loss: nn.Module) -> None:
    _check_v2_loss(checker, loss)


_KIND_CHECKS = {"generator": _check_generator, "discriminator": _check_discriminator,
                "gan_loss": _check_gan_loss, "pixel_loss": _check_pixel_loss, "loss": _check_term}


# ---- a few steps of the real engine ----------------------------------------------------------------------

def partners(registry: Registry, image_size: int, but: str | None = None) -> dict[str, dict[str, Any]]:
    """The components the kit pairs a checked one with: in each slot (but ``but``) the slot's default component
    (:func:`zoo.spec.default_component`) with its first declared test option set, fitted to ``image_size``."""
    from zoo.spec import default_component

    out = {}
    for slot in SLOT_KINDS:
        if slot == but:
            continue
        component = registry.get(slot, default_component(slot, registry))
        tests = component.test_option_sets(image_size)
        out[slot] = {"name": component.name, "options": tests[0] if tests else component.fit_options({}, image_size)}
    return out


def image_size_for(kind: str, name: str, at_least: int = 32, registry: Registry | None = None) -> int:
    """The smallest image side >= ``at_least`` at which the component's first declared test option set (fitted by
    its declared depth option) meets its declared size constraints (``at_least`` when it declares none)."""
    component = (registry or load_registry()).get(kind, name)
    tests = component.declared.test_options
    options = dict(tests[0]) if tests else {}
    for size in range(at_least, 4097):
        if component.size_problem(component.fit_options(options, size), size) is None:
            return size
    raise AssertionError(f"zoo contract: {component.title}: no image size from {at_least} to 4096 px meets its "
                         f"declared size constraints with options {options}")


def _parameters(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in net.named_parameters()}


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[n], after[n]) for n in before)


def _train(checker: _Checker, registry: Registry, options: dict[str, Any], steps: int,
           device: str) -> dict[str, float]:
    from zoo.checkpoint import load_checkpoint
    from zoo.engine import Trainer, TrainingStopped
    from zoo.spec import validate_spec

    kind, size = checker.component.kind, checker.image_size
    raw: dict[str, Any] = {
        **partners(registry, size, but=kind),
        "data": {"source": "embedded", "image_size": size, "batch_size": BATCH, "val_images": BATCH},
        "steps": steps, "log_every": 1, "sample_every": 10_000, "checkpoint_every": 10_000, "num_samples": 1,
        "device": device, "seed": 0,
    }
    for slot, partner in checker.component.declared.test_partners.items():  # what the component says it needs
        raw[slot] = {"name": partner["name"], "options": registry.get(slot, partner["name"]).fit_options(
            partner.get("options", {}), size)}
    if kind == "loss":
        raw["losses"] = [{"name": checker.component.name, "options": options}]
    else:
        raw[kind] = {"name": checker.component.name, "options": options}
    if kind == "pixel_loss":  # the pretraining stage trains G with the pixel loss alone
        raw["pretrain"] = {"steps": steps}
        raw["steps"] = 1
    with tempfile.TemporaryDirectory(prefix="zoo-contract-") as tmp:
        try:
            spec = validate_spec({**raw, "out": tmp})
            trainer = Trainer.create(spec, run_dir=Path(tmp) / "run", registry=registry, log=lambda _: None,
                                     progress=False)
        except PluginError as exc:
            checker.fail(f"the engine could not build it: {checker.without_prefix(str(exc))}")
        except ZooError as exc:
            checker.fail(f"the engine refused a tiny spec using it: {exc}")
        except Exception as exc:
            checker.fail(f"the engine failed to set it up: {type(exc).__name__}: {exc}")
        models = trainer.models
        before = {"generator": _parameters(models.generator), "discriminator": _parameters(models.discriminator)}
        try:
            trainer.fit()
        except TrainingStopped as exc:
            checker.fail(f"training stopped: {exc}")
        except Exception as exc:
            checker.fail(f"training raised {type(exc).__name__}: {exc}")
        rows = [json.loads(line) for line in trainer.paths.losses.read_text(encoding="utf-8").splitlines()]
        losses = [r for r in rows if "stage" in r]
        checker.check(len(losses) == trainer.schedule.total, f"expected {trainer.schedule.total} logged steps, "
                                                             f"got {len(losses)}")
        skip = {"step", "stage", "epoch", "img_per_s", "time"}
        for row in losses:
            bad = {k: v for k, v in row.items() if k not in skip and not math.isfinite(v)}
            checker.check(not bad, f"non-finite losses at step {row['step']}: {bad}")
        if kind == "pixel_loss":
            pretrained = load_checkpoint(trainer.paths.checkpoint_path(steps))
            after = {n: pretrained.generator[n] for n in before["generator"]}
            checker.check(_changed(before["generator"], after),
                          f"{steps} generator steps with this pixel loss alone left the generator unchanged")
        else:
            nets = {"generator": ["generator"], "discriminator": ["discriminator"],
                    "gan_loss": ["generator", "discriminator"], "loss": list(checker.component.trains)}[kind]
            for net in nets:
                after = _parameters(getattr(models, net))
                checker.check(_changed(before[net], after),
                              f"{steps} training steps left the {net}'s weights unchanged")
        return {k: v for k, v in losses[-1].items() if k not in skip}


__all__ = ["ContractReport", "check_component", "image_size_for", "parametrize_registered", "partners"]
