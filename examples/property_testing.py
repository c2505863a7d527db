"""Property-test your own mutation operator with mutnas' Hypothesis strategies.

``widen_narrowest`` below is a user's operator: it widens the narrowest layer by half.
Hypothesis draws hundreds of random graphs (residual adds, concats, grouped layers,
``multiple_of`` constraints...) and checks, for each, that the operator either leaves a
consistent graph with a change record that lines up, or refuses with a SizeError and
changes nothing.

Run:  python examples/property_testing.py [--quick]
(or put the test function in your test suite and run it with pytest)
"""

from __future__ import annotations

import argparse

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mutnas as mn
from mutnas.testing import check_change, check_consistent
from mutnas.testing.strategies import graphs, utilities


def widen_narrowest(graph: mn.Graph, utility=None) -> mn.Change:
    """The operator under test: grow the narrowest layer by 50 % (at least one neuron)."""
    layers = [v for v in graph.vertices if v.kind == "absorb" and not v.fixed]
    if not layers:
        raise mn.SizeError("no layer to widen")
    narrowest = min(layers, key=lambda v: (v.nout, v.name))
    return graph.resize(narrowest, max(1, narrowest.nout // 2), relaxed=True, utility=utility)


def check_operator(graph: mn.Graph, utility) -> None:
    before, snapshot = graph.sizes(), graph.copy()
    layers = [v for v in graph.vertices if v.kind == "absorb" and not v.fixed]
    narrowest = min(layers, key=lambda v: (v.nout, v.name)).name if layers else None
    try:
        change = widen_narrowest(graph, utility)
    except mn.SizeError:
        assert graph == snapshot, "a refused mutation must change nothing"
        return
    check_consistent(graph)  # every add aligned, every concat the sum of its inputs
    check_change(before, graph, change)  # index maps line up with the new sizes
    assert graph[narrowest].nout > before[narrowest], "it must grow"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples (CI)")
    args = parser.parse_args(argv)
    examples = 50 if args.quick else 500

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(graphs(max_vertices=10), st.data())
    def test_widen_narrowest(graph, data):
        check_operator(graph, data.draw(utilities(graph)))

    test_widen_narrowest()
    print(f"widen_narrowest held on {examples} random graphs")


if __name__ == "__main__":
    main()
