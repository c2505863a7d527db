"""Pareto machinery on objective matrices in *minimization* form.

Rows are candidates, columns objectives; a maximized objective enters negated (see
:meth:`evolve.objectives.ObjectiveSet.matrix`), a failed candidate as a row of ``inf``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "crowding_distance",
    "dominates",
    "hypervolume",
    "non_dominated_sort",
    "pareto_mask",
    "preference_ranks",
]


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere.

    Example:
        >>> dominates(np.array([1.0, 2.0]), np.array([1.0, 3.0]))
        True
    """
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(F: np.ndarray) -> np.ndarray:
    """Front index per row (0 = non-dominated), Deb's fast non-dominated sort.

    Example:
        >>> non_dominated_sort(np.array([[1.0, 4.0], [2.0, 2.0], [3.0, 3.0], [4.0, 1.0]])).tolist()
        [0, 0, 1, 0]
    """
    F = np.asarray(F, dtype=float)
    n = len(F)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    n_dominators = dom.sum(axis=0)
    rank = np.full(n, -1)
    front = np.flatnonzero(n_dominators == 0)
    level = 0
    while front.size:
        rank[front] = level
        n_dominators = n_dominators - dom[front].sum(axis=0)
        n_dominators[rank >= 0] = -1
        front = np.flatnonzero(n_dominators == 0)
        level += 1
    return rank


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front (extremes get ``inf``).

    Example:
        >>> crowding_distance(np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]])).tolist()
        [inf, 2.0, inf]
    """
    F = np.asarray(F, dtype=float)
    n, m = F.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        column = F[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0 and np.isfinite(span):
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def pareto_mask(F: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated, finite rows.

    Example:
        >>> pareto_mask(np.array([[1.0, 1.0], [2.0, 2.0], [np.inf, np.inf]])).tolist()
        [True, False, False]
    """
    F = np.asarray(F, dtype=float)
    finite = np.all(np.isfinite(F), axis=1)
    mask = np.zeros(len(F), dtype=bool)
    if finite.any():
        mask[np.flatnonzero(finite)] = non_dominated_sort(F[finite]) == 0
    return mask


def preference_ranks(
    F: np.ndarray, weights: np.ndarray | None = None, violation: np.ndarray | None = None
) -> np.ndarray:
    """Position of each row when sorted best first (0 = best); ties keep row order.

    With ``weights`` the order is by the weighted sum (lower is better in minimization
    form); without, by NSGA-II's (front, -crowding). Rows with a positive ``violation``
    (of a bound) come after every feasible row, least violation first (Deb's constraint
    domination); rows with any non-finite value come last.

    Example:
        >>> F = np.array([[3.0, 0.0], [1.0, 1.0], [2.0, 2.0], [np.inf, np.inf]])
        >>> preference_ranks(F).tolist(), preference_ranks(F, np.array([1.0, 0.0])).tolist()
        ([0, 1, 2, 3], [2, 0, 1, 3])
        >>> preference_ranks(F, violation=np.array([0.5, 0.0, 0.0, 0.0])).tolist()
        [2, 0, 1, 3]
    """
    F = np.asarray(F, dtype=float)
    n = len(F)
    violation = np.zeros(n) if violation is None else np.asarray(violation, dtype=float)
    finite = np.all(np.isfinite(F), axis=1)
    tier = np.where(finite, np.where(violation > 0, 1, 0), 2)
    primary = np.where(tier == 1, violation, 0.0)
    secondary = np.zeros(n)
    idx = np.flatnonzero(tier == 0)
    if weights is not None:
        primary[idx] = F[idx] @ np.asarray(weights, dtype=float)
    elif idx.size:
        fronts = non_dominated_sort(F[idx])
        primary[idx] = fronts
        for level in np.unique(fronts):
            members = idx[fronts == level]
            secondary[members] = -crowding_distance(F[members])
    order = np.lexsort((np.arange(n), secondary, primary, tier))
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(n)
    return ranks


def hypervolume(F: np.ndarray, reference: np.ndarray) -> float:
    """Volume dominated by the rows of ``F`` and bounded by ``reference`` (exact, by slicing).

    Cost grows as n^(m-1): meant for fronts of tens of points and a few objectives.

    Example:
        >>> hypervolume(np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([3.0, 3.0]))
        3.0
    """
    F = np.asarray(F, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if F.size == 0:
        return 0.0
    F = F[np.all(reference > F, axis=1)]
    if len(F) == 0:
        return 0.0
    if F.shape[1] == 1:
        return float(reference[0] - F[:, 0].min())
    F = F[np.argsort(F[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(F)):
        top = F[i + 1, -1] if i + 1 < len(F) else reference[-1]
        if top > F[i, -1]:
            volume += hypervolume(F[: i + 1, :-1], reference[:-1]) * (top - F[i, -1])
    return float(volume)
