"""zoo: a plugin-style model zoo for pix2pix-style GAN image colorization.

Public API for plugin authors: :class:`Options`, :data:`hookimpl`, :class:`BuildContext`, :func:`names`.
"""
from zoo.errors import ZooError
from zoo.hookspecs import hookimpl
from zoo.options import Options
from zoo.registry import BuildContext, get_registry, names

__version__ = "0.1.0"
__all__ = ["BuildContext", "Options", "ZooError", "get_registry", "hookimpl", "names", "__version__"]
