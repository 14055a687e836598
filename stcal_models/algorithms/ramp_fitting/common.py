"""Input checks and result assembly shared by the ramp-fitting algorithms (OLS, LIKELY, Cas22).

Every fit class is called as ``step(ramp, gain_ref, readnoise_ref, dark_current=None)``.
:func:`prepare_inputs` validates those arguments, cuts the reference files to the science
subarray and returns plain arrays in the ramp's namespace; :func:`build_result` turns the
kernel's output arrays into a :class:`~stcal_models.models.RampFitResult`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ...backends import array_namespace, as_namespace
from ...models import (
    CubeModel,
    DarkRef,
    ExposureMeta,
    FitOptModel,
    GainRef,
    ImageModel,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
)

__all__ = [
    "RampFitInputs",
    "as_namespace",
    "build_result",
    "dark_current_array",
    "prepare_inputs",
]


@dataclasses.dataclass(frozen=True, eq=False)
class RampFitInputs:
    """Validated ramp-fitting inputs as arrays of one namespace.

    Attributes
    ----------
    xp : module
        Array namespace of every array below.
    data : float32 (nints, ngroups, ny, nx)
        Ramp values, DN.
    groupdq : uint8 (nints, ngroups, ny, nx)
    pixeldq : uint32 (ny, nx)
    zeroframe : float32 (nints, ny, nx) or None
    gain : float32 (ny, nx)
        Gain, e-/DN, cut to the science frame.
    readnoise : float32 (ny, nx)
        CDS (two-read difference) read noise, DN, cut to the science frame.
    dark_current : float32 (ny, nx)
        Average dark current (zeros when none was given), in the units stcal's
        ``RampData.average_dark_current`` takes: stcal 1.17.0 OLS adds it unconverted to
        its DN/s slope estimate, i.e. it acts as DN/s (the simulator's unit).
    has_dark : bool
        Whether a dark current was given.
    meta : ExposureMeta
        The ramp's exposure metadata.
    """

    xp: Any
    data: Any
    groupdq: Any
    pixeldq: Any
    zeroframe: Any
    gain: Any
    readnoise: Any
    dark_current: Any
    has_dark: bool
    meta: ExposureMeta

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(nints, ngroups, ny, nx)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        return self.shape[-2:]


def dark_current_array(
    xp, dark_current: Any, frame_shape: tuple[int, int], meta: ExposureMeta, owner: str
):
    """The average dark current as a float32 ``(ny, nx)`` array of namespace ``xp``.

    ``dark_current`` may be ``None`` (zeros), a number, a 0-D or ``(ny, nx)`` array, or a
    :class:`~stcal_models.models.DarkRef` whose ``average_dark_current`` is used (cut to the
    science frame).

    Raises
    ------
    TypeError, ValueError
        Naming ``owner.dark_current`` for an unsupported type, bad shape or non-finite value.
    """
    ny, nx = frame_shape
    if dark_current is None:
        return xp.zeros((ny, nx), dtype=xp.float32)
    if isinstance(dark_current, DarkRef):
        if dark_current.average_dark_current is None:
            raise ValueError(f"{owner}.dark_current: DarkRef has no average_dark_current")
        ref = dark_current
        if dark_current.average_dark_current.ndim == 2:
            ref = dark_current.for_science(meta, frame_shape)
        dark_current = ref.average_dark_current
    if isinstance(dark_current, bool):
        raise TypeError(f"{owner}.dark_current: expected a number, array or DarkRef, got bool")
    if isinstance(dark_current, (int, float)):
        if not math.isfinite(dark_current):
            raise ValueError(f"{owner}.dark_current: expected a finite number, got {dark_current}")
        return xp.full((ny, nx), float(dark_current), dtype=xp.float32)
    if not (hasattr(dark_current, "shape") and hasattr(dark_current, "dtype")):
        raise TypeError(
            f"{owner}.dark_current: expected None, a number, an array or a DarkRef, "
            f"got {type(dark_current).__name__}"
        )
    arr = as_namespace(xp, dark_current, xp.float32)
    if arr.ndim == 0:
        arr = xp.broadcast_to(arr, (ny, nx))
    if tuple(arr.shape) != (ny, nx):
        raise ValueError(
            f"{owner}.dark_current: expected a scalar or shape {(ny, nx)}, got {tuple(arr.shape)}"
        )
    return arr


def prepare_inputs(
    ramp: RampModel,
    gain_ref: GainRef,
    readnoise_ref: ReadnoiseRef,
    dark_current: Any = None,
    *,
    owner: str = "RampFit",
) -> RampFitInputs:
    """Validate the fit arguments and return them as arrays of the ramp's namespace.

    Parameters
    ----------
    ramp : RampModel
    gain_ref : GainRef
        Gain in e-/DN; cut to the science subarray with ``for_science``.
    readnoise_ref : ReadnoiseRef
        CDS read noise in DN; cut likewise.
    dark_current : None, float, array or DarkRef
        Average dark current (see :func:`dark_current_array` and
        :attr:`RampFitInputs.dark_current` for units).
    owner : str
        Class name used in error messages.

    Raises
    ------
    TypeError
        If an argument is not the expected model type.
    ValueError
        If a reference does not cover the science frame or ``dark_current`` is malformed.
    """
    if not isinstance(ramp, RampModel):
        raise TypeError(f"{owner}: expected ramp to be a RampModel, got {type(ramp).__name__}")
    if not isinstance(gain_ref, GainRef):
        raise TypeError(
            f"{owner}: expected gain_ref to be a GainRef, got {type(gain_ref).__name__}"
        )
    if not isinstance(readnoise_ref, ReadnoiseRef):
        raise TypeError(
            f"{owner}: expected readnoise_ref to be a ReadnoiseRef, "
            f"got {type(readnoise_ref).__name__}"
        )
    xp = ramp.xp
    frame = tuple(int(s) for s in ramp.data.shape[-2:])
    gain = gain_ref.for_science(ramp.meta, frame).data
    readnoise = readnoise_ref.for_science(ramp.meta, frame).data
    return RampFitInputs(
        xp=xp,
        data=ramp.data,
        groupdq=ramp.groupdq,
        pixeldq=ramp.pixeldq,
        zeroframe=ramp.zeroframe,
        gain=as_namespace(xp, gain, xp.float32),
        readnoise=as_namespace(xp, readnoise, xp.float32),
        dark_current=dark_current_array(xp, dark_current, frame, ramp.meta, owner),
        has_dark=dark_current is not None,
        meta=ramp.meta,
    )


_PRODUCT_KEYS = ("data", "dq", "err", "var_poisson", "var_rnoise")


def _cast(xp, array, dtype):
    """``array`` as ``dtype`` without copying when it already is."""
    return array if array.dtype == dtype else xp.astype(array, dtype)


def _product(cls, xp, values: Mapping[str, Any], meta: ExposureMeta | None, what: str):
    unknown = set(values) - set(_PRODUCT_KEYS)
    if unknown or "data" not in values:
        raise ValueError(
            f"build_result.{what}: expected keys from {_PRODUCT_KEYS} including 'data', "
            f"got {sorted(values)}"
        )
    out = {k: _cast(xp, v, xp.float32) for k, v in values.items() if k != "dq" and v is not None}
    if values.get("dq") is not None:
        out["dq"] = _cast(xp, values["dq"], xp.uint32)
    if "err" not in out and "var_poisson" in out and "var_rnoise" in out:
        out["err"] = xp.sqrt(out["var_poisson"] + out["var_rnoise"])
    return cls(**out, meta=meta)


def build_result(
    rate: Mapping[str, Any],
    rateints: Mapping[str, Any],
    meta: ExposureMeta | None = None,
    fitopt: Mapping[str, Any] | FitOptModel | None = None,
) -> RampFitResult:
    """Assemble a :class:`RampFitResult` from the kernel's arrays.

    Parameters
    ----------
    rate, rateints : mapping
        Arrays keyed ``data``, ``dq`` and optionally ``var_poisson``, ``var_rnoise``, ``err``
        (2-D for ``rate``, ``(nints, ny, nx)`` for ``rateints``).  Floats are cast to
        float32, ``dq`` to uint32; a missing ``err`` is ``sqrt(var_poisson + var_rnoise)``.
    meta : ExposureMeta, optional
        Attached to both products.
    fitopt : mapping or FitOptModel, optional
        The optional per-segment product; a mapping is cast to float32 and passed to
        :class:`FitOptModel`.
    """
    if "data" not in rate:
        raise ValueError(
            f"build_result.rate: expected keys from {_PRODUCT_KEYS} including "
            f"'data', got {sorted(rate)}"
        )
    xp = array_namespace(rate["data"])
    rate_model = _product(ImageModel, xp, rate, meta, "rate")
    ints_model = _product(CubeModel, xp, rateints, meta, "rateints")
    if fitopt is not None and not isinstance(fitopt, FitOptModel):
        fitopt = FitOptModel(**{k: _cast(xp, v, xp.float32) for k, v in fitopt.items()})
    return RampFitResult(rate=rate_model, rateints=ints_model, fitopt=fitopt)
