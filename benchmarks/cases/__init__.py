"""Benchmark case modules: every ``benchmarks/cases/<name>.py`` defines ``CASES``.

``CASES`` is a list of dicts::

    {"name": str,                      # rows with the same name are compared
     "impl": "numpy" | "jax" | "stcal",
     "setup": callable() -> state,     # not timed
     "run": callable(state) -> object} # timed

The ``"stcal"`` row of a name is the baseline of the speed-up column.  ``run`` of a
``"jax"`` case should return its outputs (any pytree): the harness blocks on them, so the
time includes the computation and not only its asynchronous dispatch.  A case whose
dependency is missing raises :class:`Unavailable` (or lets ``ModuleNotFoundError``
escape) from ``setup``/``run`` and is recorded as "unavailable" instead of "failed".
Import heavy libraries inside ``setup``/``run``: every case runs in its own process and
the module is also imported once to list the cases.
"""

from __future__ import annotations

__all__ = ["IMPLS", "Unavailable"]

#: The implementations a case may name, in table order (the baseline first).
IMPLS = ("stcal", "numpy", "jax")


class Unavailable(Exception):  # noqa: N818 - reads as a status, like StopIteration
    """Raised by a case whose implementation cannot run here (missing module or feature)."""
