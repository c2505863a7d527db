"""Exceptions raised by the PyTorch adapter."""

from __future__ import annotations

from mutnas.errors import MutnasError

__all__ = ["MutnasTorchError", "SurgeryError", "TraceError", "UnsupportedLayerError"]


class MutnasTorchError(MutnasError):
    """Base class of every error raised by :mod:`mutnas_torch`."""


class TraceError(MutnasTorchError):
    """torch.fx could not trace the model; the message names the failing node and the fix."""


class UnsupportedLayerError(MutnasTorchError):
    """A module or op changes channels in a way mutnas does not know.

    Attributes:
        path: qualified name of the module (or fx node) in the model.
        type_name: the module's type or the op's name.
    """

    def __init__(self, path: str, type_name: str, hint: str = ""):
        self.path = path
        self.type_name = type_name
        message = f"unsupported layer {path!r} of type {type_name}"
        if hint:
            message += f": {hint}"
        super().__init__(message)


class SurgeryError(MutnasTorchError):
    """Weights could not be changed to match a solved mutation."""
