"""The outcome of a search."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from evolve.candidate import Candidate

__all__ = ["SearchResult"]


@dataclass
class SearchResult:
    """What :func:`evolve.fit` returns.

    Attributes:
        best: the best candidate (highest weighted fitness, or best primary objective in
            Pareto mode); ``best.model`` is the trained ``nn.Module``, ``best.scores`` its
            validation scores.
        pareto: the non-dominated candidates over the whole search, sorted by the primary
            objective, best first.
        history: one record per generation (best and median scores, hypervolume, front
            size, failures, timings).
        candidates: the log record of every candidate (including failed and culled ones).
        objectives: the objective names, primary first.
        run_dir: where the run was checkpointed, or ``None``.
        seed: the search seed.
    """

    best: Candidate | None
    pareto: list[Candidate]
    history: list[dict]
    candidates: list[dict] = field(default_factory=list)
    objectives: tuple[str, ...] = ()
    run_dir: Path | None = None
    seed: int = 0

    @property
    def n_generations(self) -> int:
        """Generations completed (the initial population's included)."""
        return len(self.history)

    def summary(self) -> str:
        """The Pareto front as a small text table."""
        lines = ["id  " + "  ".join(f"{n:>12}" for n in self.objectives)]
        for c in self.pareto:
            lines.append(
                f"{c.id:<3} "
                + "  ".join(f"{c.scores.get(n, float('nan')):>12.6g}" for n in self.objectives)
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"SearchResult({self.n_generations} generations, {len(self.candidates)} candidates, "
            f"front of {len(self.pareto)}, best={self.best!r})"
        )
