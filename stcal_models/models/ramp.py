"""``RampModel``: up-the-ramp science data of one exposure."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import DataModel, array_field, register_model
from .meta import ExposureMeta

__all__ = ["RampModel"]


@register_model
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class RampModel(DataModel):
    """Raw or partly calibrated ramps, ``(nints, ngroups, ny, nx)``.

    Parameters
    ----------
    data : array, float32, (nints, ngroups, ny, nx)
        Science values in DN.
    groupdq : array, uint8, same shape as ``data``
        Per-group DQ flags; ``None`` creates zeros.
    pixeldq : array, uint32, (ny, nx)
        Per-pixel DQ flags; ``None`` creates zeros.
    zeroframe : array, float32, (nints, ny, nx), optional
        The first frame of each integration (JWST ``ZEROFRAME``).
    err : array, float32, same shape as ``data``, optional
    meta : ExposureMeta
        Readout and timing.  ``None`` derives a default from the data shape.
    """

    data: Any = array_field(dtype="float32", ndim=4, doc="science ramps, DN")
    groupdq: Any = array_field(dtype="uint8", ndim=4, optional=True, doc="group DQ")
    pixeldq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="pixel DQ")
    zeroframe: Any = array_field(dtype="float32", ndim=3, optional=True, doc="zero frame, DN")
    err: Any = array_field(dtype="float32", ndim=4, optional=True, doc="error, DN")
    meta: ExposureMeta | None = None

    def _fill_defaults(self) -> None:
        data = self.data
        if data is None or not hasattr(data, "shape"):
            return
        if self.meta is None and getattr(data, "ndim", 0) == 4:
            self._set("meta", ExposureMeta(nints=int(data.shape[0]), ngroups=int(data.shape[1])))
        xp = _namespace_or_none(data)
        if xp is None:
            return
        if self.groupdq is None:
            self._set("groupdq", xp.zeros(data.shape, dtype=xp.uint8))
        if self.pixeldq is None and data.ndim == 4:
            self._set("pixeldq", xp.zeros(data.shape[-2:], dtype=xp.uint32))

    def _validate(self) -> None:
        if not isinstance(self.meta, ExposureMeta):
            raise TypeError(
                f"RampModel.meta: expected ExposureMeta, got {type(self.meta).__name__}"
            )
        nints, ngroups, ny, nx = (int(s) for s in self.data.shape)
        self._check_shape("groupdq", (nints, ngroups, ny, nx))
        self._check_shape("pixeldq", (ny, nx))
        self._check_shape("zeroframe", (nints, ny, nx))
        self._check_shape("err", (nints, ngroups, ny, nx))
        if self.meta.nints != nints:
            raise ValueError(
                f"RampModel.meta.nints: expected {nints} (data.shape[0]), got {self.meta.nints}"
            )
        if self.meta.ngroups != ngroups:
            raise ValueError(
                f"RampModel.meta.ngroups: expected {ngroups} (data.shape[1]), got {self.meta.ngroups}"
            )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(nints, ngroups, ny, nx)``."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def nints(self) -> int:
        return self.shape[0]

    @property
    def ngroups(self) -> int:
        return self.shape[1]

    def plot(self, **kwargs):
        """Matplotlib figure of the last group of the first integration (see ``display.plot_image``)."""
        from ..display import plot_model

        return plot_model(self, **kwargs)

    @classmethod
    def from_fits(cls, path) -> RampModel:
        """Read a JWST ``_uncal``-layout FITS file (SCI, GROUPDQ, PIXELDQ, ZEROFRAME)."""
        from ..io.fits_io import read_ramp_fits

        return read_ramp_fits(path)

    def to_fits(self, path) -> None:
        """Write the JWST ``_uncal``/``_ramp`` layout (float32 SCI)."""
        from ..io.fits_io import write_ramp_fits

        write_ramp_fits(self, path)


def _namespace_or_none(x):
    from ..backends import array_namespace

    try:
        return array_namespace(x)
    except TypeError:
        return None
