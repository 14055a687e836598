"""JWST-layout FITS: ``_uncal``/``_ramp`` ramps and ``_rate``/``_rateints`` images."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..backends import to_numpy
from ..models.meta import ExposureMeta
from .atomic import atomic_path

__all__ = ["read_image_fits", "read_ramp_fits", "write_image_fits", "write_ramp_fits"]

# ExposureMeta field -> FITS keyword (primary header)
_KEYWORDS = {
    "nints": "NINTS",
    "ngroups": "NGROUPS",
    "nframes": "NFRAMES",
    "groupgap": "GROUPGAP",
    "nskip": "DRPFRMS1",
    "frame_time": "TFRAME",
    "group_time": "TGROUP",
    "instrument": "INSTRUME",
    "detector": "DETECTOR",
    "exposure_type": "EXP_TYPE",
    "readpatt": "READPATT",
    "xstart": "SUBSTRT1",
    "ystart": "SUBSTRT2",
}
_REQUIRED_RAMP_KEYWORDS = ("NFRAMES", "GROUPGAP", "TFRAME", "TGROUP")
_EXACT_FLOAT32_SOURCES = (np.uint8, np.int8, np.uint16, np.int16, np.float32)
_IMAGE_EXTENSIONS = {
    "err": "ERR",
    "var_poisson": "VAR_POISSON",
    "var_rnoise": "VAR_RNOISE",
    "var_flat": "VAR_FLAT",
}


# ----------------------------------------------------------------------------- ramps
def read_ramp_fits(path: str | os.PathLike):
    """Read a JWST ``_uncal``-layout file into a :class:`RampModel`.

    SCI (4-D, uint16 or float32, converted exactly to float32) and the keywords
    NFRAMES, GROUPGAP, TFRAME, TGROUP are required; GROUPDQ, PIXELDQ and ZEROFRAME
    are optional (missing DQ arrays are zeros, as before ``dq_init``).  NINTS/NGROUPS,
    when present, must agree with SCI unless INTSTART/INTEND describe a segment.
    """
    from ..models.ramp import RampModel

    path = Path(path)
    with _open_fits(path) as hdul:
        header = hdul[0].header
        sci = _float32_extension(hdul, "SCI", ndim=4, path=path)
        nints, ngroups, ny, nx = sci.shape
        missing = [k for k in _REQUIRED_RAMP_KEYWORDS if k not in header]
        if missing:
            raise ValueError(f"{path}: missing primary-header keywords {missing}")
        _check_count(path, header, "NGROUPS", ngroups)
        if "INTSTART" not in header or "INTEND" not in header:
            _check_count(path, header, "NINTS", nints)
        groupdq = _optional_extension(hdul, "GROUPDQ", np.uint8, (nints, ngroups, ny, nx), path)
        pixeldq = _optional_extension(hdul, "PIXELDQ", np.uint32, (ny, nx), path)
        zeroframe = None
        if "ZEROFRAME" in hdul:
            zeroframe = _float32_extension(hdul, "ZEROFRAME", ndim=3, path=path)
            if zeroframe.shape != (nints, ny, nx):
                raise ValueError(
                    f"{path}: ZEROFRAME expected shape {(nints, ny, nx)}, got {zeroframe.shape}"
                )
        err = None
        if "ERR" in hdul:
            err = _optional_extension(hdul, "ERR", np.float32, (nints, ngroups, ny, nx), path)
        read_pattern = _read_pattern_from_hdul(hdul, path)
        meta = _meta_from_header(
            header, nints=nints, ngroups=ngroups, read_pattern=read_pattern, path=path
        )
    return RampModel(
        data=sci, groupdq=groupdq, pixeldq=pixeldq, zeroframe=zeroframe, err=err, meta=meta
    )


def write_ramp_fits(model, path: str | os.PathLike) -> None:
    """Write a :class:`RampModel` in the ``_ramp`` layout (float32 SCI, GROUPDQ, PIXELDQ, ...)."""
    hdus = [fits.PrimaryHDU(header=_header_from_meta(model.meta))]
    hdus.append(fits.ImageHDU(to_numpy(model.data), name="SCI"))
    hdus.append(fits.ImageHDU(to_numpy(model.pixeldq), name="PIXELDQ"))
    hdus.append(fits.ImageHDU(to_numpy(model.groupdq), name="GROUPDQ"))
    if model.err is not None:
        hdus.append(fits.ImageHDU(to_numpy(model.err), name="ERR"))
    if model.zeroframe is not None:
        hdus.append(fits.ImageHDU(to_numpy(model.zeroframe), name="ZEROFRAME"))
    if model.meta.read_pattern is not None:
        hdus.append(_read_pattern_hdu(model.meta.read_pattern))
    _write(fits.HDUList(hdus), path)


# ----------------------------------------------------------------------------- images
def write_image_fits(model, path: str | os.PathLike) -> None:
    """Write an :class:`ImageModel`/:class:`CubeModel` in the ``_rate``/``_rateints`` layout."""
    header = _header_from_meta(model.meta) if model.meta is not None else fits.Header()
    header["DATAMODL"] = type(model).__name__
    hdus = [fits.PrimaryHDU(header=header)]
    hdus.append(fits.ImageHDU(to_numpy(model.data), name="SCI"))
    for field, extname in _IMAGE_EXTENSIONS.items():
        if field == "var_poisson":
            hdus.append(fits.ImageHDU(to_numpy(model.dq), name="DQ"))
        value = getattr(model, field)
        if value is not None:
            hdus.append(fits.ImageHDU(to_numpy(value), name=extname))
    _write(fits.HDUList(hdus), path)


def read_image_fits(path: str | os.PathLike, cls):
    """Read a ``_rate``/``_rateints`` layout file into ``cls`` (ImageModel or CubeModel)."""
    path = Path(path)
    ndim = 2 if cls.__name__ == "ImageModel" else 3
    with _open_fits(path) as hdul:
        header = hdul[0].header
        sci = _float32_extension(hdul, "SCI", ndim=ndim, path=path)
        shape = sci.shape
        dq = _optional_extension(hdul, "DQ", np.uint32, shape, path)
        extras = {}
        for field, extname in _IMAGE_EXTENSIONS.items():
            if extname in hdul:
                extras[field] = _optional_extension(hdul, extname, np.float32, shape, path)
        meta = None
        if "NINTS" in header and "NGROUPS" in header:
            nints = shape[0] if ndim == 3 else int(header["NINTS"])
            meta = _meta_from_header(header, nints=nints, ngroups=int(header["NGROUPS"]), path=path)
    return cls(data=sci, dq=dq, meta=meta, **extras)


# ----------------------------------------------------------------------------- helpers
class _open_fits:
    """Open a FITS file fully in memory, turning every low-level failure into ValueError."""

    def __init__(self, path: Path):
        self.path = path
        self.hdul = None

    def __enter__(self) -> fits.HDUList:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", fits.verify.VerifyWarning)
                warnings.filterwarnings("error", message="File may have been truncated")
                self.hdul = fits.open(self.path, memmap=False, lazy_load_hdus=False)
                for hdu in self.hdul:
                    _ = hdu.data  # force reading: a truncated file fails here
        except Exception as exc:
            if self.hdul is not None:
                self.hdul.close()
            raise ValueError(
                f"{self.path}: cannot read as FITS ({type(exc).__name__}: {exc})"
            ) from exc
        return self.hdul

    def __exit__(self, *exc) -> None:
        self.hdul.close()


def _float32_extension(hdul, name: str, ndim: int, path: Path) -> np.ndarray:
    if name not in hdul:
        raise ValueError(f"{path}: missing required extension {name}")
    data = hdul[name].data
    if data is None:
        raise ValueError(f"{path}: extension {name} holds no data")
    if data.ndim != ndim:
        raise ValueError(f"{path}: extension {name} expected {ndim}-D, got shape {data.shape}")
    if not any(np.dtype(data.dtype).type is t for t in _EXACT_FLOAT32_SOURCES):
        raise TypeError(
            f"{path}: extension {name} expected uint16/int16/float32 values "
            f"(exactly representable in float32), got {data.dtype}"
        )
    return np.array(data, dtype=np.float32)


def _optional_extension(hdul, name, dtype, shape, path):
    if name not in hdul:
        return None
    data = hdul[name].data
    if data is None or tuple(data.shape) != tuple(shape):
        got = None if data is None else tuple(data.shape)
        raise ValueError(f"{path}: extension {name} expected shape {tuple(shape)}, got {got}")
    if np.dtype(data.dtype).newbyteorder("=") != np.dtype(dtype):
        if (
            np.issubdtype(data.dtype, np.integer)
            and np.issubdtype(dtype, np.integer)
            and (
                np.can_cast(data.dtype, dtype, casting="safe")
                or np.all(data >= 0)
                and np.all(data <= np.iinfo(dtype).max)
            )
        ):
            pass  # integer DQ stored in another integer width: values fit exactly
        else:
            raise TypeError(
                f"{path}: extension {name} expected {np.dtype(dtype)}, got {data.dtype}"
            )
    return np.array(data, dtype=dtype)


def _check_count(path, header, keyword, actual):
    if keyword in header and int(header[keyword]) != actual:
        raise ValueError(f"{path}: {keyword}={header[keyword]} disagrees with SCI ({actual})")


def _meta_from_header(header, nints, ngroups, path, read_pattern=None) -> ExposureMeta:
    values = {"nints": int(nints), "ngroups": int(ngroups), "read_pattern": read_pattern}
    for field, keyword in _KEYWORDS.items():
        if field in values or keyword not in header:
            continue
        value = header[keyword]
        if field in ("frame_time", "group_time"):
            value = float(value)
        elif field in ("nframes", "groupgap", "nskip", "xstart", "ystart"):
            value = int(value)
        else:
            value = str(value)
        values[field] = value
    try:
        return ExposureMeta(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: inconsistent exposure keywords: {exc}") from exc


def _header_from_meta(meta: ExposureMeta) -> fits.Header:
    header = fits.Header()
    for field, keyword in _KEYWORDS.items():
        header[keyword] = getattr(meta, field)
    return header


def _read_pattern_hdu(pattern) -> fits.BinTableHDU:
    resultant = [k for k, reads in enumerate(pattern) for _ in reads]
    read = [r for reads in pattern for r in reads]
    columns = [
        fits.Column(name="RESULTANT", format="J", array=np.asarray(resultant, dtype=np.int32)),
        fits.Column(name="READ", format="J", array=np.asarray(read, dtype=np.int32)),
    ]
    return fits.BinTableHDU.from_columns(columns, name="READ_PATTERN")


def _read_pattern_from_hdul(hdul, path):
    if "READ_PATTERN" not in hdul:
        return None
    table = hdul["READ_PATTERN"].data
    try:
        resultants = np.asarray(table["RESULTANT"])
        reads = np.asarray(table["READ"])
    except KeyError as exc:
        raise ValueError(f"{path}: READ_PATTERN table needs RESULTANT and READ columns") from exc
    count = int(resultants.max()) + 1 if resultants.size else 0
    return tuple(tuple(int(r) for r in reads[resultants == k]) for k in range(count))


def _write(hdul: fits.HDUList, path) -> None:
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, overwrite=True)
