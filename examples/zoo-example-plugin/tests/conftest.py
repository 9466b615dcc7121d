"""This package's own tests check the installed plugin: say how to install it rather than fail on every test."""
import importlib.metadata

import pytest


def pytest_configure(config):
    try:
        importlib.metadata.distribution("zoo-example-plugin")
    except importlib.metadata.PackageNotFoundError:
        raise pytest.UsageError("zoo-example-plugin is not installed: pip install -e examples/zoo-example-plugin, "
                                "then run these tests again") from None
