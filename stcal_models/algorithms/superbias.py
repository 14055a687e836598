"""Superbias subtraction: remove the per-pixel zero-signal level before linearity."""

from __future__ import annotations

import dataclasses

from ..backends import array_namespace, as_namespace
from ..dqflags import DQ
from ..models import RampModel, SuperbiasRef
from .base import Step

__all__ = ["Superbias"]


@dataclasses.dataclass(frozen=True, repr=False)
class Superbias(Step):
    """Subtract a superbias frame from every group (and the ZEROFRAME).

    NaN bias values subtract nothing and flag the pixel ``UNRELIABLE_BIAS``; the
    reference's DQ is OR-ed into PIXELDQ.  This is JWST's ``superbias`` step, which runs
    between saturation and linearity (linearity coefficients apply to bias-free DN).
    """

    def __call__(self, ramp: RampModel, superbias: SuperbiasRef) -> RampModel:
        if not isinstance(ramp, RampModel):
            raise TypeError(f"Superbias.ramp: expected RampModel, got {type(ramp).__name__}")
        if not isinstance(superbias, SuperbiasRef):
            raise TypeError(
                f"Superbias.superbias: expected SuperbiasRef, got {type(superbias).__name__}"
            )
        ref = superbias.for_science(ramp.meta, ramp.shape[-2:])
        xp = array_namespace(ramp.data)
        bias = as_namespace(xp, ref.data)
        bad = xp.isnan(bias)
        bias = xp.where(bad, xp.zeros_like(bias), bias)
        pixeldq = ramp.pixeldq | xp.where(
            bad,
            xp.asarray(int(DQ.UNRELIABLE_BIAS), dtype=xp.uint32),
            xp.asarray(0, dtype=xp.uint32),
        )
        if ref.dq is not None:
            pixeldq = pixeldq | as_namespace(xp, ref.dq)
        changes = {"data": ramp.data - bias, "pixeldq": pixeldq}
        if ramp.zeroframe is not None:
            changes["zeroframe"] = ramp.zeroframe - bias
        return ramp.replace(**changes)
