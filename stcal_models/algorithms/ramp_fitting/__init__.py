"""Ramp fitting: OLS (Fixsen optimal weighting), likelihood and Casertano-2022 fits.

Every fit is called as ``fit(ramp, gain_ref, readnoise_ref, dark_current=None)`` and
returns a :class:`~stcal_models.models.RampFitResult`.
"""

from .cas22 import Cas22RampFit
from .common import RampFitInputs, build_result, prepare_inputs
from .likely import LikelyRampFit
from .ols import OLSRampFit, ols_fit_arrays

__all__ = [
    "Cas22RampFit",
    "LikelyRampFit",
    "OLSRampFit",
    "RampFitInputs",
    "build_result",
    "ols_fit_arrays",
    "prepare_inputs",
]
