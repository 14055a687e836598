"""Pick the array namespace from arrays and move arrays between NumPy and JAX."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

BACKENDS = ("numpy", "jax")


def array_namespace(*arrays: Any):
    """The array-API namespace of ``arrays`` (``None`` entries are ignored)."""
    return array_api_compat.array_namespace(*(a for a in arrays if a is not None))


def is_jax_array(x: Any) -> bool:
    """True for JAX arrays and tracers."""
    return array_api_compat.is_jax_array(x)


def is_numpy_array(x: Any) -> bool:
    """True for NumPy arrays (not subclasses such as masked arrays)."""
    return type(x) is np.ndarray


def backend_name(x: Any) -> str:
    """``"numpy"``, ``"jax"`` or the namespace's module name for other array-API libraries."""
    if is_jax_array(x):
        return "jax"
    if isinstance(x, np.ndarray):
        return "numpy"
    return array_namespace(x).__name__


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array (a host copy for device arrays; ``x`` itself for NumPy)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x
    if is_jax_array(x):
        return np.asarray(x)
    # array_api_strict and other libraries: go through DLPack / the buffer protocol.
    try:
        return np.from_dlpack(x)
    except (TypeError, AttributeError, RuntimeError, BufferError):
        return np.asarray(x)


def to_backend(x: Any, backend: str):
    """Convert one array to ``backend`` (``"numpy"`` or ``"jax"``); ``None`` passes through.

    Raises
    ------
    ValueError
        If ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if x is None:
        return None
    if backend == "numpy":
        return to_numpy(x)
    import jax.numpy as jnp

    if is_jax_array(x):
        return x
    arr = to_numpy(x)
    if arr.dtype == np.float64 or arr.dtype == np.int64 or arr.dtype == np.uint64:
        import jax

        if not jax.config.jax_enable_x64:
            raise TypeError(
                f"to_backend: a {arr.dtype} array would be silently narrowed by JAX "
                "(x64 disabled); cast it explicitly or enable jax_enable_x64"
            )
    return jnp.asarray(arr)


def as_namespace(xp, array: Any, dtype: Any = None):
    """``array`` in namespace ``xp`` (and ``dtype`` when given); no copy when already there.

    Reference arrays are often NumPy while the science data are on JAX or another
    array-API library: steps call this once at their boundary.  ``None`` passes through.
    """
    if array is None:
        return None
    try:
        same = array_namespace(array) is xp
    except TypeError:
        same = False
    if not same:
        array = xp.asarray(np.asarray(to_numpy(array)))
    if dtype is not None and array.dtype != dtype:
        array = xp.astype(array, dtype)
    return array
