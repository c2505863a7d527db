"""Exceptions raised by :mod:`mutnas_torch.energy`."""

from __future__ import annotations

from mutnas_torch.errors import MutnasTorchError

__all__ = ["CalibrationError", "CostCountingError", "EnergyError", "MeterUnavailableError"]


class EnergyError(MutnasTorchError):
    """Base class of every error raised by :mod:`mutnas_torch.energy`."""


class CostCountingError(EnergyError):
    """The model could not be run on the ``meta`` device to count its costs."""


class MeterUnavailableError(EnergyError):
    """No energy counter of the requested kind is readable on this machine.

    The message says which counter was tried and why it failed (missing library,
    missing sysfs file, permission, unsupported GPU), and how to fix it.
    """


class CalibrationError(EnergyError):
    """A predictor could not be calibrated (no meter, too few networks, bad data)."""
