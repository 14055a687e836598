"""``Catalog``: source positions (and optionally sky coordinates, fluxes, weights)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .base import DataModel, array_field, register_model

__all__ = ["Catalog"]

_COLUMNS = ("x", "y", "ra", "dec", "flux", "weight")


@register_model
@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Catalog(DataModel):
    """Sources as 1-D columns of equal length; ``x``/``y`` are 0-based pixel positions.

    Catalogs feed host-side steps (tweakreg, alignment); columns are float64.
    """

    x: Any = array_field(dtype="float64", ndim=1, doc="pixel x (0-based)")
    y: Any = array_field(dtype="float64", ndim=1, doc="pixel y (0-based)")
    ra: Any = array_field(dtype="float64", ndim=1, optional=True, doc="right ascension, deg")
    dec: Any = array_field(dtype="float64", ndim=1, optional=True, doc="declination, deg")
    flux: Any = array_field(dtype="float64", ndim=1, optional=True, doc="flux")
    weight: Any = array_field(dtype="float64", ndim=1, optional=True, doc="fit weight")
    name: str = ""

    def _validate(self) -> None:
        n = int(self.x.shape[0])
        for column in _COLUMNS[1:]:
            self._check_shape(column, (n,))
        if (self.ra is None) != (self.dec is None):
            raise ValueError("Catalog.ra/dec: give both or neither")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def to_table(self):
        """An :class:`astropy.table.Table` with the non-empty columns."""
        from astropy.table import Table

        table = Table(
            {c: np.asarray(getattr(self, c)) for c in _COLUMNS if getattr(self, c) is not None}
        )
        table.meta["name"] = self.name
        return table

    @classmethod
    def from_table(cls, table, name: str | None = None) -> Catalog:
        """Build from a table with at least ``x`` and ``y`` columns (cast to float64).

        Raises
        ------
        ValueError
            If ``x`` or ``y`` is missing, or a column holds masked/non-numeric values.
        """
        columns = {}
        for c in _COLUMNS:
            if c not in table.colnames:
                if c in ("x", "y"):
                    raise ValueError(f"Catalog.from_table: missing required column {c!r}")
                continue
            values = table[c]
            if getattr(values, "mask", None) is not None and np.any(values.mask):
                raise ValueError(f"Catalog.from_table: column {c!r} has masked entries")
            arr = np.asarray(values)
            if not np.issubdtype(arr.dtype, np.number):
                raise TypeError(
                    f"Catalog.from_table: column {c!r} expected numbers, got {arr.dtype}"
                )
            columns[c] = arr.astype(np.float64)
        if name is None:
            name = str(table.meta.get("name", ""))
        return cls(**columns, name=name)
