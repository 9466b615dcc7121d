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

from zoo.component import KINDS, SLOT_KINDS, BuildContext
from zoo.contract_checks import BATCH, KIND_CHECKS, Checker
from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent, ZooError
from zoo.registry import Registry, describe_options, load_registry
from zoo.text import shown

#: the option key used to check that unknown keys are rejected
UNKNOWN_KEY = "zoo_contract_unknown_option"


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
    checker = Checker(component, image_size)
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
            KIND_CHECKS[kind](checker, module)
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

def _check_options_model(checker: Checker) -> None:
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


def _train(checker: Checker, registry: Registry, options: dict[str, Any], steps: int,
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
