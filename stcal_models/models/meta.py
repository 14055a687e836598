"""Exposure metadata: readout pattern, timing and instrument names."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ExposureMeta", "evenly_sampled_read_pattern"]

ReadPattern = tuple[tuple[int, ...], ...]


def evenly_sampled_read_pattern(
    ngroups: int, nframes: int, groupgap: int, nskip: int = 0
) -> ReadPattern:
    """JWST read pattern: for each group the 1-based indices of the frames averaged into it.

    Group ``g`` (0-based) averages frames ``nskip + g*(nframes+groupgap) + 1 ... + nframes``.
    """
    step = nframes + groupgap
    return tuple(tuple(nskip + g * step + k + 1 for k in range(nframes)) for g in range(ngroups))


@dataclasses.dataclass(frozen=True, slots=True)
class ExposureMeta:
    """Readout and timing of an exposure (static, hashable; a JAX pytree's aux data).

    Parameters
    ----------
    nints, ngroups : int
        Integrations and groups (resultants) per integration.
    nframes, groupgap : int
        Frames averaged into each group and frames dropped between groups (JWST).
    nskip : int
        Frames dropped at the start of each integration (``drop_frames1``).
    frame_time : float
        Seconds per frame/read (``TFRAME``).
    group_time : float or None
        Seconds between groups (``TGROUP``); ``None`` computes
        ``(nframes + groupgap) * frame_time``.  For an evenly sampled exposure a
        given value must agree with that product.
    read_pattern : tuple of tuple of int or None
        1-based read indices averaged into each resultant.  ``None`` means the evenly
        sampled JWST pattern implied by ``nframes``/``groupgap``/``nskip``.  Roman-style
        uneven resultants give it explicitly.
    instrument, detector, exposure_type, readpatt : str
        Names as in the FITS keywords ``INSTRUME``, ``DETECTOR``, ``EXP_TYPE``, ``READPATT``.
    xstart, ystart : int
        1-based origin of the (sub)array on the full detector (``SUBSTRT1/2``).
    """

    nints: int
    ngroups: int
    nframes: int = 1
    groupgap: int = 0
    nskip: int = 0
    frame_time: float = 10.73677
    group_time: float | None = None
    read_pattern: ReadPattern | None = None
    instrument: str = "NIRCAM"
    detector: str = "NRCA1"
    exposure_type: str = "NRC_IMAGE"
    readpatt: str = ""
    xstart: int = 1
    ystart: int = 1

    def __post_init__(self) -> None:
        for name in ("nints", "ngroups", "nframes", "xstart", "ystart"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("groupgap", "nskip"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_positive_float("frame_time", self.frame_time)
        for name in ("instrument", "detector", "exposure_type", "readpatt"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(
                    f"ExposureMeta.{name}: expected str, got {type(getattr(self, name)).__name__}"
                )
        if self.read_pattern is not None:
            object.__setattr__(self, "read_pattern", _normalise_pattern(self.read_pattern))
            if len(self.read_pattern) != self.ngroups:
                raise ValueError(
                    f"ExposureMeta.read_pattern: expected {self.ngroups} resultants (ngroups), "
                    f"got {len(self.read_pattern)}"
                )
        expected = (self.nframes + self.groupgap) * float(self.frame_time)
        if self.group_time is None:
            object.__setattr__(self, "group_time", expected)
        else:
            _check_positive_float("group_time", self.group_time)
            object.__setattr__(self, "group_time", float(self.group_time))
            if self.read_pattern is None and not math.isclose(
                self.group_time, expected, rel_tol=1e-4
            ):
                raise ValueError(
                    "ExposureMeta.group_time: expected (nframes + groupgap) * frame_time = "
                    f"{expected:.6g} s, got {self.group_time:.6g} s"
                )
        object.__setattr__(self, "frame_time", float(self.frame_time))

    # ------------------------------------------------------------------ derived
    @property
    def resultant_reads(self) -> ReadPattern:
        """The read pattern, explicit or the evenly sampled JWST one."""
        if self.read_pattern is not None:
            return self.read_pattern
        return evenly_sampled_read_pattern(self.ngroups, self.nframes, self.groupgap, self.nskip)

    @property
    def is_uneven(self) -> bool:
        """True when resultants differ in length or spacing (Roman-style)."""
        reads = self.resultant_reads
        if len({len(r) for r in reads}) > 1:
            return True
        starts = [r[0] for r in reads]
        return len({b - a for a, b in zip(starts, starts[1:], strict=False)}) > 1

    @property
    def resultant_times(self) -> tuple[float, ...]:
        """Mean time (s) of the reads in each resultant, from the start of the integration."""
        return tuple(self.frame_time * sum(r) / len(r) for r in self.resultant_reads)

    def replace(self, **changes: Any) -> ExposureMeta:
        """A copy with ``changes`` applied (validated again)."""
        if "group_time" not in changes and any(
            k in changes for k in ("nframes", "groupgap", "frame_time")
        ):
            changes["group_time"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` (lists for the read pattern) for ASDF trees."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.read_pattern is not None:
            out["read_pattern"] = [list(r) for r in self.read_pattern]
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExposureMeta:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"ExposureMeta: unknown keys {sorted(unknown)}")
        return cls(**dict(values))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ExposureMeta.{name}: expected int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"ExposureMeta.{name}: expected >= {minimum}, got {value}")


def _check_positive_float(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"ExposureMeta.{name}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"ExposureMeta.{name}: expected a finite value > 0, got {value}")


def _normalise_pattern(pattern: Sequence[Sequence[int]]) -> ReadPattern:
    try:
        out = tuple(tuple(int(i) for i in resultant) for resultant in pattern)
    except TypeError as exc:
        raise TypeError(
            "ExposureMeta.read_pattern: expected a sequence of sequences of read indices"
        ) from exc
    previous = 0
    for k, resultant in enumerate(out):
        if not resultant:
            raise ValueError(f"ExposureMeta.read_pattern: resultant {k} has no reads")
        for read in resultant:
            if read <= previous:
                raise ValueError(
                    "ExposureMeta.read_pattern: expected strictly increasing 1-based read "
                    f"indices, got {read} after {previous} in resultant {k}"
                )
            previous = read
    return out
