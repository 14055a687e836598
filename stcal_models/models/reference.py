"""Reference-data models: gain, read noise, saturation, linearity, dark."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import DataModel, array_field, register_model
from .meta import ExposureMeta

__all__ = [
    "DarkRef",
    "GainRef",
    "LinearityRef",
    "ReadnoiseRef",
    "RefMeta",
    "ReferenceModel",
    "SaturationRef",
    "SuperbiasRef",
]


@dataclasses.dataclass(frozen=True, slots=True)
class RefMeta:
    """Where a reference array sits on the detector and what it describes."""

    instrument: str = "NIRCAM"
    detector: str = "NRCA1"
    xstart: int = 1
    ystart: int = 1
    units: str = ""
    nframes: int = 1
    groupgap: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("xstart", "ystart", "nframes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"RefMeta.{name}: expected an int >= 1, got {value!r}")
        if (
            isinstance(self.groupgap, bool)
            or not isinstance(self.groupgap, int)
            or self.groupgap < 0
        ):
            raise ValueError(f"RefMeta.groupgap: expected an int >= 0, got {self.groupgap!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values) -> RefMeta:
        return cls(**dict(values))


class ReferenceModel(DataModel):
    """Base of reference models: a per-pixel array whose last two axes are (ny, nx)."""

    def _fill_defaults(self) -> None:
        if self.meta is None:
            self._set("meta", RefMeta())

    def _validate(self) -> None:
        cls = type(self).__name__
        if not isinstance(self.meta, RefMeta):
            raise TypeError(f"{cls}.meta: expected RefMeta, got {type(self.meta).__name__}")
        frame = self.frame_shape
        if getattr(self, "dq", None) is not None:
            self._check_shape("dq", frame)

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the reference array."""
        return tuple(int(s) for s in self._primary.shape[-2:])

    @property
    def _primary(self):
        return getattr(self, self._array_names[0])

    def for_science(self, meta: ExposureMeta, frame_shape: tuple[int, int]):
        """This reference cut to a science frame, or ``self`` when the shapes already match.

        A reference larger than the science frame is cut at the science subarray origin
        (``meta.xstart``/``meta.ystart``, 1-based, relative to the reference's own origin).

        Raises
        ------
        ValueError
            If the science subarray does not lie inside the reference.
        """
        ny, nx = (int(s) for s in frame_shape)
        if self.frame_shape == (ny, nx) and (meta.xstart, meta.ystart) == (
            self.meta.xstart,
            self.meta.ystart,
        ):
            return self
        x0 = meta.xstart - self.meta.xstart
        y0 = meta.ystart - self.meta.ystart
        rny, rnx = self.frame_shape
        if x0 < 0 or y0 < 0 or x0 + nx > rnx or y0 + ny > rny:
            raise ValueError(
                f"{type(self).__name__}: expected a reference covering the science frame "
                f"({ny}x{nx} at xstart={meta.xstart}, ystart={meta.ystart}), got {rny}x{rnx} "
                f"at xstart={self.meta.xstart}, ystart={self.meta.ystart}"
            )
        cut = {
            name: arr if arr.ndim < 2 else arr[..., y0 : y0 + ny, x0 : x0 + nx]
            for name, arr in self.arrays().items()
        }
        new_meta = dataclasses.replace(self.meta, xstart=meta.xstart, ystart=meta.ystart)
        return self.replace(**cut, meta=new_meta)

    def _static_to_tree(self) -> dict[str, Any]:
        return {"meta": self.meta.to_dict()}

    @classmethod
    def _static_from_tree(cls, tree: dict[str, Any]) -> dict[str, Any]:
        return {"meta": RefMeta.from_dict(tree["meta"])}


def _ref(cls):
    return register_model(dataclasses.dataclass(frozen=True, eq=False, repr=False)(cls))


@_ref
class GainRef(ReferenceModel):
    """Gain in e-/DN, ``(ny, nx)``."""

    data: Any = array_field(dtype="float32", ndim=2, doc="gain, e-/DN")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    meta: RefMeta | None = None


@_ref
class ReadnoiseRef(ReferenceModel):
    """Read noise in DN: the noise of a CDS (two-read) difference, ``(ny, nx)``."""

    data: Any = array_field(dtype="float32", ndim=2, doc="CDS read noise, DN")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    meta: RefMeta | None = None


@_ref
class SaturationRef(ReferenceModel):
    """Saturation thresholds in DN, ``(ny, nx)``; DQ may carry NO_SAT_CHECK."""

    data: Any = array_field(dtype="float32", ndim=2, doc="saturation threshold, DN")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    meta: RefMeta | None = None


@_ref
class LinearityRef(ReferenceModel):
    """Linearity polynomial coefficients ``(ncoeffs, ny, nx)``, lowest order first.

    The corrected value is ``sum_k coeffs[k] * raw**k`` (the reference file's order).
    """

    coeffs: Any = array_field(dtype="float32", ndim=3, doc="polynomial coefficients")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    meta: RefMeta | None = None

    def _validate(self) -> None:
        super()._validate()
        if int(self.coeffs.shape[0]) < 2:
            raise ValueError(
                f"LinearityRef.coeffs: expected at least 2 coefficients, got {self.coeffs.shape[0]}"
            )


@_ref
class DarkRef(ReferenceModel):
    """Dark ramp in DN, frame-level ``(ngroups, ny, nx)`` or per integration ``(nints, ngroups, ny, nx)``.

    ``meta.nframes``/``meta.groupgap`` describe how the dark was read out (usually 1/0).
    ``average_dark_current`` (DN/s) is the scalar or per-pixel value ramp fitting adds to
    its Poisson variance.
    """

    data: Any = array_field(dtype="float32", ndim=(3, 4), doc="dark ramp, DN")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    average_dark_current: Any = array_field(
        dtype="float32", ndim=(0, 2), optional=True, doc="average dark current, DN/s"
    )
    meta: RefMeta | None = None

    def _validate(self) -> None:
        super()._validate()
        if self.average_dark_current is not None and self.average_dark_current.ndim == 2:
            self._check_shape("average_dark_current", self.frame_shape)


@_ref
class SuperbiasRef(ReferenceModel):
    """Superbias frame in DN, ``(ny, nx)``: the zero-signal level subtracted before linearity."""

    data: Any = array_field(dtype="float32", ndim=2, doc="bias level, DN")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    meta: RefMeta | None = None
