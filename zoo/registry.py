"""Component registry built on pluggy.

Plugins (the built-ins included) are modules published in the entry-point group ``zoo``; see
:mod:`zoo.hookspecs` for the contract. The registry is made in a function, never at import time.
"""
from __future__ import annotations

import difflib
import functools
import importlib.metadata as metadata
import os

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import pluggy
from pydantic import BaseModel, ValidationError

from zoo import hookspecs
from zoo.errors import DuplicateComponent, PluginError, SpecError, UnknownComponent

#: component kind -> the hook that registers it
KIND_TITLES = {"generator": "generators", "discriminator": "discriminators", "gan_loss": "GAN losses",
               "pixel_loss": "pixel losses"}
KINDS: dict[str, str] = {
    "generator": "register_generators",
    "discriminator": "register_discriminators",
    "gan_loss": "register_gan_losses",
    "pixel_loss": "register_pixel_losses",
}
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"


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
        dist = f"{self.distribution} {self.version}" if self.distribution else "(not installed)"
        return f"{dist} [{self.module}]"


@dataclass(frozen=True)
class Component:
    """A registered component: how to validate its options and build it."""

    kind: str
    name: str
    build: Callable[[Any, BuildContext], Any]
    options_model: type[BaseModel]
    plugin: PluginInfo

    def options(self, raw: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        """Validate raw options with the component's own model; errors become one-line SpecErrors."""
        if isinstance(raw, self.options_model):
            return raw
        try:
            return self.options_model.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise SpecError(
                f"{self.kind} {self.name!r} options: {format_validation_error(exc)}"
                f" (see `zoo list` for its options)"
            ) from None

    def create(self, raw_options: dict[str, Any] | BaseModel | None = None,
               context: BuildContext | None = None, check: bool = True):
        """Build the component and, unless ``check`` is False, probe its input/output contract once."""
        opts = self.options(raw_options)
        context = context or BuildContext()
        try:
            module = self.build(opts, context)
        except (SpecError, UnknownComponent):
            raise
        except Exception as exc:
            if getattr(exc, "exit_code", None) is not None:  # a ZooError raised by the builder
                raise
            raise PluginError(
                f"{self.kind} {self.name!r} from {self.plugin.provider} failed to build: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if check:
            import torch

            if not isinstance(module, torch.nn.Module):
                raise PluginError(f"{self.kind} {self.name!r} from {self.plugin.provider}: its build returned "
                                  f"{type(module).__name__}, expected a torch.nn.Module: fix the plugin's build "
                                  f"function")
            _probe(self, module, context)
        return module


def format_validation_error(exc: ValidationError) -> str:
    """pydantic errors as one line: 'a.b: message; c: message'."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _probe(component: Component, module, context: BuildContext) -> None:
    """Run one tiny forward pass to catch plugins whose output breaks the contract."""
    import torch

    size = context.image_size
    was_training = getattr(module, "training", False)
    expected = None
    try:
        with torch.no_grad():
            if component.kind == "generator":
                module.eval()
                out = module(torch.zeros(1, 1, size, size))
                expected = "(1, 2, %d, %d)" % (size, size)
                ok = isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 2, size, size)
            elif component.kind == "discriminator":
                module.eval()
                out = module(torch.zeros(1, 3, size, size))
                expected = "(1, 1, h, w)"
                ok = isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[:2] == (1, 1)
            elif component.kind == "gan_loss":
                out = module(torch.zeros(1, 1, 4, 4), True)
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
            else:
                out = module(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4))
                expected = "a scalar tensor"
                ok = isinstance(out, torch.Tensor) and out.dim() == 0
    except Exception as exc:
        raise PluginError(
            f"{component.kind} {component.name!r} from {component.plugin.provider} failed its "
            f"contract check at image size {size}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if hasattr(module, "train"):
            module.train(was_training)
    if not ok:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(
            f"{component.kind} {component.name!r} from {component.plugin.provider} returned {got}, "
            f"expected {expected}: fix the plugin's build function"
        )


@dataclass
class Registry:
    """All components, by kind and name, plus the plugins they came from."""

    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})
    plugins: list[PluginInfo] = field(default_factory=list)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[_check_kind(kind)])

    def get(self, kind: str, name: str) -> Component:
        table = self.components[_check_kind(kind)]
        if name in table:
            return table[name]
        available = ", ".join(sorted(table)) or "(none)"
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UnknownComponent(f"no {kind.replace('_', ' ')} named {name!r}.{hint} Available: {available}")

    def create(self, kind: str, name: str, options=None, context: BuildContext | None = None, check=True):
        return self.get(kind, name).create(options, context, check=check)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UnknownComponent(f"no component kind {kind!r}. Available: {', '.join(KINDS)}")
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
    skipped; two plugins registering one name raise DuplicateComponent naming both.
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
            warnings.warn(f"zoo plugin {name!r} from {info.provider} is invalid and was skipped: {exc}",
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
            except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
                registry.plugins.append(PluginInfo(info.name, info.module, info.distribution, info.version,
                                                   f"failed to import: {type(exc).__name__}: {exc}"))
                warnings.warn(
                    f"zoo plugin {ep.name!r} from {info.provider} failed to import and was skipped "
                    f"(the other plugins work): {type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=2)
                continue
            add(ep.name, plugin, info)
    for name, plugin in extra_plugins:
        if name in blocked:
            continue
        module = getattr(plugin, "__name__", type(plugin).__name__)
        add(name, plugin, PluginInfo(name, module))
    pm.check_pending()
    known = {p.name for p in registry.plugins} | {p.distribution for p in registry.plugins if p.distribution}
    for name in sorted(blocked - known - {n for n, _ in extra_plugins}):
        warnings.warn(f"{DISABLE_ENV} names {name!r}, which is no installed zoo plugin or distribution (see "
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
            except DuplicateComponent:  # two providers of one name: the user must choose (see the message)
                raise
            except Exception as exc:  # a plugin whose hook raises is skipped whole, like one that fails to import
                failed.add(impl.plugin_name)
                reason = f"failed while registering its {KIND_TITLES[kind]}: {type(exc).__name__}: {exc}"
                _drop_plugin(registry, info, reason)
                warnings.warn(f"zoo plugin {impl.plugin_name!r} from {info.provider} {reason}; it was skipped (the "
                              f"other plugins work)", PluginLoadWarning, stacklevel=2)
    return registry


def _drop_plugin(registry: Registry, info: PluginInfo, reason: str) -> None:
    """Forget every component a plugin registered and mark it failed in ``registry.plugins``."""
    for table in registry.components.values():
        for name in [n for n, c in table.items() if c.plugin is info]:
            del table[name]
    registry.plugins = [PluginInfo(p.name, p.module, p.distribution, p.version, reason) if p is info else p
                        for p in registry.plugins]


def _register(registry: Registry, kind: str, info: PluginInfo, name: str, build: Callable,
              options_model: type[BaseModel]) -> None:
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise PluginError(f"plugin {info.provider} registered a {kind} with invalid name {name!r}")
    if not callable(build):
        raise PluginError(f"plugin {info.provider}: {kind} {name!r} has a build that is not callable")
    if not (isinstance(options_model, type) and issubclass(options_model, BaseModel)):
        raise PluginError(f"plugin {info.provider}: {kind} {name!r} options must be a zoo.Options subclass")
    table = registry.components[kind]
    if name in table:
        other = table[name].plugin
        # Suggest skipping the add-on, not zoo's own built-in (entry points load in sys.path order).
        first, second = sorted((other, info), key=lambda p: p.distribution == "zoo")
        raise DuplicateComponent(
            f"{kind} {name!r} is registered by both {other.provider} and {info.provider}: uninstall one, "
            f"or set {DISABLE_ENV}={first.name} (or ={second.name}) to skip a plugin"
        )
    table[name] = Component(kind, name, build, options_model, info)


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


__all__ = ["BuildContext", "Component", "KINDS", "PluginInfo", "PluginLoadWarning", "Registry", "get_registry",
           "load_registry", "names", "describe_options", "disabled_plugins"]
