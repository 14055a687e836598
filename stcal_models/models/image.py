"""``ImageModel`` (2-D rate-like products) and ``CubeModel`` (one plane per integration)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .base import DataModel, array_field, register_model
from .meta import ExposureMeta

__all__ = ["CubeModel", "ImageModel"]

_VARIANCES = ("err", "var_poisson", "var_rnoise", "var_flat")


class _ImageLike(DataModel):
    """Shared behaviour of image and cube products."""

    _ndim: int = 2

    def _fill_defaults(self) -> None:
        data = self.data
        if data is None or not hasattr(data, "shape"):
            return
        if self.dq is None:
            from ..backends import array_namespace

            try:
                xp = array_namespace(data)
            except TypeError:
                return
            self._set("dq", xp.zeros(data.shape, dtype=xp.uint32))

    def _validate(self) -> None:
        cls = type(self).__name__
        shape = tuple(int(s) for s in self.data.shape)
        for name in ("dq", *_VARIANCES):
            self._check_shape(name, shape)
        if self.meta is not None and not isinstance(self.meta, ExposureMeta):
            raise TypeError(
                f"{cls}.meta: expected ExposureMeta or None, got {type(self.meta).__name__}"
            )
        if self.wcs is not None and not hasattr(self.wcs, "forward_transform"):
            raise TypeError(
                f"{cls}.wcs: expected a gwcs.WCS or None, got {type(self.wcs).__name__}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    def plot(self, **kwargs):
        """Matplotlib figure of the data with a ZScale + asinh stretch."""
        from ..display import plot_model

        return plot_model(self, **kwargs)

    def to_fits(self, path) -> None:
        """Write the JWST ``_rate``/``_rateints`` layout (SCI, ERR, DQ, VAR_POISSON, VAR_RNOISE, VAR_FLAT)."""
        from ..io.fits_io import write_image_fits

        write_image_fits(self, path)

    @classmethod
    def from_fits(cls, path):
        """Read a file written in the ``_rate``/``_rateints`` layout."""
        from ..io.fits_io import read_image_fits

        return read_image_fits(path, cls)


@register_model
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageModel(_ImageLike):
    """A 2-D product such as a rate image: data, dq and variances, ``(ny, nx)``.

    ``wcs`` is an optional :class:`gwcs.WCS` (static, not a pytree leaf).
    """

    data: Any = array_field(dtype="float32", ndim=2, doc="science values")
    dq: Any = array_field(dtype="uint32", ndim=2, optional=True, doc="DQ flags")
    err: Any = array_field(dtype="float32", ndim=2, optional=True, doc="total error")
    var_poisson: Any = array_field(dtype="float32", ndim=2, optional=True, doc="Poisson variance")
    var_rnoise: Any = array_field(dtype="float32", ndim=2, optional=True, doc="read-noise variance")
    var_flat: Any = array_field(dtype="float32", ndim=2, optional=True, doc="flat-field variance")
    meta: ExposureMeta | None = None
    wcs: Any = None


@register_model
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CubeModel(_ImageLike):
    """Per-integration products, ``(nints, ny, nx)`` (e.g. ``rateints``)."""

    data: Any = array_field(dtype="float32", ndim=3, doc="science values")
    dq: Any = array_field(dtype="uint32", ndim=3, optional=True, doc="DQ flags")
    err: Any = array_field(dtype="float32", ndim=3, optional=True, doc="total error")
    var_poisson: Any = array_field(dtype="float32", ndim=3, optional=True, doc="Poisson variance")
    var_rnoise: Any = array_field(dtype="float32", ndim=3, optional=True, doc="read-noise variance")
    var_flat: Any = array_field(dtype="float32", ndim=3, optional=True, doc="flat-field variance")
    meta: ExposureMeta | None = None
    wcs: Any = None

    def _validate(self) -> None:
        super()._validate()
        if self.meta is not None and self.meta.nints != self.shape[0]:
            raise ValueError(
                f"CubeModel.meta.nints: expected {self.shape[0]} (data.shape[0]), got {self.meta.nints}"
            )
