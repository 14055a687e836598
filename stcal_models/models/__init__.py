"""Typed data models: science products, catalogs and reference data."""

from .catalog import Catalog
from .image import CubeModel, ImageModel
from .meta import ExposureMeta, evenly_sampled_read_pattern
from .ramp import RampModel
from .reference import (
    DarkRef,
    GainRef,
    LinearityRef,
    ReadnoiseRef,
    ReferenceModel,
    RefMeta,
    SaturationRef,
    SuperbiasRef,
)
from .results import FitOptModel, RampFitResult

__all__ = [
    "Catalog",
    "CubeModel",
    "DarkRef",
    "ExposureMeta",
    "FitOptModel",
    "GainRef",
    "ImageModel",
    "LinearityRef",
    "RampFitResult",
    "RampModel",
    "ReadnoiseRef",
    "RefMeta",
    "ReferenceModel",
    "SaturationRef",
    "SuperbiasRef",
    "evenly_sampled_read_pattern",
]
