"""ASDF and JWST-layout FITS readers and writers."""

from .asdf_io import read_model, write_model
from .fits_io import read_image_fits, read_ramp_fits, write_image_fits, write_ramp_fits

__all__ = [
    "read_image_fits",
    "read_model",
    "read_ramp_fits",
    "write_image_fits",
    "write_model",
    "write_ramp_fits",
]
