"""Callbacks: hooks into the search loop (progress bars, plots, your own code)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from evolve.errors import ConfigError

__all__ = ["Callback", "CallbackList", "PlotCallback", "ProgressBarCallback"]


class Callback:
    """Base class; override any hook. Each receives the running algorithm.

    Example:
        >>> class Count(Callback):
        ...     def __init__(self):
        ...         self.n = 0
        ...     def on_candidate_end(self, algorithm, candidate):
        ...         self.n += 1
        >>> Count().n
        0
    """

    def on_search_start(self, algorithm) -> None:
        """Before the first generation (also after a resume)."""

    def on_generation_start(self, algorithm) -> None:
        """Before a generation's candidates are created."""

    def on_candidate_end(self, algorithm, candidate) -> None:
        """When a candidate's outcome is final (ok, failed or culled)."""

    def on_generation_end(self, algorithm) -> None:
        """After survival selection, the history record and the checkpoint."""

    def on_search_end(self, algorithm) -> None:
        """After the last generation."""


class CallbackList(Callback):
    """Several callbacks called in order."""

    def __init__(self, callbacks: Sequence[Callback] = ()):
        bad = [c for c in callbacks if not isinstance(c, Callback)]
        if bad:
            raise ConfigError(f"callbacks must be Callback objects, got {bad!r}")
        self.callbacks = tuple(callbacks)

    def on_search_start(self, algorithm) -> None:
        for c in self.callbacks:
            c.on_search_start(algorithm)

    def on_generation_start(self, algorithm) -> None:
        for c in self.callbacks:
            c.on_generation_start(algorithm)

    def on_candidate_end(self, algorithm, candidate) -> None:
        for c in self.callbacks:
            c.on_candidate_end(algorithm, candidate)

    def on_generation_end(self, algorithm) -> None:
        for c in self.callbacks:
            c.on_generation_end(algorithm)

    def on_search_end(self, algorithm) -> None:
        for c in self.callbacks:
            c.on_search_end(algorithm)


class ProgressBarCallback(Callback):
    """tqdm bars: overall progress (from the termination) and the generation's candidates.

    Args:
        enabled: ``None`` shows the bars only when stderr is a terminal.
    """

    def __init__(self, enabled: bool | None = None):
        self.enabled = enabled
        self._outer = self._inner = None

    def _on(self) -> bool:
        return sys.stderr.isatty() if self.enabled is None else bool(self.enabled)

    def on_search_start(self, algorithm) -> None:
        from tqdm.auto import tqdm

        self._outer = tqdm(total=100, desc="search", unit="%", disable=not self._on())
        self._outer.update(round(100 * algorithm.progress()))

    def on_generation_start(self, algorithm) -> None:
        from tqdm.auto import tqdm

        self._inner = tqdm(
            desc=f"gen {algorithm.generation}", unit="cand", leave=False, disable=not self._on()
        )

    def on_candidate_end(self, algorithm, candidate) -> None:
        if self._inner is not None:
            self._inner.update(1)

    def on_generation_end(self, algorithm) -> None:
        if self._inner is not None:
            self._inner.close()
        if self._outer is not None:
            self._outer.update(round(100 * algorithm.progress()) - self._outer.n)

    def on_search_end(self, algorithm) -> None:
        if self._outer is not None:
            self._outer.close()


class PlotCallback(Callback):
    """Save ``history.png`` and ``pareto.png`` in the run directory every ``every``
    generations (they are always saved at the end of a run with a run directory)."""

    def __init__(self, every: int = 1):
        if not isinstance(every, int) or every < 1:
            raise ConfigError(f"every must be a positive integer, got {every!r}")
        self.every = every

    def on_generation_end(self, algorithm) -> None:
        if algorithm.run_dir is not None and algorithm.generation % self.every == 0:
            from evolve.plots import save_plots

            save_plots(algorithm.result(), algorithm.run_dir)
