"""Component registry built on pluggy: which components exist, by kind and name, and the plugins they came from.

What a component is (kinds, declarations, options, building) is :mod:`zoo.component`.

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
from zoo.component import (CONTRACTS, DECLARATION_KINDS, DISABLE_ENV, KIND_TITLES, KINDS, SLOT_KINDS, BuildContext,
                           Component, Declarations, PluginInfo, canonical_package, format_validation_error)
from zoo.errors import DuplicateComponent, PluginError, UnknownComponent
from zoo.text import one_line, shown

#: a component name: it becomes part of file and folder names (run folders), so no '/', '..', ':' or spaces
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = ("1-64 letters, digits, '_', '.' or '-', starting with a letter or digit, without '..' "
             "(no '/', ':', spaces or control characters)")


class PluginLoadWarning(UserWarning):
    """A plugin failed to import or is disabled; the others keep working."""


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


__all__ = ["NAME_PATTERN", "PluginLoadWarning", "Registry", "describe_options", "disabled_plugins", "get_registry",
           "load_registry", "names"]
