"""stcal-models: JWST/Roman detector and mosaic calibration on typed models, NumPy and JAX.

The public API is flat: ``from stcal_models import RampModel, ExposureMeta, simulate_ramp``.
"""

from . import backends, dqflags
from .algorithms import (
    Cas22RampFit,
    DarkCurrent,
    DarkResult,
    JumpDetection,
    LikelyRampFit,
    Linearity,
    OLSRampFit,
    Saturation,
    Step,
    Superbias,
)
from .dqflags import DQ, build_mask
from .models import (
    Catalog,
    CubeModel,
    DarkRef,
    ExposureMeta,
    FitOptModel,
    GainRef,
    ImageModel,
    LinearityRef,
    RampFitResult,
    RampModel,
    ReadnoiseRef,
    RefMeta,
    SaturationRef,
    SuperbiasRef,
)
from .pipeline import Detector1Pipeline, References  # noqa: E402  (needs the steps above)
from .simulate import (
    ExposureRefs,
    RampTruth,
    SceneTruth,
    SimulatedExposure,
    SimulatedScene,
    imaging_wcs,
    simulate_ramp,
    simulate_scene,
)

__version__ = "0.1.0"

__all__ = [
    "Cas22RampFit",
    "Detector1Pipeline",
    "LikelyRampFit",
    "OLSRampFit",
    "References",
    "DarkCurrent",
    "DarkResult",
    "JumpDetection",
    "Linearity",
    "Saturation",
    "Step",
    "Superbias",
    "DQ",
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
    "SaturationRef",
    "SuperbiasRef",
    "ExposureRefs",
    "RampTruth",
    "SceneTruth",
    "SimulatedExposure",
    "SimulatedScene",
    "imaging_wcs",
    "simulate_ramp",
    "simulate_scene",
    "backends",
    "build_mask",
    "dqflags",
]
