"""What a component is: its kind (the hook that registers it), the plugin that provided it, what that plugin
declared about it (:class:`Declarations`), its strict options, and how it is built (:meth:`Component.create`:
size constraints first, then the builder, then one contract probe, :mod:`zoo.contract_probe`). The registry
(:mod:`zoo.registry`) finds components; this module is what it finds."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from zoo.errors import PluginError, SpecError, UnknownComponent
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
DISABLE_ENV = "ZOO_DISABLE_PLUGINS"  # names plugins (entry points or distributions) not to load
#: the kinds that fill one slot of a spec each (``loss`` terms are a list: the spec's ``losses``)
SLOT_KINDS = ("generator", "discriminator", "gan_loss", "pixel_loss")


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
NET_KINDS = ("generator", "discriminator")
DECLARATION_KINDS: dict[str, tuple[str, ...]] = {
    "size_multiple": NET_KINDS, "min_image_size": NET_KINDS, "depth_option": NET_KINDS,
    "pretrained": NET_KINDS, "test_options": tuple(KINDS), "contract": tuple(KINDS), "trains": ("loss",),
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
            with plugin_code():
                module = self.build(opts, context)
        except (SpecError, UnknownComponent, KeyboardInterrupt):
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a builder must not end zoo with rc 0
            if getattr(exc, "exit_code", None) is not None and isinstance(exc, Exception):  # a ZooError
                raise
            raise PluginError(f"{self.title} failed to build: {failure(exc)}") from exc
        if check:
            import torch

            if not isinstance(module, torch.nn.Module):
                raise PluginError(f"{self.title}: its build returned {type(module).__name__}, expected a "
                                  f"torch.nn.Module: fix the plugin's build function")
            if self.kind in NET_KINDS and not any(p.requires_grad for p in module.parameters()):
                raise PluginError(f"{self.title} has no trainable parameters: weights kept in plain tensors or "
                                  f"buffers are not trained (use nn.Parameter or torch layers)")
            from zoo.contract_probe import probe

            probe(self, module, context)  # guarded by plugin_code too
        return module


class PluginStopped(BaseException):
    """A plugin's ``os._exit()``, or a KeyboardInterrupt it raised itself (no Ctrl-C came), while zoo ran its code
    in :func:`plugin_code`: reported as that plugin's failure, never as zoo ending with the plugin's exit code."""


@contextlib.contextmanager
def plugin_code():
    """The guard around a plugin's build and its contract probe: ``os._exit(N)`` raises :class:`PluginStopped`
    (it would end zoo at once with code N, having done nothing, as if all went well), and so does a
    KeyboardInterrupt raised without a SIGINT (a real Ctrl-C stays a KeyboardInterrupt)."""
    sigints: list[int] = []
    ours = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not while zoo's own StopSignals runs

    def on_sigint(signum, frame):
        sigints.append(signum)
        raise KeyboardInterrupt

    def no_exit(code=0):
        raise PluginStopped(f"it called os._exit({code!r})")

    real_exit, os._exit = os._exit, no_exit
    if ours:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except KeyboardInterrupt:
        if sigints or not ours:
            raise
        raise PluginStopped("it raised KeyboardInterrupt (no Ctrl-C came)") from None
    finally:
        os._exit = real_exit
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def failure(exc: BaseException) -> str:
    """What a plugin raised, for a one-line message: ``Type: message`` (SystemExit included)."""
    return str(exc) if isinstance(exc, PluginStopped) else f"{type(exc).__name__}: {one_line(exc)}"


def format_validation_error(exc: ValidationError, limit: int | None = None) -> str:
    """pydantic errors as one line: 'a.b: message; c: message' (the first ``limit`` of them, then how many more:
    a damaged file of many rows stays one readable line)."""
    parts = []
    for err in exc.errors():
        loc = ".".join(one_line(p) for p in err["loc"]) or "(root)"  # keys from outside: escaped
        msg = one_line(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":  # a validator's own message says it all
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    if limit is not None and len(parts) > limit:
        return "; ".join(parts[:limit]) + f"; and {len(parts) - limit} more"
    return "; ".join(parts)


__all__ = ["BuildContext", "CONTRACTS", "Component", "DECLARATION_KINDS", "Declarations", "KINDS", "KIND_TITLES",
           "DISABLE_ENV", "NET_KINDS", "PluginInfo", "SLOT_KINDS", "canonical_package", "format_validation_error"]
