"""Lossless ASDF round trip of every model (arrays, metadata and gwcs WCS)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import asdf
import numpy as np

from ..backends import to_numpy
from .atomic import atomic_path

__all__ = ["read_model", "write_model"]

_TREE_KEY = "stcal_models"
_FORMAT_VERSION = 1


def write_model(model, path: str | os.PathLike) -> None:
    """Write ``model`` to ``path`` as ASDF; arrays are stored as NumPy, bit for bit."""
    tree = {
        _TREE_KEY: {
            "model_type": type(model).__name__,
            "format_version": _FORMAT_VERSION,
            "arrays": {name: np.asarray(to_numpy(a)) for name, a in model.arrays().items()},
            "static": model._static_to_tree(),
        }
    }
    with atomic_path(path) as tmp:
        asdf.AsdfFile(tree).write_to(tmp)


def read_model(path: str | os.PathLike, expected: type | None = None):
    """Read a model written by :func:`write_model`, or a Roman ``roman``-tree ramp file.

    Parameters
    ----------
    path : path-like
        The ASDF file.
    expected : type, optional
        The model class required; another stored type raises ``ValueError``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file; not an ASDF file, truncated, not written by this package, or of
        another model type.
    """
    from .. import models

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    roman_ramp = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unknown roman_datamodels tags
            af = asdf.open(path, lazy_load=False, memmap=False)
        with af:
            node = af.tree.get(_TREE_KEY)
            if not isinstance(node, dict) and isinstance(af.tree.get("roman"), dict):
                if expected is None or expected.__name__ == "RampModel":
                    from .roman_asdf import ramp_from_roman_tree

                    roman_ramp = ramp_from_roman_tree(af.tree["roman"], path)
            if isinstance(node, dict):
                arrays = {name: _native_copy(a) for name, a in dict(node["arrays"]).items()}
                static = _plain(node["static"])
                model_type = node.get("model_type")
    except (ValueError, TypeError) as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: cannot read as ASDF ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # asdf/yaml errors for truncated or foreign files
        raise ValueError(f"{path}: cannot read as ASDF ({type(exc).__name__}: {exc})") from exc
    if roman_ramp is not None:
        return roman_ramp
    if not isinstance(node, dict):
        raise ValueError(f"{path}: not a stcal_models ASDF file (no '{_TREE_KEY}' node)")
    cls = getattr(models, str(model_type), None)
    if cls is None or not hasattr(cls, "_array_names"):
        raise ValueError(f"{path}: unknown model_type {model_type!r}")
    if expected is not None and cls is not expected:
        raise ValueError(f"{path}: expected a {expected.__name__}, file holds a {model_type}")
    unknown = set(arrays) - set(cls._array_names)
    if unknown:
        raise ValueError(f"{path}: unknown array fields {sorted(unknown)} for {cls.__name__}")
    return cls(**arrays, **cls._static_from_tree(static))


def _native_copy(a: Any) -> np.ndarray:
    arr = np.array(a, copy=True)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _plain(value: Any) -> Any:
    """Convert asdf's tagged dict/list wrappers to plain Python containers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
