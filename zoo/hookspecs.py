"""The whole contract between the zoo core and every plugin.

A plugin is a module (or object) with one or more of the hook implementations below, published in the
entry-point group ``zoo`` (the built-ins in this project's own pyproject are published the same way)::

    [project.entry-points.zoo]
    my_gen = "my_package.my_gen"

Each hook receives ``register(name, build, Options, **declarations)``:

- ``name``: the public name of the component (``zoo train --gen NAME``); must be unique per kind. It becomes
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
- ``test_options`` (every kind): a dict of small option values, or a list of them, that build at small image
  sizes (32 px; the declared ``depth_option`` fits them to others): the contract kit (:mod:`zoo.testing`)
  builds and checks each and trains with the first; when the component is its slot's default
  (:data:`zoo.spec.DEFAULT_COMPONENTS`), the kit also pairs other components with its first set. Each is
  validated against ``Options`` at registration. Default: none (the kit checks the defaults and the author's
  option sets).

The core reads the declarations through :class:`zoo.registry.Component`: ``size_multiple_for(options)``,
``min_image_size_for(options)``, ``size_problem(options, image_size)``, ``fit_options(options, image_size)``,
``is_pretrained(options)`` and ``test_option_sets(image_size)``.

Colour space and ranges: images are CIE Lab (D65). The generator input is L scaled ``L/50 - 1``
(in [-1, 1]); the generator output is ab scaled ``ab/110`` (in [-1, 1]).
"""
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
