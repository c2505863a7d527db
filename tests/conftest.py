"""Shared fixtures: apply a mutation with every consistency check, or check a refusal."""

from __future__ import annotations

import numpy as np
import pytest

import mutnas as mn
from mutnas.testing import check_change, check_consistent


def state(graph: mn.Graph) -> tuple:
    """Everything a failed mutation must leave untouched, including edge order on both ends."""
    return (
        tuple(
            (
                v.name,
                v.kind,
                v.nout,
                tuple(u.name for u in v.inputs),
                tuple(w.name for w in v.outputs),
                tuple(sorted(v.constraints().items())),
                None if v.utility is None else tuple(v.utility.tolist()),
                repr(v.meta),
            )
            for v in graph._vertices.values()
        ),
        tuple(v.name for v in graph._outputs),
        graph._counter,
    )


def _mutate(graph: mn.Graph, mutation, *args, **kwargs) -> mn.Change:
    """Apply ``mutation(graph, *args, **kwargs)``; check the graph and its change record."""
    before = graph.sizes()
    change = mutation(graph, *args, **kwargs)
    check_consistent(graph)
    check_change(before, graph, change)
    return change


def _refuse(graph: mn.Graph, mutation, *args, error=mn.SizeError, match=None, **kwargs):
    """Assert that the mutation raises ``error`` matching ``match``; the graph is untouched."""
    copy, snapshot = graph.copy(), state(graph)
    with pytest.raises(error, match=match) as info:
        mutation(graph, *args, **kwargs)
    assert graph == copy
    assert state(graph) == snapshot
    check_consistent(graph)
    return info.value


@pytest.fixture
def mutate():
    """``mutate(graph, mn.resize, "a", 2)``: apply, then check consistency and index maps."""
    return _mutate


@pytest.fixture
def refuse():
    """``refuse(graph, mn.resize, "a", 1, match=...)``: assert the error, graph untouched."""
    return _refuse


@pytest.fixture
def snapshot():
    """``snapshot(graph)``: a comparable record of everything a mutation could touch."""
    return state


@pytest.fixture
def ascending():
    """Utility ``1..nout`` for every vertex (NaiveNASlib's ``v -> 1:nout(v)``)."""
    return lambda v: np.arange(1.0, v.nout + 1.0)
