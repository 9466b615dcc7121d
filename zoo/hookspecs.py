"""The whole contract between the zoo core and every plugin.

A plugin is a module (or object) with one or more of the hook implementations below, published in the
entry-point group ``zoo`` (the built-ins in this project's own pyproject are published the same way)::

    [project.entry-points.zoo]
    my_gen = "my_package.my_gen"

Each hook receives ``register(name, build, Options, **declarations)``:

- ``name``: the public name of the component (``zoo train --gen NAME``). It is addressable by this short name
  while no other installed distribution registers the same name for the same kind, and as ``package:name``
  always (``package`` is the providing distribution's name, e.g. ``zoo:hinge``, ``zoo-example-plugin:resnet9``;
  a plugin registered in-process without a distribution uses its plugin name). Two packages registering one
  name is no longer fatal: the short name is refused where it is used, naming both ``package:name`` forms,
  and ``zoo plugins`` / ``zoo list`` show the clash. It becomes
  part of file and folder names (run folders), so it must be 1-64 letters, digits, ``_``, ``.`` or ``-``,
  starting with a letter or digit, without ``..``: no ``/``, ``:`` (kept for ``package:name``), spaces or
  control characters. A plugin registering another name is skipped with one warning naming it.
- ``Options``: a subclass of :class:`zoo.Options` (strict pydantic model; every field has a default,
  bounds and a description).
- ``build(options, context) -> torch.nn.Module``: pure; no device placement, weight init or printing.
  ``context`` is a :class:`zoo.BuildContext` (image size, ...). Anything it raises other than a
  :class:`zoo.ZooError` (``sys.exit()`` included) is reported as a PluginError naming the plugin. A generator or
  discriminator must have trainable parameters; every component is probed once with a batch of 2 when built.

Declarations (keyword-only, all optional) tell the core what it would otherwise have to guess. They are checked
when the plugin registers: an unknown keyword or a wrong value skips the plugin with one warning naming it.
Where a declaration is a function, it receives the component's validated options.

- ``size_multiple`` (generators, discriminators): an int, or ``options -> int``: the image side must be a
  multiple of it (pix2pix's U-Net: ``lambda o: 2 ** o.n_down``; a ResNet encoder: 32). The core refuses other
  sizes before building, and ``zoo colorize`` / ``zoo export`` use it. Default None: no constraint declared
  (the builder may still refuse a size with a one-line :class:`zoo.ZooError`).
- ``min_image_size`` (generators, discriminators): an int, or ``options -> int``: the smallest image side the
  options build at (a PatchGAN with n_layers convs: ``3 * 2 ** n_layers``). Default None: no minimum declared.
- ``depth_option`` (generators, discriminators): the name of the integer option that sets the depth
  (``"n_down"``, ``"n_layers"``). Lowering it must relax ``size_multiple`` / ``min_image_size``: the core lowers
  it to fit an image size (``zoo leaderboard``, benchmarks, the contract kit; ``Component.fit_options``).
  Default None: options are never changed to fit.
- ``pretrained`` (generators, discriminators): the name of the boolean option meaning "the built module
  already holds trained weights", or ``options -> bool``; the spec's weight init is then not applied to it.
  Default: the option named ``pretrained`` if the component has a boolean one (the rule of the first version of
  this contract), else never pretrained.
- ``contract`` (every kind): ``1`` (the default: the first version of this contract, below each hook) or
  ``2`` (the step-context contract, "Version 2" below).
- ``trains`` (``loss`` terms only, required): ``"discriminator"``, ``"generator"`` or both as a tuple: the roles
  in which the engine calls the term (r1: ``"discriminator"``; feature matching: ``"generator"``).
- ``needs_outputs`` (contract 2 losses): ``{NAME: channels}`` (an int or ``options -> int``): the generator's
  auxiliary outputs the loss reads from ``ctx.outputs`` (``eccv16_ce``: ``{"logits": Q}``); the probe and the
  contract kit fill them with random tensors of that many channels.
- ``test_partners`` (every kind): ``{slot: name}`` or ``{slot: {"name": ..., "options": {...}}}``: the components
  the contract kit's training run pairs this one with instead of the slot defaults (``feature_matching`` needs
  a discriminator with features: ``{"discriminator": "multiscale"}``).
- ``test_options`` (every kind): a dict of small option values, or a list of them, that build at small image
  sizes (32 px; the declared ``depth_option`` fits them to others): the contract kit (:mod:`zoo.testing`)
  builds and checks each and trains with the first; when the component is its slot's default
  (:data:`zoo.spec.DEFAULT_COMPONENTS`), the kit also pairs other components with its first set. Each is
  validated against ``Options`` at registration. Default: none (the kit checks the defaults and the author's
  option sets).

The core reads the declarations through :class:`zoo.component.Component`: ``size_multiple_for(options)``,
``min_image_size_for(options)``, ``size_problem(options, image_size)``, ``fit_options(options, image_size)``,
``is_pretrained(options)`` and ``test_option_sets(image_size)``.

Version 2: the step context
---------------------------

A component registered with ``contract=2`` is called with one :class:`StepContext` (losses) or may return
richer outputs (nets). v1 components keep working unchanged: the engine adapts them (a v1 GAN loss is called
as before; a v1 pixel loss gets ``(fake_ab, real_ab)``). Mixing v1 and v2 components in one spec is allowed.

- **GAN loss** (``register_gan_losses``, ``contract=2``): ``loss(ctx) -> scalar``. With ``ctx.role ==
  "discriminator"`` it returns D's whole objective (e.g. hinge: ``relu(1 - D(real)) + relu(1 + D(fake))``;
  the engine does not halve or otherwise combine it); with ``"generator"`` G's adversarial term (hinge:
  ``-D(fake)``), multiplied by the spec's ``gan_weight``.
- **pixel loss** (``register_pixel_losses``, ``contract=2``): ``loss(ctx) -> scalar`` with ``ctx.role ==
  "generator"``, multiplied by ``pixel_weight``; it may use ``ctx.L`` (a loss in RGB), ``ctx.outputs`` (a
  generator's auxiliary outputs, e.g. class logits) and has no discriminator outputs in the pretraining stage.
- **loss term** (``register_losses``, always v2, ``trains=`` required): extra terms listed in the spec's
  ``losses: [{name, options, weight}]``, called as ``term(ctx) -> scalar`` in each role it ``trains``; the
  engine adds ``weight * term(ctx)`` to that net's loss. Regularisers (R1) and feature matching are terms, so
  they combine with any GAN loss.
- **discriminator** (``contract=2``): may return, besides one logit tensor ``(B, 1, h, w)``, a list of logit
  maps (one per scale: pix2pixHD) or a dict ``{"logits": [maps], "features": [tensors]}``: intermediate
  activations for feature matching. The engine hands a loss a :class:`DiscriminatorOutput` either way.
- **generator** (``contract=2``): in eval mode it maps L to ab exactly as v1 (inference, ``zoo colorize``,
  ``zoo export`` and the evaluation use eval mode only). In train mode it may return a dict ``{"ab": ab,
  NAME: tensor, ...}``: ``"ab"`` is the declared decoding of its auxiliary outputs to ab (eccv16: the annealed
  mean of its colour distribution) and must be present; the other entries reach losses as ``ctx.outputs``.

The step (:func:`zoo.gan_step.gan_step`), in this order, under the runtime's autocast:

1. ``fake = G(L)`` (train mode) and its auxiliary outputs;
2. D step, D trainable: ``D(cat(L, fake.detach()))`` then ``D(cat(L, real_ab))``, then every D-training
   loss is called with ``role="discriminator"`` (``ctx.fake_ab`` is detached); one backward through D's
   gradient scaler; one optimiser step;
3. G step, D frozen (``requires_grad_(False)``; under DDP in ``no_sync``): ``D(cat(L, fake))`` with gradients
   to G; ``ctx.d_real`` is computed on first use under ``torch.no_grad()`` (feature matching's targets);
   every G-training loss is called with ``role="generator"``; one backward, one optimiser step.

Losses are evaluated inside autocast but D's outputs reach them in fp32 (``.float()``). A penalty that needs
``d/dx D(x)`` calls ``ctx.discriminator`` itself (:meth:`StepContext.discriminator_fp32` runs it with autocast
off, in fp32, so ``torch.autograd.grad(..., create_graph=True)`` is exact under bf16/fp16 and needs no
unscaling: the GradScaler only scales the final loss, whose backward goes through the penalty's graph).
``ctx.discriminator`` is what the step calls (the DDP wrapper under torchrun): calling it again in the D step
is safe because ``autograd.grad`` with ``inputs=`` does not touch parameter gradients.

Probe calls: every component is called once when it is built, with a batch of 2 zero images: nets under
``torch.no_grad()`` in eval mode; v2 losses with gradients enabled (penalties need them), on a small fixed
conv discriminator, once per role they train; nothing they return is applied. A stateful loss must tolerate
these calls (or ignore calls where ``ctx.probe`` is True). A loss's state lives in its persistent buffers
(``register_buffer``): they are saved in each checkpoint's training state and restored on ``--resume``, so a
resumed run continues them (under torchrun, rank 0's copy is saved and every rank gets it back).

Provenance: a resolved spec records each component's ``provider`` (``"distribution==version"``); spec.json,
every checkpoint (its spec) and the leaderboard JSON carry it. Resolving a spec that records a provider picks
that provider's component even when the short name clashes; if that distribution no longer provides it the
spec is refused in one line (``--resume`` and loading a checkpoint say which package to install); a different
version of the same distribution is a one-line warning and the run goes on.

Colour space and ranges: images are CIE Lab (D65). The generator input is L scaled ``L/50 - 1``
(in [-1, 1]); the generator output is ab scaled ``ab/110`` (in [-1, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pluggy

NAME = "zoo"  # PluginManager project name == hook marker name == entry-point group
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def register_generators(register):
    """Add generators with ``register(name, build, Options, **declarations)``.

    ``build(options, context)`` returns an ``nn.Module`` mapping L ``(B, 1, H, W)`` in [-1, 1] to
    ab ``(B, 2, H, W)`` in [-1, 1], for ``H == W == context.image_size``.
    """


@hookspec
def register_discriminators(register):
    """Add discriminators with ``register(name, build, Options, **declarations)``.

    ``build(options, context)`` returns an ``nn.Module`` mapping a Lab image ``(B, 3, H, W)`` (channel 0 is
    L in [-1, 1], channels 1-2 are ab in [-1, 1]) to real/fake logits ``(B, 1, h, w)`` (any h, w >= 1);
    no final activation.
    """


@hookspec
def register_gan_losses(register):
    """Add adversarial losses with ``register(name, build, Options, test_options=...)``.

    ``build(options, context)`` returns an ``nn.Module`` called as ``loss(logits, target_is_real: bool)``
    returning a scalar tensor.
    """


@hookspec
def register_pixel_losses(register):
    """Add pixel (reconstruction) losses with ``register(name, build, Options, test_options=...)``.

    ``build(options, context)`` returns an ``nn.Module`` called as ``loss(fake_ab, real_ab)`` on
    ``(B, 2, H, W)`` tensors in [-1, 1], returning a scalar tensor (unweighted; the spec's
    ``pixel_weight`` multiplies it).
    """


@hookspec
def register_losses(register):
    """Add loss terms (always contract 2) with ``register(name, build, Options, trains=..., test_options=...)``.

    ``build(options, context)`` returns an ``nn.Module`` called as ``term(ctx: StepContext)`` returning a
    scalar tensor (unweighted; the spec's ``losses[i].weight`` multiplies it), in each role it declares in
    ``trains``.
    """


ROLES = ("discriminator", "generator")


@dataclass
class DiscriminatorOutput:
    """What a discriminator returned, in one shape: ``logits`` (a list of ``(B, 1, h, w)`` maps, one per scale)
    and ``features`` (a list of intermediate activations; empty for a v1 discriminator)."""

    logits: list
    features: list = field(default_factory=list)

    @classmethod
    def of(cls, out: Any) -> "DiscriminatorOutput":
        """Normalise a discriminator's return value (a tensor, a list of tensors, or a dict with ``logits`` and
        optional ``features``); a ValueError naming what is wrong otherwise."""
        import torch

        if isinstance(out, cls):
            return out
        features: list = []
        if isinstance(out, dict):
            unknown = set(out) - {"logits", "features"}
            if unknown or "logits" not in out:
                raise ValueError(f"returned a dict with keys {sorted(map(str, out))}; expected 'logits' and "
                                 f"optionally 'features'")
            features = list(out.get("features") or [])
            out = out["logits"]
        logits = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, (list, tuple)) else None
        if not logits or not all(isinstance(t, torch.Tensor) for t in logits + features):
            raise ValueError(f"returned {type(out).__name__}; expected logits (B, 1, h, w), a list of them, or "
                             f"a dict {{'logits': [...], 'features': [...]}}")
        return cls(logits, features)

    def float(self) -> "DiscriminatorOutput":
        return DiscriminatorOutput([t.float() for t in self.logits], [t.float() for t in self.features])


@dataclass
class StepContext:
    """What a v2 loss sees in one call (see "Version 2" above). Tensors are ``(B, C, H, W)``, L in [-1, 1]
    (``L/50 - 1``), ab in [-1, 1] (``ab/110``).

    - ``role``: ``"discriminator"`` or ``"generator"``: which net this call's loss trains;
    - ``L``, ``real_ab``, ``fake_ab`` (detached in the discriminator role); ``outputs``: the generator's
      auxiliary outputs (train mode; empty for a v1 generator);
    - ``d_fake``, ``d_real``: :class:`DiscriminatorOutput` on ``cat(L, fake_ab)`` and ``cat(L, real_ab)``, fp32
      (None in the pretraining stage); in the generator role ``d_real`` is computed on first use, without
      gradient;
    - ``discriminator``: the net to call for penalties, on ``real_input`` / ``fake_input`` (Lab, 3 channels);
    - ``probe``: True in the build-time probe call.
    """

    role: str
    L: Any
    real_ab: Any
    fake_ab: Any
    outputs: dict = field(default_factory=dict)
    d_fake: DiscriminatorOutput | None = None
    d_real: DiscriminatorOutput | None = None
    discriminator: Any = None
    probe: bool = False
    d_real_fn: Any = None  # () -> DiscriminatorOutput: d_real computed on first use (the generator role)

    def __getattribute__(self, name: str):
        if name == "d_real":
            state = object.__getattribute__(self, "__dict__")
            if state.get("d_real") is None and state.get("d_real_fn") is not None:
                state["d_real"] = state["d_real_fn"]()
            return state.get("d_real")
        return object.__getattribute__(self, name)

    @property
    def real_input(self):
        import torch

        return torch.cat([self.L, self.real_ab], 1)

    @property
    def fake_input(self):
        import torch

        return torch.cat([self.L, self.fake_ab], 1)

    def discriminator_fp32(self, x):
        """``self.discriminator(x)`` with autocast off and ``x`` in fp32, as a :class:`DiscriminatorOutput`: the
        forward a gradient penalty differentiates (exact under bf16/fp16 autocast, see the module doc)."""
        import torch

        device = x.device.type
        with torch.autocast(device_type=device, enabled=False):
            return DiscriminatorOutput.of(self.discriminator(x.float())).float()
