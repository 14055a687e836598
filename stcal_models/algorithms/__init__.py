"""Calibration steps, one module each; every step is a validated, callable dataclass."""

from .base import Step
from .dark_current import DarkCurrent, DarkResult
from .jump import JumpDetection
from .linearity import Linearity
from .ramp_fitting import Cas22RampFit, LikelyRampFit, OLSRampFit
from .saturation import Saturation
from .superbias import Superbias

__all__ = [
    "Cas22RampFit",
    "LikelyRampFit",
    "OLSRampFit",
    "DarkCurrent",
    "DarkResult",
    "JumpDetection",
    "Linearity",
    "Saturation",
    "Step",
    "Superbias",
]
