"""The mutable computation graph: building, queries, copying and comparison.

Mutations (``resize``, ``prune``, ``insert_after``, ``remove``, ``connect``, ``disconnect``)
are methods here but are implemented in :mod:`mutnas.mutations`; each is solved as one
mixed-integer program and is transactional.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from mutnas.errors import GraphError, SizeError
from mutnas.validate import check_int, check_options, check_size, max_size
from mutnas.vertex import ABSORB, ADD, CONCAT, INPUT, INVARIANT, KINDS, Vertex

__all__ = ["Graph", "VertexLike"]

VertexLike = Vertex | str


class Graph:
    """A computation graph whose sizes can be mutated consistently.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(3, name="x")
        >>> a = g.absorb(x, nout=4, name="a")
        >>> r = g.invariant(a, name="r")
        >>> s = g.add(a, r, name="s")
        >>> c = g.concat(a, s, name="c")
        >>> g.set_outputs(c)
        >>> [(v.name, v.nout) for v in g.vertices]
        [('x', 3), ('a', 4), ('r', 4), ('s', 4), ('c', 8)]
        >>> change = g.resize("a", 2)
        >>> [(v.name, v.nout) for v in g.vertices]
        [('x', 3), ('a', 6), ('r', 6), ('s', 6), ('c', 12)]
        >>> change.outputs["a"].tolist()
        [0, 1, 2, 3, -1, -1]
    """

    def __init__(self) -> None:
        self._vertices: dict[str, Vertex] = {}
        self._outputs: list[Vertex] = []
        self._order: list[Vertex] | None = None
        self._counter = 0

    # ------------------------------------------------------------------ building
    def input(self, nout: int, *, name: str | None = None, meta: dict | None = None) -> Vertex:
        """Add an immutable graph input of size ``nout``.

        Every size given to a graph (``nout`` here and in :meth:`absorb`, the options
        ``min_nout``, ``max_nout``, ``multiple_of``, ``groups``) is an integer (Python or
        numpy; not ``bool``, ``float`` or ``str``) from 1 to :func:`mutnas.validate.max_size`;
        anything else is a :class:`GraphError` and the graph is unchanged.
        """
        return self._new(INPUT, [], nout, name, meta=meta)

    def absorb(
        self,
        *inputs: VertexLike,
        nout: int,
        name: str | None = None,
        groups: int = 1,
        **options: Any,
    ) -> Vertex:
        """Add a layer with weights: its output size is free, its input sizes follow inputs.

        Args:
            *inputs: one or more producers.
            nout: output size.
            name: unique name (generated when omitted).
            groups: aligned channel groups (grouped convolution); input and output sizes
                must be divisible by it and whole groups move together.
            **options: ``min_nout``, ``max_nout``, ``multiple_of``, ``fixed``, ``utility``,
                ``meta``.
        """
        if not inputs:
            raise GraphError(f"absorb vertex {name or ''!r} needs at least one input")
        ins = self._resolve_all(inputs)
        shown = name if name is not None else f"<new {ABSORB}>"
        nout = check_size(nout, shown)
        groups = check_int(groups, "groups", shown, minimum=1, maximum=max_size())
        if groups > 1:
            if len(ins) != 1:
                raise GraphError(f"grouped vertex {name!r} must have exactly one input")
            if ins[0].nout % groups or nout % groups:
                raise GraphError(
                    f"grouped vertex {name!r}: groups={groups} must divide nin={ins[0].nout} "
                    f"and nout={nout}"
                )
        return self._new(ABSORB, ins, nout, name, groups=groups, **options)

    def invariant(self, x: VertexLike, *, name: str | None = None, **options: Any) -> Vertex:
        """Add a size-invariant op (activation, norm, pooling): output aligned with ``x``."""
        (u,) = self._resolve_all([x])
        return self._new(INVARIANT, [u], u.nout, name, **options)

    def add(self, *inputs: VertexLike, name: str | None = None, **options: Any) -> Vertex:
        """Add an elementwise merge; all inputs must have the same size and stay aligned."""
        ins = self._resolve_all(inputs)
        if not ins:
            raise GraphError(f"add vertex {name or ''!r} needs at least one input")
        sizes = {u.nout for u in ins}
        if len(sizes) != 1:
            detail = ", ".join(f"{u.name!r}={u.nout}" for u in ins)
            raise GraphError(f"add vertex {name or ''!r}: input sizes differ ({detail})")
        return self._new(ADD, ins, ins[0].nout, name, **options)

    def concat(self, *inputs: VertexLike, name: str | None = None, **options: Any) -> Vertex:
        """Add a stacking of ``inputs`` in order: output size is the sum of input sizes."""
        ins = self._resolve_all(inputs)
        if not ins:
            raise GraphError(f"concat vertex {name or ''!r} needs at least one input")
        return self._new(CONCAT, ins, sum(u.nout for u in ins), name, **options)

    def set_outputs(self, *vertices: VertexLike) -> None:
        """Declare the graph outputs (sinks). Outputs are not fixed unless asked."""
        self._outputs = self._resolve_all(vertices)

    def _new(
        self,
        kind: str,
        inputs: list[Vertex],
        nout: int,
        name: str | None,
        *,
        nominal: bool = False,
        **options: Any,
    ) -> Vertex:
        if kind not in KINDS:
            raise GraphError(f"unknown vertex kind {kind!r}; expected one of {KINDS}")
        shown = name if name is not None else f"<new {kind}>"
        if name is not None and (not isinstance(name, str) or not name):
            raise GraphError(f"vertex names must be non-empty strings, got {name!r}")
        if name in self._vertices:
            raise GraphError(f"a vertex named {name!r} already exists; pick another name")
        nout = check_size(nout, shown)
        check_options(shown, nout, options, nominal=nominal)
        if name is None:  # only now: a refused vertex must not use up a generated name
            self._counter += 1
            name = f"{kind}_{self._counter}"
            while name in self._vertices:
                self._counter += 1
                name = f"{kind}_{self._counter}"
        vertex = Vertex(self, name, kind, nout, inputs, **options)
        for u in inputs:
            u.outputs.append(vertex)
        self._vertices[name] = vertex
        self._order = None
        return vertex

    # ------------------------------------------------------------------ queries
    def __getitem__(self, name: str) -> Vertex:
        try:
            return self._vertices[name]
        except KeyError:
            raise KeyError(f"no vertex named {name!r} in this graph") from None

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Vertex):
            return self._vertices.get(item.name) is item
        return item in self._vertices

    def __len__(self) -> int:
        return len(self._vertices)

    def __iter__(self) -> Iterator[Vertex]:
        return iter(self.vertices)

    @property
    def outputs(self) -> list[Vertex]:
        """The declared output vertices (or the sinks when none were declared)."""
        if self._outputs:
            return list(self._outputs)
        return [v for v in self._vertices.values() if not v.outputs]

    @property
    def inputs(self) -> list[Vertex]:
        """The graph's input vertices, in creation order."""
        return [v for v in self._vertices.values() if v.kind == INPUT]

    @property
    def vertices(self) -> list[Vertex]:
        """All vertices in a topological order (stable: ties keep creation order)."""
        if self._order is None:
            self._order = _topological(self._vertices.values())
        return list(self._order)

    def vertex(self, v: VertexLike) -> Vertex:
        """Resolve a vertex or a name to this graph's vertex."""
        if isinstance(v, Vertex):
            if self._vertices.get(v.name) is not v:
                raise GraphError(
                    f"vertex {v.name!r} belongs to another graph; pass its name instead"
                )
            return v
        if isinstance(v, str):
            return self[v]
        raise TypeError(f"expected a Vertex or a vertex name, got {type(v).__name__}")

    def _resolve_all(self, vs: Iterable[VertexLike]) -> list[Vertex]:
        return [self.vertex(v) for v in vs]

    def sizes(self) -> dict[str, int]:
        """Output size of every vertex, by name."""
        return {name: v.nout for name, v in self._vertices.items()}

    def check(self) -> None:
        """Raise :class:`SizeError` if any edge disagrees with the sizes it connects."""
        for v in self._vertices.values():
            problem = _inconsistency(v)
            if problem:
                raise SizeError(problem, [v.name] + [u.name for u in v.inputs])

    # ------------------------------------------------------------------ copy, compare
    def copy(self) -> Graph:
        """An independent copy (utility arrays and metadata are copied too)."""
        other = Graph()
        other._counter = self._counter
        for v in self._vertices.values():  # creation order, not topological: keep it exact
            other._vertices[v.name] = Vertex(
                other,
                v.name,
                v.kind,
                v.nout,
                [],
                utility=None if v.utility is None else v.utility.copy(),
                meta=_copy_meta(v.meta),
                **v.constraints(),
            )
        for v in self._vertices.values():
            w = other._vertices[v.name]
            w.inputs = [other._vertices[u.name] for u in v.inputs]
            w.outputs = [other._vertices[u.name] for u in v.outputs]
        other._outputs = [other._vertices[v.name] for v in self._outputs]
        return other

    def __deepcopy__(self, memo: dict) -> Graph:
        # vertices link to each other in long chains: copy iteratively, never recursively
        return self.copy()

    def __copy__(self) -> Graph:
        return self.copy()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        return self.signature() == other.signature() and _same_utilities(self, other)

    __hash__ = None  # type: ignore[assignment]

    def signature(self) -> tuple:
        """A hashable structural summary: names, kinds, sizes, edges and constraints."""
        return (
            tuple(
                (
                    v.name,
                    v.kind,
                    v.nout,
                    tuple(u.name for u in v.inputs),
                    tuple(sorted(v.constraints().items())),
                    repr(sorted(v.meta.items())),
                )
                for v in self.vertices
            ),
            tuple(v.name for v in self._outputs),
        )

    def __repr__(self) -> str:
        return f"Graph({len(self._vertices)} vertices, outputs={[v.name for v in self.outputs]})"

    # ------------------------------------------------------------------ conversions
    def to_json(self) -> str:
        """Serialise to a JSON string (see :func:`mutnas.serialize.graph_to_dict`)."""
        from mutnas.serialize import graph_to_json

        return graph_to_json(self)

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """Rebuild a graph written by :meth:`to_json`."""
        from mutnas.serialize import graph_from_json

        return graph_from_json(text)

    def to_networkx(self):
        """A ``networkx.MultiDiGraph`` with one node per vertex (attributes: kind, nout...).

        A multigraph, since a producer may feed the same consumer twice. Edge attribute
        ``position`` is the input position at the consumer.
        """
        import networkx as nx

        nxg = nx.MultiDiGraph()
        for v in self.vertices:
            nxg.add_node(v.name, kind=v.kind, nout=v.nout, **v.constraints())
        for v in self.vertices:
            for pos, u in enumerate(v.inputs):
                nxg.add_edge(u.name, v.name, position=pos)
        return nxg

    # ------------------------------------------------------------------ mutations
    def resize(
        self,
        target: VertexLike | Mapping[VertexLike, int],
        delta: int | None = None,
        *,
        relaxed: bool = False,
        utility: Callable | Mapping | None = None,
        solver: Any = None,
    ):
        """Change output sizes; see :func:`mutnas.mutations.resize`."""
        from mutnas.mutations import resize

        return resize(self, target, delta, relaxed=relaxed, utility=utility, solver=solver)

    def resize_inputs(self, v: VertexLike, deltas, *, relaxed=False, utility=None, solver=None):
        """Change the sizes of ``v``'s inputs; see :func:`mutnas.mutations.resize_inputs`."""
        from mutnas.mutations import resize_inputs

        return resize_inputs(self, v, deltas, relaxed=relaxed, utility=utility, solver=solver)

    def prune(self, *, utility=None, vertices=None, solver=None):
        """Re-select neurons without inserting any; see :func:`mutnas.mutations.prune`."""
        from mutnas.mutations import prune

        return prune(self, utility=utility, vertices=vertices, solver=solver)

    def insert_after(self, v: VertexLike, kind: str = ABSORB, *, nout=None, name=None, **kw):
        """Insert a vertex between ``v`` and its consumers; see :mod:`mutnas.mutations`."""
        from mutnas.mutations import insert_after

        return insert_after(self, v, kind, nout=nout, name=name, **kw)

    def remove(self, v: VertexLike, *, utility=None, solver=None):
        """Remove ``v``, reconnecting its input to its consumers."""
        from mutnas.mutations import remove

        return remove(self, v, utility=utility, solver=solver)

    def delete(self, v: VertexLike) -> None:
        """Delete a vertex nothing reads (a dead branch); sizes are unaffected.

        Raises:
            GraphError: ``v`` still has consumers or is a graph output.

        Example:
            >>> import mutnas as mn
            >>> g = mn.Graph()
            >>> a = g.absorb(g.input(2, name="x"), nout=3, name="a")
            >>> g.delete("a")
            >>> [v.name for v in g.vertices]
            ['x']
        """
        vertex = self.vertex(v)
        if vertex.outputs:
            consumers = sorted({w.name for w in vertex.outputs})
            raise GraphError(f"cannot delete {vertex.name!r}: {consumers} still read it")
        if vertex in self._outputs:
            raise GraphError(f"cannot delete {vertex.name!r}: it is a graph output")
        for u in vertex.inputs:
            u.outputs.remove(vertex)
        del self._vertices[vertex.name]
        self._order = None

    def connect(
        self, src: VertexLike, dst: VertexLike, position=None, *, utility=None, solver=None
    ):
        """Add an edge ``src -> dst`` (``dst`` an add or concat vertex)."""
        from mutnas.mutations import connect

        return connect(self, src, dst, position, utility=utility, solver=solver)

    def disconnect(self, src: VertexLike, dst: VertexLike, *, utility=None, solver=None):
        """Remove the edge ``src -> dst`` (``dst`` keeps at least one input)."""
        from mutnas.mutations import disconnect

        return disconnect(self, src, dst, utility=utility, solver=solver)


def _inconsistency(v: Vertex) -> str | None:
    sizes = v.nin
    if v.kind == INPUT:
        return f"input {v.name!r} has inputs" if v.inputs else None
    if not v.inputs:
        return f"vertex {v.name!r} ({v.kind}) has no inputs"
    if v.kind in (INVARIANT, ADD) and any(n != v.nout for n in sizes):
        return f"{v.kind} vertex {v.name!r} has nout={v.nout} but input sizes {sizes}"
    if v.kind == CONCAT and sum(sizes) != v.nout:
        return f"concat vertex {v.name!r} has nout={v.nout} but input sizes sum to {sum(sizes)}"
    if v.is_grouped and (sizes[0] % v.groups or v.nout % v.groups):
        return f"grouped vertex {v.name!r}: groups={v.groups} does not divide {sizes[0]}/{v.nout}"
    if v.nout < v.min_nout or (v.max_nout is not None and v.nout > v.max_nout):
        return f"vertex {v.name!r} has nout={v.nout} outside [{v.min_nout}, {v.max_nout}]"
    if v.nout % v.multiple_of:
        return f"vertex {v.name!r} has nout={v.nout}, not a multiple of {v.multiple_of}"
    if v.utility is not None and len(v.utility) != v.nout:
        return f"vertex {v.name!r} has {len(v.utility)} utilities for nout={v.nout}"
    return None


def _topological(vertices: Iterable[Vertex]) -> list[Vertex]:
    vs = list(vertices)
    pending = {v.name: len(v.inputs) for v in vs}
    ready = [v for v in vs if pending[v.name] == 0]
    order: list[Vertex] = []
    position = {v.name: i for i, v in enumerate(vs)}
    import heapq

    heap = [(position[v.name], v.name, v) for v in ready]
    heapq.heapify(heap)
    while heap:
        _, _, v = heapq.heappop(heap)
        order.append(v)
        for w in v.outputs:
            pending[w.name] -= 1
            if pending[w.name] == 0:
                heapq.heappush(heap, (position[w.name], w.name, w))
    if len(order) != len(vs):
        stuck = sorted(name for name, n in pending.items() if n > 0)
        raise GraphError(f"the graph has a cycle through {stuck[:8]}")
    return order


def _copy_meta(meta: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(meta)


def _same_utilities(a: Graph, b: Graph) -> bool:
    for name, v in a._vertices.items():
        u, w = v.utility, b._vertices[name].utility
        if (u is None) != (w is None) or (u is not None and not np.array_equal(u, w)):
            return False
    return True
