"""The whole contract between the zoo core and every plugin.

A plugin is a module (or object) with one or more of the hook implementations below, published in the
entry-point group ``zoo`` (the built-ins in this project's own pyproject are published the same way)::

    [project.entry-points.zoo]
    my_gen = "my_package.my_gen"

Each hook receives ``register(name, build, Options)``:

- ``name``: the public name of the component (``zoo train --gen NAME``); must be unique per kind.
- ``Options``: a subclass of :class:`zoo.Options` (strict pydantic model; every field has a default,
  bounds and a description).
- ``build(options, context) -> torch.nn.Module``: pure; no device placement, weight init or printing.
  ``context`` is a :class:`zoo.BuildContext` (image size, ...).

An option named ``pretrained`` that is true tells the engine the built module already holds trained
weights: the spec's weight init is then not applied to it.

Colour space and ranges: images are CIE Lab (D65). The generator input is L scaled ``L/50 - 1``
(in [-1, 1]); the generator output is ab scaled ``ab/110`` (in [-1, 1]).
"""
import pluggy

NAME = "zoo"  # PluginManager project name == hook marker name == entry-point group
hookspec = pluggy.HookspecMarker(NAME)
hookimpl = pluggy.HookimplMarker(NAME)


@hookspec
def register_generators(register):
    """Add generators with ``register(name, build, Options)``.

    ``build(options, context)`` returns an ``nn.Module`` mapping L ``(B, 1, H, W)`` in [-1, 1] to
    ab ``(B, 2, H, W)`` in [-1, 1], for ``H == W == context.image_size``.
    """


@hookspec
def register_discriminators(register):
    """Add discriminators with ``register(name, build, Options)``.

    ``build(options, context)`` returns an ``nn.Module`` mapping a Lab image ``(B, 3, H, W)`` (channel 0 is
    L in [-1, 1], channels 1-2 are ab in [-1, 1]) to real/fake logits ``(B, 1, h, w)`` (any h, w >= 1);
    no final activation.
    """


@hookspec
def register_gan_losses(register):
    """Add adversarial losses with ``register(name, build, Options)``.

    ``build(options, context)`` returns an ``nn.Module`` called as ``loss(logits, target_is_real: bool)``
    returning a scalar tensor.
    """


@hookspec
def register_pixel_losses(register):
    """Add pixel (reconstruction) losses with ``register(name, build, Options)``.

    ``build(options, context)`` returns an ``nn.Module`` called as ``loss(fake_ab, real_ab)`` on
    ``(B, 2, H, W)`` tensors in [-1, 1], returning a scalar tensor (unweighted; the spec's
    ``pixel_weight`` multiplies it).
    """
