"""Jump (cosmic-ray) detection: two-point differences, sigma clipping, snowballs and showers."""

from .large_events import SnowballParams
from .step import JumpDetection, detection_mode, uneven_sampling
from .twopoint import KernelParams, jump_kernel

__all__ = ["JumpDetection", "KernelParams", "SnowballParams", "detection_mode", "jump_kernel", "uneven_sampling"]
