"""Non-dominated sorting, crowding, hypervolume and preference ranks."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from evolve.pareto import (
    crowding_distance,
    dominates,
    hypervolume,
    non_dominated_sort,
    pareto_mask,
    preference_ranks,
)

matrices = st.integers(1, 12).flatmap(
    lambda n: st.integers(1, 3).flatmap(
        lambda m: arrays(np.float64, (n, m), elements=st.integers(0, 5).map(float))
    )
)


@settings(max_examples=60, deadline=None)
@given(F=matrices)
def test_fronts_match_brute_force(F):
    rank = non_dominated_sort(F)
    remaining = set(range(len(F)))
    level = 0
    while remaining:
        front = {i for i in remaining if not any(dominates(F[j], F[i]) for j in remaining)}
        assert {i for i in range(len(F)) if rank[i] == level} == front
        remaining -= front
        level += 1


@settings(max_examples=40, deadline=None)
@given(F=matrices)
def test_preference_ranks_are_a_permutation_respecting_fronts(F):
    ranks = preference_ranks(F)
    assert sorted(ranks) == list(range(len(F)))
    fronts = non_dominated_sort(F)
    for i, j in itertools.permutations(range(len(F)), 2):
        if fronts[i] < fronts[j]:
            assert ranks[i] < ranks[j]


def test_non_finite_rows_rank_last_and_leave_the_front():
    F = np.array([[np.inf, np.inf], [1.0, 1.0], [0.0, 2.0]])
    assert preference_ranks(F)[0] == 2
    assert pareto_mask(F).tolist() == [False, True, True]


def test_weighted_ranks_sort_by_weighted_sum():
    F = np.array([[1.0, 20.0], [2.0, 0.0], [0.0, 40.0]])
    assert preference_ranks(F, np.array([1.0, 0.1])).tolist() == [1, 0, 2]


def test_crowding_of_a_line():
    F = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(F)
    assert np.isinf(d[[0, 3]]).all()
    assert np.allclose(d[1:3], [1.5, 1.5])


def _box_union_volume(F, ref):
    """Inclusion-exclusion over the boxes [f, ref] (exact, for tiny sets)."""
    total = 0.0
    for k in range(1, len(F) + 1):
        for subset in itertools.combinations(F, k):
            corner = np.max(subset, axis=0)
            total += (-1) ** (k + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


@settings(max_examples=40, deadline=None)
@given(
    F=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 3)),
        elements=st.floats(0, 4, allow_nan=False),
    )
)
def test_hypervolume_equals_inclusion_exclusion(F):
    ref = np.full(F.shape[1], 5.0)
    assert np.isclose(hypervolume(F, ref), _box_union_volume(F, ref))


def test_hypervolume_ignores_points_beyond_the_reference():
    assert hypervolume(np.array([[6.0, 0.0]]), np.array([5.0, 5.0])) == 0.0
    assert hypervolume(np.empty((0, 2)), np.array([1.0, 1.0])) == 0.0
