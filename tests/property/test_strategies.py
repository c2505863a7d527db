"""The shipped Hypothesis strategies draw what their docstrings promise."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mutnas as mn
from mutnas.testing import check_change, check_consistent
from mutnas.testing.strategies import graphs, mutations

SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@SETTINGS
@given(graph=graphs(), data=st.data())
def test_drawn_mutations_are_valid_graph_operations(graph, data):
    """Regression: connect drew self-loops and cycles (19 of 600 draws raised GraphError)."""
    mutation = data.draw(mutations(graph))
    before = graph.sizes()
    try:
        change = mutation.apply(graph)
    except mn.SizeError:  # infeasible sizes: the only refusal the docstring allows
        return
    check_consistent(graph)
    check_change(before, graph, change)


def test_graphs_draw_fixed_vertices_and_declared_outputs():
    seen = {"fixed": 0, "outputs": 0, "graphs": 0}

    @SETTINGS
    @given(graph=graphs())
    def draw(graph):
        seen["graphs"] += 1
        seen["fixed"] += any(v.fixed and v.kind != "input" for v in graph.vertices)
        seen["outputs"] += bool(graph._outputs)

    draw()
    # each in at least a tenth of the graphs (observed: about 60 % and 25-40 %)
    assert min(seen["fixed"], seen["outputs"]) >= seen["graphs"] // 10, seen


def test_fixed_vertices_and_outputs_can_be_turned_off():
    @SETTINGS
    @given(graph=graphs(fixed=False, outputs=False))
    def draw(graph):
        assert not any(v.fixed and v.kind != "input" for v in graph.vertices)
        assert not graph._outputs

    draw()
