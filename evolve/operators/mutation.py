"""The mutation template and its combinators.

``Mutation.do`` holds the shared logic (pymoo's template method): copy the parent,
decide by ``prob``, seed torch from the search's generator (so new weights are
reproducible), wrap a solver refusal into :class:`~evolve.errors.CandidateFailedError`,
and record what was done. Subclasses write only ``_do(child, rng)``, which edits the
child in place and returns a one-line description, or ``None`` when there was nothing it
could do (no such layer, all choices exhausted): that is not a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

import mutnas as mn
from evolve.candidate import Candidate
from evolve.errors import CandidateFailedError, ConfigError

__all__ = ["ChooseMutation", "Mutation", "SequenceMutation", "guarded"]

log = logging.getLogger(__name__)


def _check_prob(prob: float) -> None:
    if not (isinstance(prob, int | float) and 0.0 <= prob <= 1.0):
        raise ConfigError(f"prob must be a probability in [0, 1], got {prob!r}")


def guarded(operator: object, child: Candidate, run, rng: np.random.Generator) -> str | None:
    """Run ``run()`` with torch seeded from ``rng``; a refusal becomes a candidate failure.

    The description ``run`` returns is appended to ``child.mutations``.
    """
    seed = int(rng.integers(2**62))
    name = type(operator).__name__
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            description = run()
    except CandidateFailedError:
        raise
    except mn.MutnasError as err:
        raise CandidateFailedError(f"{name} refused: {err}") from err
    except Exception as err:  # a bug or an unexpected model must not stop the search
        log.warning("%s raised %r", name, err, exc_info=True)
        raise CandidateFailedError(f"{name} failed: {type(err).__name__}: {err}") from err
    if description:
        child.mutations.append(description)
    return description


class Mutation:
    """Base class of every mutation.

    Args:
        prob: chance that the mutation is applied when ``do`` is called.

    Example:
        >>> import numpy as np
        >>> from evolve.operators.hparam_mutations import LearningRateMutation
        >>> from evolve.candidate import Candidate
        >>> parent = Candidate(0, None)
        >>> child = LearningRateMutation(prob=1.0).do(parent, np.random.default_rng(0))
        >>> child.parents, child.hparams.lr != parent.hparams.lr, child.mutations[0][:8]
        ((0,), True, 'lr 0.01 ')
    """

    #: whether ``_do`` changes the model (the template then verifies that it still runs)
    touches_model = True

    def __init__(self, *, prob: float = 1.0):
        _check_prob(prob)
        self.prob = prob

    def do(self, parent: Candidate, rng: np.random.Generator, *, copy: bool = True) -> Candidate:
        """A mutated child of ``parent`` (``parent`` itself is untouched when ``copy``).

        Raises:
            CandidateFailedError: the solver or the adapter refused the mutation.
        """
        child = parent.spawn() if copy else parent
        if rng.random() < self.prob:
            self.apply(child, rng)
        return child

    def apply(self, child: Candidate, rng: np.random.Generator) -> str | None:
        """Apply unconditionally, in place; returns the description (or ``None``)."""

        def run() -> str | None:
            description = self._do(child, rng)
            if description and self.touches_model and child.model is not None:
                child.model.verify()
            return description

        return guarded(self, child, run, rng)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob})"


class SequenceMutation(Mutation):
    """Apply each mutation in turn, each with its own ``prob`` (one copy for all).

    Example:
        >>> import numpy as np
        >>> from evolve.operators.hparam_mutations import BatchSizeMutation, LearningRateMutation
        >>> from evolve.candidate import Candidate
        >>> m = SequenceMutation([LearningRateMutation(), BatchSizeMutation()])
        >>> len(m.do(Candidate(0, None), np.random.default_rng(0)).mutations)
        2
    """

    def __init__(self, mutations: Sequence[Mutation], *, prob: float = 1.0):
        super().__init__(prob=prob)
        if not mutations or not all(isinstance(m, Mutation) for m in mutations):
            raise ConfigError("mutations must be a non-empty list of Mutation objects")
        self.mutations = tuple(mutations)
        self.touches_model = any(m.touches_model for m in self.mutations)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        for mutation in self.mutations:
            mutation.do(child, rng, copy=False)
        return None


class ChooseMutation(Mutation):
    """Apply ``n`` mutations drawn (without replacement) by ``weights``; one that has
    nothing to do passes its turn to another.

    Example:
        >>> import numpy as np
        >>> from evolve.operators.hparam_mutations import BatchSizeMutation, LearningRateMutation
        >>> from evolve.candidate import Candidate
        >>> m = ChooseMutation([LearningRateMutation(), BatchSizeMutation()], weights=[1, 0])
        >>> m.do(Candidate(0, None), np.random.default_rng(0)).mutations[0].startswith("lr")
        True
    """

    def __init__(
        self,
        mutations: Sequence[Mutation],
        *,
        weights: Sequence[float] | None = None,
        n: int = 1,
        prob: float = 1.0,
    ):
        super().__init__(prob=prob)
        if not mutations or not all(isinstance(m, Mutation) for m in mutations):
            raise ConfigError("mutations must be a non-empty list of Mutation objects")
        if weights is not None and (
            len(weights) != len(mutations) or min(weights) < 0 or sum(weights) <= 0
        ):
            raise ConfigError("weights must give one non-negative number per mutation, sum > 0")
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        self.mutations = tuple(mutations)
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.n = n
        self.touches_model = any(m.touches_model for m in self.mutations)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        w = np.ones(len(self.mutations)) if self.weights is None else np.array(self.weights)
        applied = 0
        while applied < self.n and w.sum() > 0:
            k = int(rng.choice(len(w), p=w / w.sum()))
            w[k] = 0.0
            if self.mutations[k].apply(child, rng) is not None:
                applied += 1
        return None
