"""Population bookkeeping: the Pareto archive, hypervolume scaling, per-generation records."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evolve.candidate import Candidate
from evolve.objectives import ObjectiveSet
from evolve.pareto import hypervolume, pareto_mask

__all__ = ["HypervolumeScale", "generation_record", "update_archive"]


def update_archive(
    archive: Sequence[Candidate], new: Sequence[Candidate], objectives: ObjectiveSet
) -> list[Candidate]:
    """The non-dominated candidates among ``archive`` and the successful ``new`` ones
    that keep every objective's bounds.

    Of candidates with identical scores only the oldest is kept.

    Example:
        >>> objs = ObjectiveSet(["accuracy", "parameters"])
        >>> a = Candidate(0, None, status="ok", scores={"accuracy": 0.9, "parameters": 10})
        >>> b = Candidate(1, None, status="ok", scores={"accuracy": 0.8, "parameters": 20})
        >>> [c.id for c in update_archive([a], [b], objs)]
        [0]
    """
    pool = list(archive) + [c for c in new if c.ok]
    if not pool:
        return []
    F = objectives.matrix([c.scores for c in pool])
    F[objectives.violation([c.scores for c in pool]) > 0] = np.inf  # outside the bounds
    keep, seen = [], set()
    for c, row, front in zip(pool, F, pareto_mask(F), strict=True):
        key = tuple(row)
        if front and key not in seen:
            seen.add(key)
            keep.append(c)
    return sorted(keep, key=lambda c: c.id)


class HypervolumeScale:
    """Fixed bounds that map each objective (minimization form) onto [0, 1].

    The ideal point comes from the objectives' declared best values; the reference from
    their declared references, else from the first generation (twice its worst value, or
    1.1 x a ``max_value`` budget), and then stays fixed so generations compare.

    Example:
        >>> objs = ObjectiveSet(["accuracy", "parameters"])
        >>> scale = HypervolumeScale.fit(objs, np.array([[-0.5, 100.0], [-0.7, 300.0]]))
        >>> scale.ideal.tolist(), scale.reference.tolist()
        ([-1.0, 0.0], [0.0, 600.0])
        >>> round(scale.hypervolume(np.array([[-0.5, 300.0]])), 3)
        0.25
    """

    def __init__(self, ideal: Sequence[float], reference: Sequence[float]):
        self.ideal = np.asarray(ideal, dtype=float)
        self.reference = np.asarray(reference, dtype=float)

    @classmethod
    def fit(cls, objectives: ObjectiveSet, F: np.ndarray) -> HypervolumeScale:
        """Bounds for ``objectives`` given the first generation's matrix ``F``."""
        finite = F[np.all(np.isfinite(F), axis=1)] if len(F) else F
        ideal, reference = [], []
        for j, (o, sign) in enumerate(zip(objectives.objectives, objectives.signs, strict=True)):
            column = finite[:, j] if len(finite) else np.array([0.0])
            best, ref = o.bounds
            lo = sign * best + 0.0 if best is not None else float(column.min())
            if ref is not None:
                hi = sign * ref + 0.0  # no negative zero
            elif o.direction == "min" and o.max_value is not None:
                hi = 1.1 * o.max_value
            else:
                worst = float(column.max())
                hi = worst + max(abs(worst - lo), abs(worst), 1e-12)
            ideal.append(lo)
            reference.append(max(hi, lo + 1e-12))
        return cls(ideal, reference)

    def hypervolume(self, F: np.ndarray) -> float:
        """Hypervolume of ``F`` in the unit box (0: nothing dominated, 1: the ideal point)."""
        if len(F) == 0:
            return 0.0
        scaled = (np.asarray(F, dtype=float) - self.ideal) / (self.reference - self.ideal)
        return hypervolume(scaled[np.all(np.isfinite(scaled), axis=1)], np.ones(len(self.ideal)))

    def to_dict(self) -> dict:
        """JSON form."""
        return {"ideal": self.ideal.tolist(), "reference": self.reference.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> HypervolumeScale:
        """Inverse of :meth:`to_dict`."""
        return cls(data["ideal"], data["reference"])


def _stats(candidates: Sequence[Candidate], objectives: ObjectiveSet, how) -> dict[str, float]:
    out = {}
    for name, o in zip(objectives.names, objectives.objectives, strict=True):
        values = [c.scores[name] for c in candidates if c.ok and name in c.scores]
        if values:
            out[name] = float(how(values, o.direction))
    return out


def _best(values, direction):
    return max(values) if direction == "max" else min(values)


def generation_record(
    generation: int,
    batch: Sequence[Candidate],
    population: Sequence[Candidate],
    archive: Sequence[Candidate],
    objectives: ObjectiveSet,
    hypervolume_value: float,
) -> dict:
    """One line of the search history (the timing fields are added by the algorithm)."""
    fitness = [objectives.fitness(c.scores) for c in population if c.ok]
    return {
        "generation": generation,
        "n_candidates": len(batch),
        "n_ok": sum(c.ok for c in batch),
        "n_failed": sum(c.status == "failed" for c in batch),
        "n_culled": sum(c.status == "culled" for c in batch),
        "best": _stats(population, objectives, _best),
        "median": _stats(batch, objectives, lambda v, d: np.median(v)),
        "fitness": max(fitness) if fitness else None,
        "hypervolume": hypervolume_value,
        "front_size": len(archive),
        "population": [c.id for c in population],
    }
