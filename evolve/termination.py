"""When to stop: each termination reports its progress in [0, 1]; at 1 the search ends.

A termination reads the algorithm's counters (``generation``: completed generations,
the initial one included; ``n_evaluations``; ``elapsed_s``; ``history``).
"""

from __future__ import annotations

import math

from evolve.errors import ConfigError

__all__ = [
    "AnyTermination",
    "MaxEvaluationsTermination",
    "MaxGenerationsTermination",
    "PlateauTermination",
    "Termination",
    "TimeTermination",
]


def _positive(name: str, value, integer: bool = True) -> None:
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool) or not value > 0:
        raise ConfigError(
            f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}"
        )


class Termination:
    """Base class: subclasses write ``progress``."""

    def progress(self, algorithm) -> float:
        """How far the search is, in [0, 1]."""
        raise NotImplementedError

    def has_terminated(self, algorithm) -> bool:
        """Whether the search should stop now."""
        return self.progress(algorithm) >= 1.0

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


class MaxGenerationsTermination(Termination):
    """Stop after ``n_max`` generations (the initial population's evaluation is the first).

    Example:
        >>> from types import SimpleNamespace
        >>> MaxGenerationsTermination(4).progress(SimpleNamespace(generation=1))
        0.25
    """

    def __init__(self, n_max: int):
        _positive("n_max (generations)", n_max)
        self.n_max = n_max

    def progress(self, algorithm) -> float:
        return min(1.0, algorithm.generation / self.n_max)


class MaxEvaluationsTermination(Termination):
    """Stop once ``n_max`` candidates have been evaluated (checked between generations)."""

    def __init__(self, n_max: int):
        _positive("n_max (evaluations)", n_max)
        self.n_max = n_max

    def progress(self, algorithm) -> float:
        return min(1.0, algorithm.n_evaluations / self.n_max)


class TimeTermination(Termination):
    """Stop after ``seconds`` of wall time; with ``predictive`` (default), stop early when
    another generation as long as the last one would overrun.

    Example:
        >>> from types import SimpleNamespace
        >>> state = SimpleNamespace(elapsed_s=50.0, history=[{"seconds": 20.0}])
        >>> t = TimeTermination(60.0)
        >>> round(t.progress(state), 3), t.has_terminated(state)
        (0.833, True)
    """

    def __init__(self, seconds: float, *, predictive: bool = True):
        _positive("seconds", seconds, integer=False)
        self.seconds = seconds
        self.predictive = predictive

    def progress(self, algorithm) -> float:
        return min(1.0, algorithm.elapsed_s / self.seconds)

    def has_terminated(self, algorithm) -> bool:
        last = algorithm.history[-1].get("seconds", 0.0) if algorithm.history else 0.0
        margin = last if self.predictive else 0.0
        return algorithm.elapsed_s + margin >= self.seconds


class PlateauTermination(Termination):
    """Stop when ``metric`` of the history has not improved by ``min_delta`` for
    ``patience`` generations: ``"hypervolume"`` of the Pareto archive, or ``"fitness"``
    (the best weighted fitness, or the primary objective in Pareto mode).

    Example:
        >>> from types import SimpleNamespace
        >>> history = [{"hypervolume": h} for h in (0.1, 0.5, 0.5, 0.5)]
        >>> PlateauTermination(patience=2).has_terminated(SimpleNamespace(history=history))
        True
    """

    def __init__(self, patience: int = 5, *, min_delta: float = 1e-4, metric: str = "hypervolume"):
        _positive("patience", patience)
        if metric not in ("hypervolume", "fitness"):
            raise ConfigError(f"metric must be 'hypervolume' or 'fitness', got {metric!r}")
        self.patience = patience
        self.min_delta = min_delta
        self.metric = metric

    def progress(self, algorithm) -> float:
        best, stale = -math.inf, 0
        for record in algorithm.history:
            value = record.get(self.metric, -math.inf)
            if value > best + self.min_delta:
                best, stale = value, 0
            else:
                stale += 1
        return min(1.0, stale / self.patience)


class AnyTermination(Termination):
    """Stop when any of ``terminations`` says so; progress is the furthest one's."""

    def __init__(self, terminations):
        if not terminations or not all(isinstance(t, Termination) for t in terminations):
            raise ConfigError("terminations must be a non-empty list of Termination objects")
        self.terminations = tuple(terminations)

    def progress(self, algorithm) -> float:
        return max(t.progress(algorithm) for t in self.terminations)

    def has_terminated(self, algorithm) -> bool:
        return any(t.has_terminated(algorithm) for t in self.terminations)
