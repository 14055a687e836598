"""Array-namespace selection, backend conversion, ``jit`` (with an optional on-disk
compilation cache) and the few ops the array API lacks."""

from .cache import default_cache_dir, enable_compilation_cache
from .jit import jit
from .namespace import (
    BACKENDS,
    array_namespace,
    as_namespace,
    backend_name,
    is_jax_array,
    is_numpy_array,
    to_backend,
    to_numpy,
)
from .ops import max_filter2d, median, nanmedian

__all__ = [
    "BACKENDS",
    "array_namespace",
    "as_namespace",
    "backend_name",
    "default_cache_dir",
    "enable_compilation_cache",
    "is_jax_array",
    "is_numpy_array",
    "jit",
    "max_filter2d",
    "median",
    "nanmedian",
    "to_backend",
    "to_numpy",
]
