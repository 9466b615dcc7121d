"""zoo: a plugin-style model zoo for pix2pix-style GAN image colorization.

Public API for plugin authors: :class:`Options`, :data:`hookimpl`, :class:`BuildContext`, :func:`names`.
For users: :class:`Colorizer` (``Colorizer.from_checkpoint(path).colorize(image)``).
"""
from zoo.errors import ZooError
from zoo.hookspecs import hookimpl
from zoo.options import Options
from zoo.component import BuildContext
from zoo.registry import get_registry, names

__version__ = "0.1.0"
__all__ = ["BuildContext", "Colorizer", "Options", "ZooError", "get_registry", "hookimpl", "names", "__version__"]

#: names imported on first use (PEP 562), so that `import zoo` does not load torch
_LAZY = {"Colorizer": "zoo.colorize"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
