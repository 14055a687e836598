"""Shared fixtures: the ``xp`` backend fixture and the parity-oracle guard."""

from __future__ import annotations

import importlib.util

import array_api_strict
import jax
import jax.numpy as jnp
import numpy as np
import pytest

BACKEND_NAMES = ("numpy", "array_api_strict", "jax")
_NAMESPACES = {"numpy": np, "array_api_strict": array_api_strict, "jax": jnp}


@pytest.fixture(params=BACKEND_NAMES)
def xp(request):
    """The array namespace under test: numpy, array_api_strict or jax.numpy."""
    return _NAMESPACES[request.param]


@pytest.fixture(params=("numpy", "jax"))
def backend(request) -> str:
    """Model backends (``RampModel.to_backend`` names)."""
    return request.param


@pytest.fixture
def to_xp(xp):
    """A function moving NumPy arrays into the namespace under test (dtype preserved)."""

    def convert(array):
        return np.asarray(array) if xp is np else xp.asarray(np.asarray(array))

    return convert


@pytest.fixture(autouse=True)
def _require_stcal_for_parity(request):
    """Parity tests need stcal: when it is missing they fail loudly, never skip."""
    if request.node.get_closest_marker("parity") and importlib.util.find_spec("stcal") is None:
        pytest.fail("parity test needs stcal 1.17.0: install the 'parity' extra (make test does)")


def pytest_report_header(config):
    import importlib.metadata as md

    try:
        stcal_version = md.version("stcal")
    except md.PackageNotFoundError:
        stcal_version = "NOT INSTALLED (parity tests will not run)"
    return [f"jax {jax.__version__}, numpy {np.__version__}, stcal oracle {stcal_version}"]
