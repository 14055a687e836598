"""Read Roman Level-1/ramp ASDF files (``roman`` tree: resultants with a read pattern).

Only plain ``asdf`` is needed: roman_datamodels tags that are not installed are read as
tagged dictionaries.  Resultants ``(n_resultants, ny, nx)`` become a one-integration
:class:`RampModel` whose ``meta.read_pattern`` is ``roman.meta.exposure.read_pattern``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ramp_from_roman_tree"]

_EXACT_FLOAT32 = (np.uint8, np.int8, np.uint16, np.int16, np.float32)


def ramp_from_roman_tree(roman: Mapping[str, Any], path: Path):
    """Build a :class:`RampModel` from the ``roman`` node of an open ASDF tree.

    Raises
    ------
    ValueError, TypeError
        Missing ``data``/``meta.exposure.read_pattern``/``frame_time``, a wrong
        dimensionality, or a dtype not exactly representable in float32.
    """
    from ..models import ExposureMeta, RampModel

    data = _array(roman, "data", path)
    if data.ndim != 3:
        raise ValueError(
            f"{path}: roman.data expected 3-D (n_resultants, ny, nx), got {data.shape}"
        )
    if not any(data.dtype.type is t for t in _EXACT_FLOAT32):
        raise TypeError(f"{path}: roman.data expected uint16 or float32 values, got {data.dtype}")
    meta = _get(roman, "meta", path)
    exposure = _get(meta, "exposure", path)
    pattern = _get(exposure, "read_pattern", path)
    frame_time = float(_value(_get(exposure, "frame_time", path)))
    instrument = meta.get("instrument", {}) if isinstance(meta, Mapping) else {}
    detector = (
        str(instrument.get("detector", "WFI01")) if isinstance(instrument, Mapping) else "WFI01"
    )
    nres, ny, nx = data.shape
    try:
        exposure_meta = ExposureMeta(
            nints=1,
            ngroups=int(nres),
            frame_time=frame_time,
            read_pattern=[[int(r) for r in res] for res in pattern],
            instrument="WFI",
            detector=detector,
            exposure_type=str(exposure.get("type", "WFI_IMAGE")),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: inconsistent Roman exposure metadata: {exc}") from exc
    groupdq = roman.get("groupdq")
    pixeldq = roman.get("pixeldq")
    if groupdq is not None:
        groupdq = _array(roman, "groupdq", path)
        if groupdq.shape != data.shape:
            raise ValueError(
                f"{path}: roman.groupdq expected shape {data.shape}, got {groupdq.shape}"
            )
        groupdq = groupdq.astype(np.uint8)[None]
    if pixeldq is not None:
        pixeldq = _array(roman, "pixeldq", path)
        if pixeldq.shape != (ny, nx):
            raise ValueError(
                f"{path}: roman.pixeldq expected shape {(ny, nx)}, got {pixeldq.shape}"
            )
        pixeldq = pixeldq.astype(np.uint32)
    return RampModel(
        data=data.astype(np.float32)[None], groupdq=groupdq, pixeldq=pixeldq, meta=exposure_meta
    )


def _get(node, key: str, path: Path):
    if not isinstance(node, Mapping) or key not in node:
        raise ValueError(f"{path}: Roman file is missing '{key}'")
    return node[key]


def _value(x):
    return getattr(x, "value", x)


def _array(node, key: str, path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = np.array(_value(_get(node, key, path)), copy=True)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr
