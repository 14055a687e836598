"""A ``jit`` that compiles with XLA for JAX inputs and runs eagerly otherwise."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from .namespace import is_jax_array


def jit(
    fn: Callable | None = None,
    *,
    static_argnames: Sequence[str] = (),
) -> Callable:
    """Decorate an array-API kernel so that it is ``jax.jit``-compiled on JAX inputs.

    Inputs that are not JAX arrays (NumPy, array_api_strict, ...) call ``fn`` eagerly,
    so the same function serves every backend.  ``static_argnames`` are hashed and
    trigger one compilation per distinct value (and per input shape/dtype).  The
    compiled function is returned by ``wrapper.compiled()`` and the number of traces as
    ``wrapper.trace_count`` (useful in tests).
    """
    if fn is None:
        return functools.partial(jit, static_argnames=static_argnames)

    state = {"compiled": None, "traces": 0}

    def _counted(*args, **kwargs):
        state["traces"] += 1
        return fn(*args, **kwargs)

    def _compiled():
        if state["compiled"] is None:
            import jax

            state["compiled"] = jax.jit(_counted, static_argnames=tuple(static_argnames))
        return state["compiled"]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any):
        if _any_jax(args) or _any_jax(kwargs.values()):
            return _compiled()(*args, **kwargs)
        return fn(*args, **kwargs)

    wrapper.eager = fn
    wrapper.compiled = _compiled
    wrapper.trace_count = lambda: state["traces"]
    return wrapper


def _any_jax(values) -> bool:
    import jax

    for v in values:
        for leaf in jax.tree_util.tree_leaves(v):
            if is_jax_array(leaf):
                return True
    return False
