"""Exceptions raised by the evolutionary search."""

from __future__ import annotations

from mutnas.errors import MutnasError

__all__ = ["CandidateFailedError", "ConfigError", "DatasetError", "EvolveError", "RunInUseError"]


class EvolveError(MutnasError):
    """Base class of every error raised by :mod:`evolve`."""


class ConfigError(EvolveError, ValueError):
    """A search setting is invalid (negative population, unknown objective, bad flag)."""


class DatasetError(EvolveError):
    """A dataset cannot be found, read or used (missing folder, corrupt file, bad shape)."""


class CandidateFailedError(EvolveError):
    """A candidate could not be evaluated; ``reason`` is logged and the search goes on."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class RunInUseError(EvolveError):
    """Another process holds the run directory's lock; ``pid`` is its id (or ``None``)."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid
