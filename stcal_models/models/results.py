"""``RampFitResult`` and ``FitOptModel``: outputs of ramp fitting."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import DataModel, array_field, register_model
from .image import CubeModel, ImageModel

__all__ = ["FitOptModel", "RampFitResult"]


@register_model
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class FitOptModel(DataModel):
    """Optional per-segment fit product (``save_opt=True``), field names as the FITS extensions.

    4-D arrays are ``(nints, nsegments, ny, nx)``; ``pedestal`` is ``(nints, ny, nx)``;
    ``crmag`` is ``(nints, ncr, ny, nx)``.
    """

    slope: Any = array_field(dtype="float32", ndim=4)
    sigslope: Any = array_field(dtype="float32", ndim=4)
    yint: Any = array_field(dtype="float32", ndim=4)
    sigyint: Any = array_field(dtype="float32", ndim=4)
    pedestal: Any = array_field(dtype="float32", ndim=3)
    weights: Any = array_field(dtype="float32", ndim=4)
    var_poisson: Any = array_field(dtype="float32", ndim=4)
    var_rnoise: Any = array_field(dtype="float32", ndim=4)
    crmag: Any = array_field(dtype="float32", ndim=4)

    def _validate(self) -> None:
        shape = tuple(int(s) for s in self.slope.shape)
        for name in ("sigslope", "yint", "sigyint", "weights", "var_poisson", "var_rnoise"):
            self._check_shape(name, shape)
        self._check_shape("pedestal", (shape[0], shape[2], shape[3]))


@dataclasses.dataclass(frozen=True, eq=False)
class RampFitResult:
    """Ramp-fitting outputs: ``rate`` (exposure), ``rateints`` (per integration), ``fitopt``.

    ``record`` holds per-step provenance added by pipelines (parameters, timings, flag
    counts), as a tuple of ``(step_name, mapping)`` pairs.  ``chisq`` ``(ny, nx)`` and
    ``chisq_ints`` ``(nints, ny, nx)`` are the likelihood fit's chi-square (stcal #508);
    None for fits that do not produce one.
    """

    rate: ImageModel
    rateints: CubeModel
    fitopt: FitOptModel | None = None
    record: tuple = ()
    chisq: Any = None
    chisq_ints: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.rate, ImageModel):
            raise TypeError(
                f"RampFitResult.rate: expected ImageModel, got {type(self.rate).__name__}"
            )
        if not isinstance(self.rateints, CubeModel):
            raise TypeError(
                f"RampFitResult.rateints: expected CubeModel, got {type(self.rateints).__name__}"
            )
        if self.fitopt is not None and not isinstance(self.fitopt, FitOptModel):
            raise TypeError(
                f"RampFitResult.fitopt: expected FitOptModel or None, got {type(self.fitopt).__name__}"
            )
        for name, expected in (("chisq", self.rate.shape), ("chisq_ints", self.rateints.shape)):
            value = getattr(self, name)
            if value is not None and tuple(int(n) for n in value.shape) != tuple(expected):
                raise ValueError(
                    f"RampFitResult.{name}: expected shape {tuple(expected)}, got {tuple(value.shape)}"
                )
        if tuple(self.rate.shape) != tuple(self.rateints.shape[1:]):
            raise ValueError(
                f"RampFitResult.rateints: expected frames of shape {self.rate.shape}, "
                f"got {self.rateints.shape[1:]}"
            )

    def replace(self, **changes: Any) -> RampFitResult:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        fitopt = "yes" if self.fitopt is not None else "no"
        return f"RampFitResult(rate={self.rate!r}, rateints={self.rateints!r}, fitopt={fitopt})"

    def _repr_html_(self) -> str:
        from ..display import result_html

        return result_html(self)

    def plot(self, **kwargs):
        """Matplotlib figure: the rate image beside a DQ map with counts per flag."""
        from ..display import plot_result

        return plot_result(self, **kwargs)


_CHILDREN = ("rate", "rateints", "fitopt", "chisq", "chisq_ints")


def _flatten(result):
    return tuple(getattr(result, n) for n in _CHILDREN), result.record


def _unflatten(record, children):
    obj = object.__new__(RampFitResult)
    for name, value in zip(_CHILDREN, children, strict=True):
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "record", record)
    return obj


def _register() -> None:
    import jax

    jax.tree_util.register_pytree_node(RampFitResult, _flatten, _unflatten)


_register()
