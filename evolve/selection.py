"""Selection: who breeds (tournament, random) and who survives (elitism, aging, NSGA-II).

Every selection has ``do(population, n, rng, objectives)`` (the template: validation,
skipping failed candidates) and writes ``_do``. Comparisons go through
:meth:`evolve.objectives.ObjectiveSet.ranks`: the weighted sum in scalarized mode, the
NSGA-II order (front, then crowding distance) in Pareto mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evolve.candidate import Candidate
from evolve.errors import ConfigError, EvolveError
from evolve.objectives import ObjectiveSet

__all__ = [
    "AgingSelection",
    "EliteSelection",
    "NSGA2Selection",
    "RandomSelection",
    "Selection",
    "TournamentSelection",
]


class Selection:
    """Base class of parent and survivor selections."""

    def do(
        self,
        population: Sequence[Candidate],
        n: int,
        rng: np.random.Generator,
        objectives: ObjectiveSet,
    ) -> list[Candidate]:
        """Pick ``n`` of the successfully evaluated candidates of ``population``.

        Raises:
            EvolveError: no candidate of the population succeeded.
        """
        if n < 0:
            raise ConfigError(f"cannot select {n} candidates")
        ok = [c for c in population if c.ok]
        if not ok and n:
            raise EvolveError(
                "no candidate was evaluated successfully, so none can be selected; "
                "see the failure reasons in the candidate log"
            )
        return self._do(ok, n, rng, objectives)

    def _do(self, ok, n, rng, objectives) -> list[Candidate]:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"


def _ranks(candidates: Sequence[Candidate], objectives: ObjectiveSet, pareto=None) -> np.ndarray:
    return objectives.ranks([c.scores for c in candidates], pareto=pareto)


class RandomSelection(Selection):
    """Uniform choice, with replacement (for parents)."""

    def _do(self, ok, n, rng, objectives) -> list[Candidate]:
        return [ok[int(i)] for i in rng.integers(len(ok), size=n)]


class TournamentSelection(Selection):
    """For each pick, draw ``size`` candidates at random; the best one wins (for parents).

    Example:
        >>> import numpy as np
        >>> from evolve.objectives import ObjectiveSet
        >>> pop = [Candidate(i, None, status="ok", scores={"accuracy": i / 10}) for i in range(5)]
        >>> won = TournamentSelection(size=5).do(pop, 2, np.random.default_rng(0),
        ...                                      ObjectiveSet(["accuracy"]))
        >>> [c.id for c in won]
        [4, 4]
    """

    def __init__(self, size: int = 2):
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"tournament size must be a positive integer, got {size!r}")
        self.size = size

    def _do(self, ok, n, rng, objectives) -> list[Candidate]:
        ranks = _ranks(ok, objectives)
        out = []
        for _ in range(n):
            entrants = rng.choice(len(ok), size=min(self.size, len(ok)), replace=False)
            out.append(ok[int(min(entrants, key=lambda i: ranks[i]))])
        return out


class EliteSelection(Selection):
    """Keep the ``n`` best (survivors): by weighted fitness, or NSGA-II order in Pareto mode.

    Example:
        >>> import numpy as np
        >>> from evolve.objectives import ObjectiveSet
        >>> pop = [Candidate(i, None, status="ok", scores={"accuracy": i / 10}) for i in range(5)]
        >>> [c.id for c in EliteSelection().do(pop, 2, np.random.default_rng(0),
        ...                                     ObjectiveSet(["accuracy"]))]
        [4, 3]
    """

    pareto: bool | None = None

    def _do(self, ok, n, rng, objectives) -> list[Candidate]:
        order = np.argsort(_ranks(ok, objectives, self.pareto), kind="stable")
        return [ok[int(i)] for i in order[:n]]


class NSGA2Selection(EliteSelection):
    """NSGA-II survival (Deb et al. 2002): non-dominated fronts, then crowding distance,
    even when the objectives carry weights."""

    pareto = True


class AgingSelection(Selection):
    """Regularized evolution's survival (Real et al. 2019): the ``n`` youngest live on,
    except for ``n_elite`` best ones kept whatever their age.

    Example:
        >>> import numpy as np
        >>> from evolve.objectives import ObjectiveSet
        >>> pop = [Candidate(i, None, status="ok", scores={"accuracy": 1 - i / 10}) for i in range(5)]
        >>> [c.id for c in AgingSelection(n_elite=1).do(pop, 3, np.random.default_rng(0),
        ...                                              ObjectiveSet(["accuracy"]))]
        [0, 4, 3]
    """

    def __init__(self, n_elite: int = 0):
        if not isinstance(n_elite, int) or n_elite < 0:
            raise ConfigError(f"n_elite must be a non-negative integer, got {n_elite!r}")
        self.n_elite = n_elite

    def _do(self, ok, n, rng, objectives) -> list[Candidate]:
        elite = EliteSelection()._do(ok, min(self.n_elite, n), rng, objectives)
        chosen = {c.id for c in elite}
        young = sorted((c for c in ok if c.id not in chosen), key=lambda c: -c.id)
        return elite + young[: n - len(elite)]
