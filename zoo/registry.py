"""Component registry built on pluggy.

Plugins (the built-ins included) are modules published in the entry-point group ``zoo``; see
:mod:`zoo.hookspecs` for the contract. The registry is made in a function, never at import time.
"""
from __future__ import annotations

import difflib
import functools
import importlib.metadata as metadata
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import pluggy
from pydantic import BaseModel, ValidationError

from zoo import hookspecs
from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent
from zoo.text import one_line, shown

#: component kind -> the hook that registers it
KIND_TITLES = {"generator": "generators", "discriminator": "discriminators", "gan_loss": "GAN losses",
               "pixel_loss": "pixel losses", "loss": "loss terms"}
KINDS: dict[str, str] = {
    "generator": "register_generators",
    "discriminator": "register_discriminators",
    "gan_loss": "register_gan_losses",
    "pixel_loss": "register_pixel_losses",
    "loss": "register_losses",
}
#: the kinds that fill one slot of a spec each (``loss`` terms are a list: the spec's ``losses``)
SLOT_KINDS = ("generator", "discriminator", "gan_loss", "pixel_loss")
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"
#: a component name: it becomes part of file and folder names (run folders), so no '/', '..', ':' or spaces
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = ("1-64 letters, digits, '_', '.' or '-', starting with a letter or digit, without '..' "
             "(no '/', ':', spaces or control characters)")
#: the probe's batch: 2, so a net that only works for one image is caught when it is built
PROBE_BATCH = 2


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or is disabled; the others keep working."""


@dataclass(frozen=True)
class BuildContext:
    """What a builder may know about the run besides its own options."""

    image_size: int = 256


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or failed) plugin: its entry-point name, module and providing distribution."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None

    @property
    def provider(self) -> str:
        dist = f"{one_line(self.distribution)} {one_line(self.version)}" if self.distribution else "(not installed)"
        return f"{dist} [{one_line(self.module)}]"

    @property
    def disabled(self) -> bool:
        return self.error == f"disabled by {DISABLE_ENV}"

    @property
    def package(self) -> str:
        """The ``package`` of ``package:name``: the distribution's normalised name (PEP 503), or the plugin's name
        for one registered in-process without a distribution."""
        return canonical_package(self.distribution or self.name)

    @property
    def pin(self) -> str | None:
        """What a resolved spec records as the component's provider: ``"distribution==version"`` (None without a
        distribution)."""
        return f"{self.package}=={self.version}" if self.distribution else None


def canonical_package(name: str) -> str:
    """A distribution name as ``package:name`` spells it: lower case, runs of ``-_.`` as one ``-`` (PEP 503)."""
    return re.sub(r"[-_.]+", "-", str(name)).lower()


#: which kinds each declaration applies to (losses have no image size, depth or weights to declare)
_NET_KINDS = ("generator", "discriminator")
DECLARATION_KINDS: dict[str, tuple[str, ...]] = {
    "size_multiple": _NET_KINDS, "min_image_size": _NET_KINDS, "depth_option": _NET_KINDS,
    "pretrained": _NET_KINDS, "test_options": tuple(KINDS), "contract": tuple(KINDS), "trains": ("loss",),
    "test_partners": tuple(KINDS), "needs_outputs": ("gan_loss", "pixel_loss", "loss"),
}
CONTRACTS = (1, 2)


@dataclass(frozen=True, eq=False)  # eq=False: hashable by identity although test_options holds dicts
class Declarations:
    """What a plugin declares about a component when it registers it (see :mod:`zoo.hookspecs`).

    Each is optional; the defaults declare nothing: the core then assumes no size constraint, no depth to fit,
    freshly initialised weights (or the v1 rule: a bool option named ``pretrained``) and no small test options.
    """

    size_multiple: int | Callable[[Any], int] | None = None
    min_image_size: int | Callable[[Any], int] | None = None
    depth_option: str | None = None
    pretrained: str | Callable[[Any], bool] | None = None
    test_options: tuple[Mapping[str, Any], ...] = ()
    contract: int = 1
    trains: tuple[str, ...] = ()
    test_partners: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    needs_outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Component:
    """A registered component: how to validate its options and build it, and what its plugin declared."""

    kind: str
    name: str
    build: Callable[[Any, BuildContext], Any]
    options_model: type[BaseModel]
    plugin: PluginInfo
    declared: Declarations = field(default_factory=Declarations)

    @property
    def qualified_name(self) -> str:
        """``package:name``: addressable always, even when another package registers the same short name."""
        return f"{self.plugin.package}:{self.name}"

    @property
    def contract(self) -> int:
        return self.declared.contract

    @property
    def trains(self) -> tuple[str, ...]:
        """The roles in which the engine calls this loss: declared for loss terms; a GAN loss trains both nets,
        a pixel loss the generator."""
        return self.declared.trains or {"gan_loss": ("discriminator", "generator"),
                                        "pixel_loss": ("generator",)}.get(self.kind, ())

    def output_channels(self, options=None) -> dict[str, int]:
        """The generator outputs this loss declares it reads (``needs_outputs``), with their channel counts."""
        opts = self.options(options)
        return {k: (v(opts) if callable(v) else v) for k, v in self.declared.needs_outputs.items()}

    @property
    def title(self) -> str:
        """How messages name it: ``generator 'unet' from zoo 0.1.0 [zoo_plugins.generators.unet]``."""
        return f"{self.kind} {shown(self.name)} from {self.plugin.provider}"

    def options(self, raw: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        """Validate raw options with the component's own model; errors become one-line SpecErrors."""
        if isinstance(raw, self.options_model):
            return raw
        try:
            return self.options_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise SpecError(
                f"{self.kind} {shown(self.name)} options: {format_validation_error(exc)}"
                f" (see `zoo list` for its options)"
            ) from None

    # ---- declarations -----------------------------------------------------------------------------------

    def _declared_int(self, what: str, options) -> int | None:
        value = getattr(self.declared, what)
        if value is None:
            return None
        if callable(value):
            opts = self.options(options)
            try:
                value = value(opts)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - the plugin's callable: its failure is the plugin's
                raise PluginError(f"{self.title}: its declared {what} failed for options "
                                  f"{opts.model_dump(mode='json')}: {type(exc).__name__}: {one_line(exc)}") from exc
            if value is None:
                return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PluginError(f"{self.title}: its declared {what} gave {one_line(repr(value))}, expected a positive "
                              f"int: fix the plugin's register call")
        return value

    def size_multiple_for(self, options=None) -> int | None:
        """The number the image side must be a multiple of for these options (None: no constraint declared)."""
        return self._declared_int("size_multiple", options)

    def min_image_size_for(self, options=None) -> int | None:
        """The smallest image side these options build at (None: no constraint declared)."""
        return self._declared_int("min_image_size", options)

    def is_pretrained(self, options=None) -> bool:
        """Whether a module built with these options already holds trained weights (the engine then does not
        initialise it): the declared ``pretrained`` option or callable; False when none is declared."""
        rule = self.declared.pretrained
        if rule is None:
            return False
        opts = self.options(options)
        if isinstance(rule, str):
            return bool(getattr(opts, rule))
        try:
            return bool(rule(opts))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise PluginError(f"{self.title}: its declared pretrained rule failed: {type(exc).__name__}: "
                              f"{one_line(exc)}") from exc

    def _misfit(self, options, image_size: int) -> tuple[str, int] | None:
        """("multiple" or "minimum", the declared number) that ``image_size`` breaks, or None."""
        opts = self.options(options)
        multiple = self.size_multiple_for(opts)
        if multiple and image_size % multiple:
            return "multiple", multiple
        least = self.min_image_size_for(opts)
        if least and image_size < least:
            return "minimum", least
        return None

    def size_problem(self, options, image_size: int) -> str | None:
        """Why these options cannot build at ``image_size`` by the declarations (one line), or None if they can."""
        opts = self.options(options)
        misfit = self._misfit(opts, image_size)
        if misfit is None:
            return None
        what, number = misfit
        depth = self.declared.depth_option
        name = one_line(self.name)
        if what == "multiple":
            if depth:
                fitted = self.fit_options(opts.model_dump(), image_size)
                if self._misfit(fitted, image_size) is None:
                    return (f"{name}: {depth} {getattr(opts, depth)} needs an image size divisible by {number}; "
                            f"image size {image_size} allows {depth} <= {fitted[depth]}")
            lower, higher = image_size // number * number, (image_size // number + 1) * number
            near = f"{lower} or {higher}" if lower else f"{higher}"
            return f"{name}: image size {image_size} is not a multiple of {number}; use {near}"
        if depth:
            return (f"{name}: {depth} {getattr(opts, depth)} needs an image size >= {number}; image size "
                    f"{image_size} is too small: lower {depth}")
        return f"{name}: image size {image_size} is too small: it needs at least {number}"

    def fit_options(self, options: dict[str, Any] | None, image_size: int) -> dict[str, Any]:
        """``options`` with the declared depth option lowered until the declared size multiple and minimum
        image size fit ``image_size`` (pix2pix's U-Net at 64 px: n_down 8 -> 6).

        Only the depth option changes, and only when it must; without a declared ``depth_option``, or when no
        depth fits, the options are returned as given (building then says what is wrong).
        """
        opts = dict(options or {})
        depth = self.declared.depth_option
        if depth is None or self._misfit(opts, image_size) is None:
            return opts
        current = opts.get(depth, self.options_model.model_fields[depth].default)
        if isinstance(current, bool) or not isinstance(current, int):
            return opts
        for value in range(current - 1, -1, -1):
            candidate = {**opts, depth: value}
            try:
                self.options(candidate)
            except SpecError:  # below the option's own bound
                break
            if self._misfit(candidate, image_size) is None:
                return candidate
        return opts

    def test_option_sets(self, image_size: int | None = None) -> list[dict[str, Any]]:
        """The declared small option sets (the contract kit builds each; the first trains), each fitted to
        ``image_size`` when given."""
        sets = [dict(s) for s in self.declared.test_options]
        return [self.fit_options(s, image_size) for s in sets] if image_size is not None else sets

    def describe_declarations(self) -> dict[str, Any]:
        """The declarations as plain data (for ``zoo list``): size numbers at the default options, option
        names as declared, ``"function of the options"`` for a pretrained rule given as a function."""
        try:
            multiple, least = self.size_multiple_for({}), self.min_image_size_for({})
        except (PluginError, SpecError):
            multiple = least = None
        rule = self.declared.pretrained
        return {"size_multiple": multiple, "min_image_size": least, "depth_option": self.declared.depth_option,
                "pretrained": rule if rule is None or isinstance(rule, str) else "function of the options",
                "test_options": [dict(s) for s in self.declared.test_options]}

    # ---- building ---------------------------------------------------------------------------------------

    def create(self, raw_options: dict[str, Any] | BaseModel | None = None,
               context: BuildContext | None = None, check: bool = True):
        """Build the component and, unless ``check`` is False, probe its input/output contract once.

        The declared size constraints are checked first (a one-line SpecError). Anything the builder raises
        other than a ZooError (SystemExit included; KeyboardInterrupt excepted) is a PluginError naming the
        plugin.
        """
        opts = self.options(raw_options)
        context = context or BuildContext()
        problem = self.size_problem(opts, context.image_size)
        if problem:
            raise SpecError(problem)
        try:
            module = self.build(opts, context)
        except (SpecError, UnknownComponent, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a builder must not end zoo with rc 0
            if getattr(exc, "exit_code", None) is not None and isinstance(exc, Exception):  # a ZooError
                raise
            raise PluginError(f"{self.title} failed to build: {type(exc).__name__}: {one_line(exc)}") from exc
        if check:
            import torch

            if not isinstance(module, torch.nn.Module):
                raise PluginError(f"{self.title}: its build returned {type(module).__name__}, expected a "
                                  f"torch.nn.Module: fix the plugin's build function")
            if self.kind in _NET_KINDS and not any(p.requires_grad for p in module.parameters()):
                raise PluginError(f"{self.title} has no trainable parameters: weights kept in plain tensors or "
                                  f"buffers are not trained (use nn.Parameter or torch layers)")
            _probe(self, module, context)
        return module


def format_validation_error(exc: ValidationError) -> str:
    """pydantic errors as one line: 'a.b: message; c: message'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(one_line(p) for p in err["loc"]) or "(root)"  # keys from outside: escaped
        msg = one_line(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _probe(component: Component, module, context: BuildContext) -> None:
    """Run one tiny forward pass of PROBE_BATCH images to catch plugins whose output breaks the contract."""
    import torch

    size, n = context.image_size, PROBE_BATCH
    was_training = getattr(module, "training", False)
    expected = None
    if component.contract == 2 and component.kind not in _NET_KINDS:
        return _probe_v2_loss(component, module)
    try:
        with torch.no_grad():
            if component.kind == "generator":
                module.eval()
                out = module(torch.zeros(n, 1, size, size))
                expected = f"({n}, 2, {size}, {size})"
                ok = isinstance(out, torch.Tensor) and tuple(out.shape) == (n, 2, size, size)
            elif component.kind == "discriminator":
                module.eval()
                out = module(torch.zeros(n, 3, size, size))
                expected = f"({n}, 1, h, w)" + (" maps (a tensor, a list or {'logits': [...], 'features': [...]})"
                                                if component.contract == 2 else "")
                if component.contract == 2:
                    try:
                        maps = hookspecs.DiscriminatorOutput.of(out).logits
                    except ValueError as exc:
                        raise PluginError(f"{component.title} {exc}: fix the plugin's build function") from None
                else:
                    maps = [out]
                ok = all(isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[:2] == (n, 1) for t in maps)
                if ok:
                    out = maps[0]
            elif component.kind == "gan_loss":
                out = module(torch.zeros(n, 1, 4, 4), True)
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
            else:
                out = module(torch.zeros(n, 2, 4, 4), torch.zeros(n, 2, 4, 4))
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
    except (KeyboardInterrupt, PluginError):
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a forward is the plugin's bug too
        raise PluginError(f"{component.title} failed its contract check at image size {size}, batch {n}: "
                          f"{type(exc).__name__}: {one_line(exc)}") from exc
    finally:
        if hasattr(module, "train"):
            module.train(was_training)
    if not ok:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"{component.title} returned {got}, expected {expected}: fix the plugin's build function")


def probe_context(role: str, n: int = PROBE_BATCH, size: int = 8, grad: bool = False,
                  outputs: dict[str, int] | None = None):
    """A StepContext of zeros-and-noise inputs with a small fixed conv discriminator (the v2 losses' probe, and
    the contract kit's base case)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    L = torch.rand(n, 1, size, size, generator=gen) * 2 - 1
    real = torch.rand(n, 2, size, size, generator=gen) * 2 - 1
    fake = (torch.rand(n, 2, size, size, generator=gen) * 2 - 1).requires_grad_(grad)
    disc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.LeakyReLU(0.2),
                               torch.nn.Conv2d(4, 1, 3, padding=1))

    class _Features(torch.nn.Module):  # {"logits": [map], "features": [hidden]}, as a v2 discriminator may return
        def __init__(self):
            super().__init__()
            self.body, self.head = disc[:2], disc[2]

        def forward(self, x):
            hidden = self.body(x)
            return {"logits": [self.head(hidden)], "features": [hidden]}

    net = _Features()
    D = hookspecs.DiscriminatorOutput.of
    fake_in = fake if role == "generator" else fake.detach()
    aux = {k: torch.randn(n, c, size, size, generator=gen).requires_grad_(grad and role == "generator")
           for k, c in (outputs or {}).items()}
    ctx = hookspecs.StepContext(role, L, real, fake_in, aux, discriminator=net, probe=True,
                                d_fake=D(net(torch.cat([L, fake_in], 1))))
    if role == "generator":
        with torch.no_grad():
            ctx.d_real = D(net(torch.cat([L, real], 1)))
    else:
        ctx.d_real = D(net(torch.cat([L, real], 1)))
    return ctx, net


def _probe_v2_loss(component: Component, module) -> None:
    """Call a v2 loss once per role it trains on a probe context (with gradients: penalties need them)."""
    import torch

    for role in component.trains:
        try:
            ctx, _ = probe_context(role, outputs=component.output_channels())
            out = module(ctx)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            raise PluginError(f"{component.title} failed its contract check in the {role} role: "
                              f"{type(exc).__name__}: {one_line(exc)}") from exc
        if not (isinstance(out, torch.Tensor) and out.dim() == 0):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PluginError(f"{component.title} returned {got} in the {role} role, expected a scalar tensor: fix "
                              f"the plugin's build function")


@dataclass
class Registry:
    """All components, by kind and name, plus the plugins they came from.

    ``components[kind]`` holds the short names that exactly one package registers; ``clashes[kind]`` the short
    names several packages register (each with its components); ``qualified[kind]`` every component by
    ``package:name``.
    """

    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugins: list[PluginInfo] = field(default_factory=list)
    clashes: dict[str, dict[str, list[Component]]] = field(default_factory=lambda: {k: {} for k in KINDS})
    qualified: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def names(self, kind: str) -> list[str]:
        """The names that address one component each: the unique short names, then ``package:name`` of every
        component whose short name clashes."""
        kind = _check_kind(kind)
        clashed = sorted(c.qualified_name for group in self.clashes[kind].values() for c in group)
        return sorted(self.components[kind]) + clashed

    def all(self, kind: str) -> list[Component]:
        """Every component of a kind, clashing ones included, in name order."""
        return sorted(self.qualified[_check_kind(kind)].values(), key=lambda c: (c.name, c.qualified_name))

    def clash_message(self, kind: str, name: str) -> str:
        group = sorted(self.clashes[kind][name], key=lambda c: c.qualified_name)
        providers = " and ".join(c.plugin.provider for c in group)
        forms = " or ".join(shown(c.qualified_name) for c in group)
        skip = next((c.plugin for c in group if c.plugin.package != "zoo"), group[-1].plugin)
        return (f"{kind.replace('_', ' ')} {shown(name)} is registered by several packages ({providers}): name "
                f"one as package:name, {forms}, or skip a package with {DISABLE_ENV}="
                f"{one_line(skip.distribution or skip.name)}")

    def get(self, kind: str, name: str, provider: str | None = None) -> Component:
        """The component ``name`` (short or ``package:name``) of a kind. A short name that several packages
        register is a DuplicateComponent naming the ``package:name`` forms, unless ``provider`` (a recorded
        ``"distribution==version"`` or distribution) picks one."""
        table = self.components[_check_kind(kind)]
        if isinstance(name, str) and ":" in name:
            package, _, short = name.partition(":")
            found = self.qualified[kind].get(f"{canonical_package(package)}:{short}")
            if found is not None:
                return found
        if name in table:
            return table[name]
        if name in self.clashes[kind]:
            if provider:
                wanted = canonical_package(provider.partition("==")[0])
                for c in self.clashes[kind][name]:
                    if c.plugin.package == wanted:
                        return c
            raise DuplicateComponent(self.clash_message(kind, name))
        listed = self.names(kind)
        available = ", ".join(listed) or "(none)"
        close = difflib.get_close_matches(str(name), listed, n=1)
        hint = f" Did you mean {shown(close[0])}?" if close else ""
        disabled = self.disabled()
        if disabled:  # never loaded, so what they provide is unknown: say so rather than imply "not installed"
            listed = ", ".join(shown(p.name) for p in disabled)
            hint += (f" {DISABLE_ENV} disables the plugin(s) {listed}, which may provide it (remove a plugin from "
                     f"{DISABLE_ENV} to load it).")
        raise UnknownComponent(f"no {kind.replace('_', ' ')} named {shown(name)}.{hint} Available: {available}")

    def disabled(self) -> list[PluginInfo]:
        """The plugins ZOO_DISABLE_PLUGINS kept from loading (what they provide is not known)."""
        return [p for p in self.plugins if p.disabled]

    def create(self, kind: str, name: str, options=None, context: BuildContext | None = None, check=True,
               provider: str | None = None):
        return self.get(kind, name, provider).create(options, context, check=check)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownComponent(f"no component kind {shown(kind)}. Available: {', '.join(KINDS)}")
    return kind


def disabled_plugins() -> set[str]:
    """Entry-point or distribution names listed in ZOO_DISABLE_PLUGINS (comma or space separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return {p.strip() for p in raw.replace(",", " ").split() if p.strip()}


def _entry_points():
    seen = set()
    for ep in metadata.entry_points(group=hookspecs.NAME):
        key = (ep.name, ep.value)
        if key in seen:  # the same distribution can be visible twice on sys.path
            continue
        seen.add(key)
        yield ep


def load_registry(extra_plugins: tuple[tuple[str, object], ...] = (), entry_points: bool = True) -> Registry:
    """Load every plugin and collect its components.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered after the entry points (for tests
    and embedding applications). A plugin that fails to import is reported with a PluginLoadWarning and
    skipped; two packages registering one short name are both kept, as ``package:name`` (the short name is
    refused where it is used, see :meth:`Registry.get`).
    """
    pm = pluggy.PluginManager(hookspecs.NAME)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    infos: dict[str, PluginInfo] = {}
    blocked = disabled_plugins()

    def add(name: str, plugin: object, info: PluginInfo) -> None:
        if pm.is_registered(plugin):
            return
        try:
            pm.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            info = PluginInfo(info.name, info.module, info.distribution, info.version, f"invalid plugin: {exc}")
            warnings.warn(f"zoo plugin {shown(name)} from {info.provider} is invalid and was skipped: {one_line(exc)}",
                          PluginLoadWarning, stacklevel=3)
        else:
            infos[name] = info
        registry.plugins.append(info)

    if entry_points:
        for ep in _entry_points():
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            info = PluginInfo(ep.name, ep.value, dist_name, dist.version if dist is not None else None)
            if ep.name in blocked or (dist_name and dist_name in blocked):
                registry.plugins.append(PluginInfo(info.name, info.module, info.distribution, info.version,
                                                   f"disabled by {DISABLE_ENV}"))
                continue
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - a broken plugin (sys.exit included) must not take the others down
                registry.plugins.append(PluginInfo(info.name, info.module, info.distribution, info.version,
                                                   f"failed to import: {type(exc).__name__}: {one_line(exc)}"))
                warnings.warn(
                    f"zoo plugin {shown(ep.name)} from {info.provider} failed to import and was skipped "
                    f"(the other plugins work): {type(exc).__name__}: {one_line(exc)}", PluginLoadWarning, stacklevel=2)
                continue
            add(ep.name, plugin, info)
    for name, plugin in extra_plugins:
        module = getattr(plugin, "__name__", type(plugin).__name__)
        if name in blocked:
            registry.plugins.append(PluginInfo(name, module, error=f"disabled by {DISABLE_ENV}"))
            continue
        add(name, plugin, PluginInfo(name, module))
    pm.check_pending()
    known = {p.name for p in registry.plugins} | {p.distribution for p in registry.plugins if p.distribution}
    for name in sorted(blocked - known - {n for n, _ in extra_plugins}):
        warnings.warn(f"{DISABLE_ENV} names {shown(name)}, which is no installed zoo plugin or distribution (see "
                      f"`zoo plugins`)", PluginLoadWarning, stacklevel=2)

    failed: set[str] = set()
    for kind, hook_name in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in reversed(hook.get_hookimpls()):  # registration order
            if impl.plugin_name in failed:
                continue
            info = infos[impl.plugin_name]
            try:
                impl.function(register=functools.partial(_register, registry, kind, info))
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - skipped whole, like a plugin that fails to import
                failed.add(impl.plugin_name)
                reason = f"failed while registering its {KIND_TITLES[kind]}: {type(exc).__name__}: {one_line(exc)}"
                _drop_plugin(registry, info, reason)
                warnings.warn(f"zoo plugin {shown(impl.plugin_name)} from {info.provider} {reason}; it was skipped (the "
                              f"other plugins work)", PluginLoadWarning, stacklevel=2)
    return registry


def _drop_plugin(registry: Registry, info: PluginInfo, reason: str) -> None:
    """Forget every component a plugin registered and mark it failed in ``registry.plugins``."""
    for kind, table in registry.qualified.items():
        for qname in [n for n, c in table.items() if c.plugin is info]:
            del table[qname]
        _reindex(registry, kind)
    registry.plugins = [PluginInfo(p.name, p.module, p.distribution, p.version, reason) if p is info else p
                        for p in registry.plugins]


def _register(registry: Registry, kind: str, info: PluginInfo, name: str, build: Callable,
              options_model: type[BaseModel], *extra: Any, **declarations: Any) -> None:
    """The ``register`` a hook receives: ``register(name, build, Options, **declarations)``."""
    if extra:
        raise PluginError(f"plugin {info.provider}: register({shown(name)}, ...) got {len(extra)} argument(s) after "
                          f"Options: declarations are keywords, e.g. size_multiple=32 (see zoo.hookspecs)")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise PluginError(f"plugin {info.provider} registered a {kind} with invalid name {shown(name)}: a component "
                          f"name is {NAME_RULE}")
    if not callable(build):
        raise PluginError(f"plugin {info.provider}: {kind} {shown(name)} has a build that is not callable")
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        raise PluginError(f"plugin {info.provider}: {kind} {shown(name)} options must be a zoo.Options subclass")
    declared = _declarations(kind, name, options_model, info, declarations)
    component = Component(kind, name, build, options_model, info, declared)
    qualified = registry.qualified[kind]
    if component.qualified_name in qualified:  # one package registering a name twice: its own mistake
        other = qualified[component.qualified_name].plugin
        raise PluginError(f"{kind} {shown(name)} is registered twice by the package {shown(info.package)} "
                          f"({other.provider} and {info.provider}): rename one")
    qualified[component.qualified_name] = component
    _reindex(registry, kind)


def _reindex(registry: Registry, kind: str) -> None:
    """Short names from ``registry.qualified``: unique ones into ``components``, the others into ``clashes``."""
    groups: dict[str, list[Component]] = {}
    for c in registry.qualified[kind].values():
        groups.setdefault(c.name, []).append(c)
    registry.components[kind] = {n: g[0] for n, g in groups.items() if len(g) == 1}
    registry.clashes[kind] = {n: g for n, g in groups.items() if len(g) > 1}


def _declarations(kind: str, name: str, options_model: type[BaseModel], info: PluginInfo,
                  given: dict[str, Any]) -> Declarations:
    """Validate a register call's declarations (see zoo.hookspecs); a mistake is a PluginError naming the plugin."""
    where = f"plugin {info.provider}: {kind} {shown(name)}"
    known = [f.name for f in fields(Declarations)]
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {shown(close[0])}?" if close else ""
            raise PluginError(f"{where}: unknown declaration {shown(key)}.{hint} Declarations: {', '.join(known)}")
        if kind not in DECLARATION_KINDS[key]:
            raise PluginError(f"{where}: the declaration {key} does not apply to a {kind.replace('_', ' ')} (only "
                              f"to {' and '.join(DECLARATION_KINDS[key])}s)")
    model_fields = options_model.model_fields

    def option_named(key: str, types: tuple[type, ...], what: str) -> None:
        value = given[key]
        if not isinstance(value, str) or value not in model_fields:
            raise PluginError(f"{where}: {key}={one_line(repr(value))} must name one of its options "
                              f"({', '.join(model_fields) or 'it has none'})")
        default = model_fields[value].default
        if not isinstance(default, types) or (bool not in types and isinstance(default, bool)):
            raise PluginError(f"{where}: {key}={shown(value)} must name {what} option (its default is "
                              f"{one_line(repr(default))})")

    for key in ("size_multiple", "min_image_size"):
        value = given.get(key)
        if value is None or callable(value):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PluginError(f"{where}: {key}={one_line(repr(value))} must be a positive int or a function "
                              f"options -> int")
    if given.get("depth_option") is not None:
        option_named("depth_option", (int,), "an integer")
    pretrained = given.get("pretrained")
    if pretrained is not None and not callable(pretrained):
        option_named("pretrained", (bool,), "a boolean")
    if pretrained is None and "pretrained" in model_fields and isinstance(model_fields["pretrained"].default, bool):
        pretrained = "pretrained"  # the v1 contract's rule, kept for plugins that declare nothing
    raw_tests = given.get("test_options") or ()
    if isinstance(raw_tests, Mapping):
        raw_tests = (raw_tests,)
    if not isinstance(raw_tests, (list, tuple)) or not all(isinstance(t, Mapping) for t in raw_tests):
        raise PluginError(f"{where}: test_options must be a dict of option values or a list of them")
    tests = []
    for options in raw_tests:
        try:
            options_model.model_validate(dict(options))
        except ValidationError as exc:
            raise PluginError(f"{where}: test_options {one_line(repr(dict(options)))} are invalid: "
                              f"{format_validation_error(exc)}") from None
        tests.append(dict(options))
    contract = given.get("contract", 2 if kind == "loss" else 1)
    if contract not in CONTRACTS or isinstance(contract, bool):
        raise PluginError(f"{where}: contract={one_line(repr(contract))} must be 1 or 2 (see zoo.hookspecs)")
    if kind == "loss" and contract != 2:
        raise PluginError(f"{where}: loss terms are always contract 2 (called with a StepContext): drop contract=")
    trains: tuple[str, ...] = ()
    if kind == "loss":
        raw = given.get("trains")
        raw = (raw,) if isinstance(raw, str) else tuple(raw or ())
        if not raw or any(r not in hookspecs.ROLES for r in raw) or len(set(raw)) != len(raw):
            raise PluginError(f"{where}: declare trains='discriminator', 'generator' or both as a tuple (the roles "
                              f"the engine calls the term in), got {one_line(repr(given.get('trains')))}")
        trains = tuple(r for r in hookspecs.ROLES if r in raw)
    needs = dict(given.get("needs_outputs") or {})
    if needs and (contract != 2 or not all(isinstance(k, str) and k != "ab" and (callable(v) or (
            isinstance(v, int) and not isinstance(v, bool) and v > 0)) for k, v in needs.items())):
        raise PluginError(f"{where}: needs_outputs maps generator output names (not 'ab') to their channel count "
                          f"(an int or options -> int), for a contract 2 loss")
    partners = {}
    for slot, partner in (given.get("test_partners") or {}).items():
        partner = {"name": partner} if isinstance(partner, str) else partner
        if slot not in SLOT_KINDS or slot == kind or not isinstance(partner, Mapping) or "name" not in partner:
            raise PluginError(f"{where}: test_partners must map other slots ({', '.join(SLOT_KINDS)}) to a component "
                              f"name or {{'name': ..., 'options': {{...}}}}, got {one_line(repr(given['test_partners']))}")
        partners[slot] = dict(partner)
    return Declarations(size_multiple=given.get("size_multiple"), min_image_size=given.get("min_image_size"),
                        depth_option=given.get("depth_option"), pretrained=pretrained, test_options=tuple(tests),
                        contract=contract, trains=trains, test_partners=partners, needs_outputs=needs)


@functools.lru_cache(maxsize=1)
def get_registry() -> Registry:
    """The process-wide registry (entry points loaded once)."""
    return load_registry()


def names(kind: str) -> list[str]:
    """Registered component names of a kind, e.g. ``zoo.names("generator")``."""
    return get_registry().names(kind)


def describe_options(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The options of a component as rows: name, type, default, bounds, description."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []
    for fname, prop in schema.get("properties", {}).items():
        if "$ref" in prop:
            prop = {**defs.get(prop["$ref"].split("/")[-1], {}), **prop}
        typ = prop.get("type")
        if "enum" in prop:
            typ = "one of " + ", ".join(map(str, prop["enum"]))
        elif "anyOf" in prop:
            typ = " | ".join(str(p.get("type", p.get("enum", p.get("const", "?")))) for p in prop["anyOf"])
        bounds = {k: prop[k] for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") if k in prop}
        rows.append({
            "name": fname,
            "type": typ,
            "default": prop.get("default"),
            "bounds": bounds,
            "description": prop.get("description", ""),
        })
    return rows


__all__ = ["SLOT_KINDS", "BuildContext", "Component", "canonical_package", "probe_context", "Declarations", "KINDS", "NAME_PATTERN", "PluginInfo", "PluginLoadWarning", "Registry", "get_registry",
           "load_registry", "names", "describe_options", "disabled_plugins"]
