"""No sequence of mutations ever breaks a graph, and a refused mutation changes nothing.

A Hypothesis state machine keeps a bundle of vertex names and has one rule per mutation
kind. Its graphs include fixed vertices and declared outputs. After every attempted
mutation: the graph is consistent (``check_consistent``), the change record lines up with
it and no fixed vertex moved a neuron (``check_change``), and a refused mutation
(``SizeError``, ``GraphError``) left the graph exactly as it was (``graph == copy`` and the
edge order). Across the whole sequence every fixed vertex keeps its first size.

``test_core_state_machine`` runs at least 5,000 mutations in CI. ``run_machine`` is also
used by ``benchmarks/solver.py --stateful N`` for the long run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import mutnas as mn
from mutnas.testing import check_change, check_consistent
from mutnas.testing.strategies import graphs, mutations, utilities

MIN_MUTATIONS = 5_000
STEPS = 50
MAX_TOTAL = 96  # keep sizes small: concat chains double quickly


def graph_state(graph: mn.Graph) -> tuple:
    """Everything a failed mutation must leave untouched (see tests/conftest.py)."""
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
            )
            for v in graph._vertices.values()
        ),
        tuple(v.name for v in graph._outputs),
        graph._counter,
    )


class CoreMachine(RuleBasedStateMachine):
    """Random mutation sequences on random graphs; counts kept on the class."""

    counts: ClassVar[Counter] = Counter()
    vertices = Bundle("vertices")

    @initialize(
        target=vertices,
        graph=st.integers(1, 2).flatmap(
            lambda n: graphs(max_vertices=10, n_inputs=n, max_total=MAX_TOTAL)
        ),
    )
    def start(self, graph):
        self.graph = graph
        self.fixed = {v.name: v.nout for v in graph.vertices if v.fixed}
        self.counts["graphs"] += 1
        self.counts["graphs with a fixed vertex"] += any(
            v.fixed and v.kind != "input" for v in graph.vertices
        )
        self.counts["graphs with declared outputs"] += bool(graph._outputs)
        return multiple(*[v.name for v in graph.vertices])

    # ------------------------------------------------------------ the one place that mutates
    def attempt(self, kind: str, mutation: Callable[[mn.Graph], mn.Change]) -> mn.Change | None:
        graph = self.graph
        copy, before, snapshot = graph.copy(), graph.sizes(), graph_state(graph)
        self.counts["attempted"] += 1
        try:
            change = mutation(graph)
        except (mn.SizeError, mn.GraphError) as err:
            assert not str(err).startswith("internal error"), str(err)
            assert graph == copy, f"refused {kind} changed the graph: {err}"
            assert graph_state(graph) == snapshot, f"refused {kind} changed edge order: {err}"
            self.counts["refused"] += 1
            self.counts[f"refused {kind}"] += 1
            return None
        check_consistent(graph)
        check_change(before, graph, change)
        assert max(graph.sizes().values()) < 10 * MAX_TOTAL
        self.counts["applied"] += 1
        self.counts[f"applied {kind}"] += 1
        return change

    def live(self, *names: str) -> bool:
        """Bundle names can be stale (removed vertices): skip such a step."""
        ok = all(name in self.graph for name in names)
        if not ok:
            self.counts["stale"] += 1
        return ok

    def small_enough(self, extra: int = 0) -> bool:
        return max(self.graph.sizes().values()) + extra <= MAX_TOTAL

    # ------------------------------------------------------------ one rule per mutation kind
    @rule(name=vertices, delta=st.integers(-4, 4), relaxed=st.booleans())
    def resize(self, name, delta, relaxed):
        if self.live(name) and self.small_enough(4):
            self.attempt("resize", lambda g: g.resize(name, delta, relaxed=relaxed))

    @rule(
        names=st.lists(vertices, min_size=1, max_size=3, unique=True),
        deltas=st.lists(st.integers(-3, 3), min_size=3, max_size=3),
        relaxed=st.booleans(),
    )
    def resize_many(self, names, deltas, relaxed):
        if self.live(*names) and self.small_enough(3):
            request = dict(zip(names, deltas, strict=False))
            self.attempt("resize_many", lambda g: g.resize(request, relaxed=relaxed))

    @rule(name=vertices, data=st.data())
    def resize_inputs(self, name, data):
        if not self.live(name) or not self.small_enough(3):
            return
        n = len(self.graph[name].inputs)
        deltas = data.draw(st.lists(st.none() | st.integers(-3, 3), min_size=n, max_size=n))
        relaxed = data.draw(st.booleans())
        self.attempt("resize_inputs", lambda g: g.resize_inputs(name, deltas, relaxed=relaxed))

    @rule(data=st.data())
    def prune(self, data):
        utility = data.draw(utilities(self.graph, signed=True))
        names = [v.name for v in self.graph.vertices]
        subset = data.draw(st.none() | st.lists(st.sampled_from(names), min_size=1, max_size=3))
        self.attempt("prune", lambda g: g.prune(utility=utility, vertices=subset))

    @rule(
        target=vertices,
        name=vertices,
        kind=st.sampled_from(["absorb", "invariant"]),
        nout=st.none() | st.integers(1, 8),
        options=st.sampled_from([{}, {}, {"multiple_of": 2}, {"min_nout": 2}]),
    )
    def insert_after(self, name, kind, nout, options):
        if not self.live(name):
            return multiple()
        if kind != "absorb":
            nout, options = None, {}
        if nout is not None and options.get("multiple_of"):
            nout = 2 * max(1, nout // 2)
        change = self.attempt(
            "insert_after", lambda g: g.insert_after(name, kind, nout=nout, **options)
        )
        return multiple(*change.added) if change else multiple()

    @rule(name=consumes(vertices))
    def remove(self, name):
        if self.live(name):
            self.attempt("remove", lambda g: g.remove(name))

    @rule(src=vertices, dst=vertices, data=st.data())
    def connect(self, src, dst, data):
        if not self.live(src, dst):
            return
        target = self.graph[dst]
        if target.kind == "concat" and not self.small_enough(self.graph[src].nout):
            return
        position = data.draw(st.none() | st.integers(0, len(target.inputs)))
        self.attempt("connect", lambda g: g.connect(src, dst, position))

    @rule(dst=vertices, data=st.data())
    def disconnect(self, dst, data):
        if not self.live(dst) or not self.graph[dst].inputs:
            return
        src = data.draw(st.sampled_from([u.name for u in self.graph[dst].inputs]))
        self.attempt("disconnect", lambda g: g.disconnect(src, dst))

    @rule(data=st.data())
    def drawn_mutation(self, data):
        """Any mutation from mutnas.testing.strategies.mutations (all kinds, any vertex)."""
        if not self.small_enough(8):
            return
        mutation = data.draw(mutations(self.graph))
        self.attempt(f"drawn {mutation.kind}", mutation.apply)

    # ------------------------------------------------------------ after every step
    @invariant()
    def consistent(self):
        if hasattr(self, "graph"):
            check_consistent(self.graph)
            assert all(v.graph is self.graph for v in self.graph.vertices)

    @invariant()
    def fixed_vertices_keep_their_size(self):
        if hasattr(self, "graph"):
            moved = {
                name: (n, self.graph[name].nout)
                for name, n in self.fixed.items()
                if name in self.graph and self.graph[name].nout != n
            }
            assert not moved, f"fixed vertices changed size (before, after): {moved}"

    @invariant()
    def round_trips(self):
        if hasattr(self, "graph") and self.counts["attempted"] % 25 == 0:
            assert mn.graph_from_json(self.graph.to_json()) == self.graph


def run_machine(n_examples: int, *, steps: int = STEPS) -> tuple[Counter, float]:
    """Run ``n_examples`` random sequences of up to ``steps`` steps; return counts, seconds."""
    CoreMachine.counts = Counter()
    start = time.perf_counter()
    run_state_machine_as_test(
        CoreMachine,
        settings=settings(
            max_examples=n_examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    return Counter(CoreMachine.counts), time.perf_counter() - start


def test_core_state_machine():
    counts, _ = run_machine(200)
    while counts["attempted"] < MIN_MUTATIONS:  # rare: short sequences were drawn
        more, _ = run_machine(40)
        counts.update(more)
    assert counts["attempted"] >= MIN_MUTATIONS
    assert counts["applied"] + counts["refused"] == counts["attempted"]
    assert counts["applied"] > counts["attempted"] // 3
    for kind in ("resize", "prune", "insert_after", "remove", "connect", "disconnect"):
        assert counts[f"applied {kind}"] > 0, kind
    assert counts["graphs with a fixed vertex"] >= counts["graphs"] // 10
    assert counts["graphs with declared outputs"] >= counts["graphs"] // 10


if __name__ == "__main__":
    counts, seconds = run_machine(20)
    print(dict(sorted(counts.items())), f"{seconds:.1f} s")
