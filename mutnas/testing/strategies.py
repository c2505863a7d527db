"""Hypothesis strategies for mutnas graphs and mutations.

Use them to property-test your own mutation operators or adapters::

    from hypothesis import given
    from mutnas.testing.strategies import graphs, mutations

    @given(graphs(max_vertices=10), st.data())
    def test_my_operator(graph, data):
        mutation = data.draw(mutations(graph))
        ...

Every strategy is keyword-only, bounded, and validates its arguments eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

from mutnas.change import Change
from mutnas.graph import Graph
from mutnas.vertex import ABSORB, ADD, CONCAT, INPUT, INVARIANT

__all__ = ["Mutation", "graphs", "mutations", "utilities"]

_KINDS = (ABSORB, INVARIANT, ADD, CONCAT)
MUTATION_KINDS = (
    "resize",
    "resize_many",
    "resize_inputs",
    "prune",
    "insert_after",
    "remove",
    "connect",
    "disconnect",
)


def _check_bounds(**bounds: tuple[int, int]) -> None:
    for name, (value, lowest) in bounds.items():
        if not isinstance(value, int) or value < lowest:
            raise ValueError(f"{name} must be an int >= {lowest}, got {value!r}")


@st.composite
def graphs(
    draw,
    *,
    min_vertices: int = 2,
    max_vertices: int = 12,
    max_nout: int = 8,
    max_total: int = 64,
    n_inputs: int = 1,
    kinds: tuple[str, ...] = _KINDS,
    constraints: bool = True,
    fixed: bool = True,
    outputs: bool = True,
) -> Graph:
    """Random DAGs mixing absorb, invariant, add and concat vertices.

    Args:
        min_vertices / max_vertices: number of non-input vertices.
        max_nout: largest size of an absorb vertex or input.
        max_total: largest size any vertex may reach (bounds concat growth).
        n_inputs: number of input vertices.
        kinds: vertex kinds to draw from.
        constraints: sometimes add ``multiple_of``, ``min_nout`` or ``groups``.
        fixed: sometimes make a vertex ``fixed`` (its neurons may never change), as an
            adapter pins a graph output or a layer it cannot follow.
        outputs: sometimes declare some sinks as the graph outputs (``set_outputs``).

    Example:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5, database=None)
        ... @given(graphs(max_vertices=5))
        ... def test(g):
        ...     g.check()
        >>> test()
    """
    _check_bounds(
        min_vertices=(min_vertices, 1),
        max_vertices=(max_vertices, min_vertices),
        max_nout=(max_nout, 1),
        max_total=(max_total, max_nout),
        n_inputs=(n_inputs, 1),
    )
    unknown = set(kinds) - set(_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {_KINDS}, got {kinds!r}")
    g = Graph()
    for i in range(n_inputs):
        g.input(draw(st.integers(1, max_nout)), name=f"in{i}")
    n = draw(st.integers(min_vertices, max_vertices))
    for i in range(n):
        vs = g.vertices
        kind = draw(st.sampled_from(kinds))
        name = f"v{i}"
        first = draw(st.sampled_from(vs))
        pin = {"fixed": True} if fixed and draw(st.integers(0, 9)) == 0 else {}
        if kind == ABSORB:
            _draw_absorb(draw, g, first, name, max_nout, constraints, pin)
        elif kind == INVARIANT:
            g.invariant(first, name=name, **pin)
        elif kind == ADD:
            same = [v for v in vs if v.nout == first.nout]
            others = draw(st.lists(st.sampled_from(same), max_size=2))
            g.add(first, *others, name=name, **pin)
        else:
            others = draw(st.lists(st.sampled_from(vs), max_size=2))
            if first.nout + sum(v.nout for v in others) > max_total:
                others = []
            g.concat(first, *others, name=name, **pin)
    sinks = [v for v in g.vertices if not v.outputs and v.kind != INPUT]
    if outputs and sinks and draw(st.booleans()):
        g.set_outputs(*draw(st.lists(st.sampled_from(sinks), min_size=1, unique=True)))
    return g


def _draw_absorb(
    draw, g: Graph, first, name: str, max_nout: int, constraints: bool, pin: dict
) -> None:
    nout = draw(st.integers(1, max_nout))
    options: dict[str, Any] = dict(pin)
    if constraints:
        choice = draw(st.sampled_from(["none", "none", "none", "multiple", "min", "groups"]))
        if choice == "multiple":
            options["multiple_of"] = 2
            nout = 2 * max(1, nout // 2)
        elif choice == "min":
            options["min_nout"] = min(nout, 2)
        elif choice == "groups":
            divisors = [d for d in (2, 3, 4) if first.nout % d == 0 and first.kind != INPUT]
            if divisors:
                groups = draw(st.sampled_from(divisors))
                options["groups"] = groups
                nout = groups * max(1, nout // groups)
    g.absorb(first, nout=nout, name=name, **options)


def utilities(graph: Graph, *, signed: bool = False) -> st.SearchStrategy[dict[str, np.ndarray]]:
    """Random per-neuron utilities for every absorb vertex of ``graph``.

    Args:
        graph: the graph whose vertices get values.
        signed: allow negative values (so pruning removes neurons).
    """
    lo = -1.0 if signed else 0.0
    values = st.floats(lo, 1.0, allow_nan=False, allow_infinity=False, width=32)
    names = [v for v in graph.vertices if v.kind == ABSORB]
    return st.fixed_dictionaries(
        {v.name: st.lists(values, min_size=v.nout, max_size=v.nout).map(np.array) for v in names}
    )


def _descendants(v) -> set[str]:
    """``v`` and every vertex its output reaches."""
    seen, stack = set(), [v]
    while stack:
        u = stack.pop()
        if u.name not in seen:
            seen.add(u.name)
            stack.extend(u.outputs)
    return seen


@dataclass
class Mutation:
    """A drawn mutation: ``kind`` and its arguments; ``apply(graph)`` runs it."""

    kind: str
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def apply(self, graph: Graph) -> Change:
        method = "resize" if self.kind == "resize_many" else self.kind
        return getattr(graph, method)(*self.args, **self.kwargs)

    def __repr__(self) -> str:
        args = ", ".join([repr(a) for a in self.args] + [f"{k}=..." for k in self.kwargs])
        return f"{self.kind}({args})"


@st.composite
def mutations(
    draw, graph: Graph, *, kinds: tuple[str, ...] = MUTATION_KINDS, max_delta: int = 4
) -> Mutation:
    """One random mutation of ``graph``: a valid graph operation, which may still be
    infeasible for the sizes (then applying it raises :class:`~mutnas.SizeError`, never
    :class:`~mutnas.GraphError`).

    Args:
        graph: the graph the mutation will be applied to.
        kinds: mutation kinds to draw from (see ``MUTATION_KINDS``).
        max_delta: largest size change drawn.
    """
    unknown = set(kinds) - set(MUTATION_KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {MUTATION_KINDS}, got {kinds!r}")
    _check_bounds(max_delta=(max_delta, 1))
    kind = draw(st.sampled_from(kinds))
    vs = [v for v in graph.vertices if v.kind != INPUT]
    if not vs:
        kind = "prune"
    deltas = st.integers(-max_delta, max_delta)
    relaxed = st.booleans()
    if kind == "resize":
        v = draw(st.sampled_from(vs))
        return Mutation(kind, (v.name, draw(deltas)), {"relaxed": draw(relaxed)})
    if kind == "resize_many":
        picked = draw(st.lists(st.sampled_from(vs), min_size=1, max_size=3, unique=True))
        request = {v.name: draw(deltas) for v in picked}
        return Mutation(kind, (request,), {"relaxed": draw(relaxed)})
    if kind == "resize_inputs":
        v = draw(st.sampled_from(vs))
        ds = [draw(st.none() | deltas) for _ in v.inputs]
        return Mutation(kind, (v.name, ds), {"relaxed": draw(relaxed)})
    if kind == "prune":
        return Mutation(kind, (), {"utility": draw(utilities(graph, signed=True))})
    if kind == "insert_after":
        v = draw(st.sampled_from(graph.vertices))
        new_kind = draw(st.sampled_from([ABSORB, INVARIANT]))
        nout = draw(st.none() | st.integers(1, 8)) if new_kind == ABSORB else None
        return Mutation(kind, (v.name, new_kind), {"nout": nout})
    if kind == "remove":
        single = [v for v in vs if len(v.inputs) == 1]
        if not single:
            return Mutation("prune", (), {})
        return Mutation(kind, (draw(st.sampled_from(single)).name,))
    merges = [v for v in vs if v.kind in (ADD, CONCAT)]
    if kind == "connect" and merges:
        dst = draw(st.sampled_from(merges))
        below = _descendants(dst)  # an edge from dst or below it would close a cycle
        sources = [v for v in graph.vertices if v.name not in below]
        if sources:
            src = draw(st.sampled_from(sources))
            position = draw(st.none() | st.integers(0, len(dst.inputs)))
            return Mutation(kind, (src.name, dst.name, position))
    multi = [v for v in merges if len(v.inputs) > 1]
    if kind == "disconnect" and multi:
        dst = draw(st.sampled_from(multi))
        src = draw(st.sampled_from(dst.inputs))
        return Mutation(kind, (src.name, dst.name))
    v = draw(st.sampled_from(vs))
    return Mutation("resize", (v.name, draw(deltas)), {"relaxed": True})
