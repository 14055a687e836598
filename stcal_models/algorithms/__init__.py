"""Calibration steps, one module each; every step is a validated, callable dataclass."""

from .base import Step

__all__ = ["Step"]
