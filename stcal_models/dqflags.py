"""JWST data-quality flags, name/bit helpers and ``build_mask``.

Bit values follow the JWST convention used throughout the stcal documentation
(``DO_NOT_USE=1``, ``SATURATED=2``, ``JUMP_DET=4``, ...).  GROUPDQ arrays are
``uint8`` and can hold only the first eight bits; PIXELDQ/DQ arrays are ``uint32``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import numpy as np
from astropy.nddata import bitmask

__all__ = [
    "DQ",
    "GROUP_FLAGS",
    "build_mask",
    "dq_flag_counts",
    "flag_names",
    "flags_from_names",
    "as_dict",
]


class DQ(enum.IntFlag):
    """JWST data-quality bits (pixel and group DQ share the low eight)."""

    GOOD = 0
    DO_NOT_USE = 1 << 0
    SATURATED = 1 << 1
    JUMP_DET = 1 << 2
    DROPOUT = 1 << 3
    OUTLIER = 1 << 4
    PERSISTENCE = 1 << 5
    AD_FLOOR = 1 << 6
    CHARGELOSS = 1 << 7
    UNRELIABLE_ERROR = 1 << 8
    NON_SCIENCE = 1 << 9
    DEAD = 1 << 10
    HOT = 1 << 11
    WARM = 1 << 12
    LOW_QE = 1 << 13
    RC = 1 << 14
    TELEGRAPH = 1 << 15
    NONLINEAR = 1 << 16
    BAD_REF_PIXEL = 1 << 17
    NO_FLAT_FIELD = 1 << 18
    NO_GAIN_VALUE = 1 << 19
    NO_LIN_CORR = 1 << 20
    NO_SAT_CHECK = 1 << 21
    UNRELIABLE_BIAS = 1 << 22
    UNRELIABLE_DARK = 1 << 23
    UNRELIABLE_SLOPE = 1 << 24
    UNRELIABLE_FLAT = 1 << 25
    OPEN = 1 << 26
    ADJ_OPEN = 1 << 27
    FLUX_ESTIMATED = 1 << 28
    MSA_FAILED_OPEN = 1 << 29
    OTHER_BAD_PIXEL = 1 << 30
    REFERENCE_PIXEL = 1 << 31


#: Flags that fit in a uint8 GROUPDQ array.
GROUP_FLAGS: tuple[DQ, ...] = tuple(f for f in DQ if 0 < f.value < 256)


def as_dict() -> dict[str, int]:
    """Return the flags as the ``{name: value}`` mapping stcal functions take."""
    return {f.name: int(f.value) for f in DQ}


def flag_names(value: int) -> list[str]:
    """Names of the bits set in one DQ value, lowest bit first (``[]`` for GOOD).

    Raises
    ------
    ValueError
        If ``value`` is negative or has bits above bit 31.
    """
    value = int(value)
    if value < 0 or value >= 1 << 32:
        raise ValueError(f"dq value: expected an integer in [0, 2**32), got {value}")
    return [f.name for f in DQ if f.value and value & f.value]


def flags_from_names(names: str | Iterable[str]) -> int:
    """Combine flag names (``"JUMP_DET, SATURATED"`` or a list) into one integer.

    Raises
    ------
    ValueError
        If a name is not a known flag.
    """
    if isinstance(names, str):
        names = [n for n in names.replace("+", ",").replace("|", ",").split(",")]
    value = 0
    for raw in names:
        name = raw.strip().upper()
        if not name:
            continue
        if name not in DQ.__members__:
            raise ValueError(
                f"dq flag name: unknown flag {raw!r}; known: {', '.join(DQ.__members__)}"
            )
        value |= int(DQ[name])
    return value


def build_mask(dq, good_bits: int | str | None) -> np.ndarray:
    """Boolean mask of *good* pixels: True where ``dq`` has no bits outside ``good_bits``.

    ``good_bits`` is the set of flags that do **not** make a pixel bad.  It accepts
    everything :func:`astropy.nddata.bitmask.interpret_bit_flags` accepts — an int,
    ``"4,8"``, ``"4+8"``, ``"~4"`` (inversion) — plus JWST mnemonic names such as
    ``"JUMP_DET,DO_NOT_USE"`` or ``"~DO_NOT_USE+NON_SCIENCE"``.  ``None`` means every
    non-zero DQ value is bad.  Returns a NumPy boolean array (host-side helper).
    """
    dq = np.asarray(dq)
    if not np.issubdtype(dq.dtype, np.integer):
        raise TypeError(f"dq: expected an integer array, got dtype {dq.dtype}")
    if good_bits is None:
        return dq == 0
    flags = bitmask.interpret_bit_flags(good_bits, flag_name_map=_FLAG_MAP)
    if flags is None:
        return dq == 0
    return bitmask.bitfield_to_boolean_mask(
        dq, ignore_flags=int(flags), good_mask_value=True, dtype=bool
    )


def dq_flag_counts(dq, flags: Iterable[DQ] | None = None) -> dict[str, int]:
    """Number of elements of ``dq`` with each flag set (flags with zero count omitted).

    uint8 arrays are histogrammed once (fast on full-frame GROUPDQ cubes); wider
    arrays are tested only for the bits that occur at all.
    """
    arr = np.asarray(dq)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"dq: expected an integer array, got dtype {arr.dtype}")
    wanted = [f for f in (flags if flags is not None else DQ) if f.value]
    out: dict[str, int] = {}
    if arr.size == 0:
        return out
    if arr.dtype == np.uint8:
        histogram = np.bincount(arr.ravel(), minlength=256)
        values = np.arange(256)
        for f in wanted:
            if f.value < 256:
                n = int(histogram[(values & f.value) != 0].sum())
                if n:
                    out[f.name] = n
        return out
    present = int(np.bitwise_or.reduce(arr.ravel().astype(np.uint64, copy=False)))
    for f in wanted:
        if present & f.value:
            out[f.name] = int(np.count_nonzero(arr & arr.dtype.type(f.value)))
    return out


def _flag_map() -> Mapping[str, int]:
    return bitmask.extend_bit_flag_map("JWSTDQ", **{f.name: int(f.value) for f in DQ if f.value})


_FLAG_MAP = _flag_map()
