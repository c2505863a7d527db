"""Mutations of a graph. Each is solved as one MILP over its participants and is atomic:
on failure a :class:`~mutnas.SizeError` names the vertices involved and the graph is
exactly as it was.

Pipeline of every mutation: (structural edit) → participants → partition into aligned
classes → size problem → solve (exact, then relaxed when allowed) → decode → commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from mutnas.apply import Edits, commit
from mutnas.change import Change
from mutnas.errors import GraphError, SizeError, infeasible_message
from mutnas.graph import Graph, VertexLike
from mutnas.problem import SizeProblem
from mutnas.segments import Partition, find_participants
from mutnas.solve import SolverOptions, solve
from mutnas.validate import Utility, check_delta, check_int, check_size, max_size, utility_function
from mutnas.vertex import ABSORB, ADD, CONCAT, INPUT, KINDS, Vertex

__all__ = [
    "connect",
    "default_solver",
    "disconnect",
    "insert_after",
    "prune",
    "remove",
    "resize",
    "resize_inputs",
    "set_default_solver",
    "transaction",
]

_DEFAULT = [SolverOptions()]


def default_solver() -> SolverOptions:
    """The solver options used when a mutation is not given any."""
    return _DEFAULT[0]


def set_default_solver(options: SolverOptions) -> None:
    """Replace the default solver options (for example ``backend="highs"``)."""
    _DEFAULT[0] = options


UtilityFn = Callable[[Vertex], np.ndarray | None]


def _solve(
    partition: Partition,
    targets: dict[str, int],
    *,
    relaxed: bool,
    utility: UtilityFn,
    solver: SolverOptions | None,
    prune: bool = False,
    equal: Sequence[tuple[str, str]] = (),
):
    """Solve the size problem; ``utility`` is the checked function from ``utility_function``."""
    options = solver or default_solver()
    problem = SizeProblem(
        partition,
        targets=targets,
        prune=prune,
        utility=utility,
        weights=options.weights,
        equal=equal,
    )
    try:
        return problem, solve(problem, options)
    except SizeError:
        if not relaxed:
            raise
    problem = SizeProblem(
        partition,
        targets=targets,
        relaxed=True,
        utility=utility,
        weights=options.weights,
        equal=equal,
    )
    return problem, solve(problem, options)


# ---------------------------------------------------------------- size mutations
def resize(
    graph: Graph,
    target: VertexLike | Mapping[VertexLike, int],
    delta: int | None = None,
    *,
    relaxed: bool = False,
    utility: Utility = None,
    solver: SolverOptions | None = None,
) -> Change:
    """Change the output size of one or several vertices.

    Args:
        graph: the graph to mutate.
        target: a vertex (or name), or a mapping ``{vertex: delta}``.
        delta: size change for a single vertex.
        relaxed: if the exact sizes are infeasible, take the nearest feasible sizes that
            still move each vertex in the requested direction.
        utility: ``vertex -> per-neuron values`` (callable or mapping); default: each
            vertex's stored utility, else uniform.
        solver: solver options (default: :func:`default_solver`).

    Returns:
        The :class:`~mutnas.Change` record.

    Raises:
        SizeError: no sizes satisfy the request; the graph is unchanged.
        GraphError: a delta is not an integer, a new size would pass
            :func:`mutnas.validate.max_size`, or a utility is not one finite number per
            neuron of a vertex of the graph; checked before anything is solved.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(3, name="x")
        >>> a = g.absorb(x, nout=4, name="a", multiple_of=2)
        >>> _ = g.absorb(a, nout=2, name="b")
        >>> try:
        ...     g.resize("a", 1)
        ... except mn.SizeError as err:
        ...     print("refused:", err.vertices)
        refused: ('a',)
        >>> g.resize("a", 1, relaxed=True).nout_after
        {'a': 6}
    """
    if isinstance(target, Mapping):
        if delta is not None:
            raise TypeError("pass either {vertex: delta} or (vertex, delta), not both")
        requests = {graph.vertex(v): d for v, d in target.items()}
    else:
        if delta is None:
            raise TypeError("resize(v, delta) needs a delta")
        requests = {graph.vertex(target): delta}
    requests = {v: check_delta(d, v.name, v.nout) for v, d in requests.items()}
    utility = utility_function(graph, utility)
    targets = {}
    for v, d in requests.items():
        if v.kind == INPUT or (v.fixed and d):
            raise SizeError(
                f"{v.kind} vertex {v.name!r} is fixed; its size cannot change", [v.name]
            )
        if v.nout + d < 1 and not relaxed:
            raise SizeError(f"cannot resize {v.name!r} from {v.nout} by {d}: size < 1", [v.name])
        # relaxed: an unreachable target still fixes the direction (a shrink of a size-1
        # vertex must move down, which is infeasible, rather than silently do nothing)
        targets[v.name] = v.nout + d
    partition = Partition(find_participants(requests))
    problem, solution = _solve(partition, targets, relaxed=relaxed, utility=utility, solver=solver)
    return commit(graph, partition, problem, solution, Edits(), "resize")


def resize_inputs(
    graph: Graph,
    v: VertexLike,
    deltas: Sequence[int | None],
    *,
    relaxed: bool = False,
    utility: Utility = None,
    solver: SolverOptions | None = None,
) -> Change:
    """Change the sizes of ``v``'s inputs: ``deltas[k]`` for input ``k`` (None: free).

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(2, name="x")
        >>> a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b")
        >>> c = g.concat(a, b, name="c")
        >>> _ = g.resize_inputs(c, [None, -2])
        >>> c.nin, c.nout
        ([3, 2], 5)
    """
    vertex = graph.vertex(v)
    if len(deltas) != len(vertex.inputs):
        raise GraphError(
            f"{vertex.name!r} has {len(vertex.inputs)} inputs but {len(deltas)} deltas were given"
        )
    requests: dict[Vertex, int] = {}
    for u, d in zip(vertex.inputs, deltas, strict=True):
        if d is None:
            continue
        if u in requests and requests[u] != d:
            raise SizeError(f"input {u.name!r} is asked for two different deltas", [u.name])
        requests[u] = d
    if not requests:
        return Change("resize")
    return resize(graph, requests, relaxed=relaxed, utility=utility, solver=solver)


def prune(
    graph: Graph,
    *,
    utility: Utility = None,
    vertices: Sequence[VertexLike] | None = None,
    solver: SolverOptions | None = None,
) -> Change:
    """Re-select neurons without inserting any: neurons with negative utility go.

    Sizes are free (within each vertex's constraints); the objective is the total utility
    of the kept neurons, so with all-positive utilities nothing changes.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(2, name="x"), nout=4, name="a")
        >>> _ = g.absorb(a, nout=1, name="b")
        >>> g.prune(utility={"a": [1.0, -1.0, 2.0, -0.5]}).outputs["a"].tolist()
        [0, 2]
    """
    utility = utility_function(graph, utility)
    seeds = graph.vertices if vertices is None else [graph.vertex(v) for v in vertices]
    partition = Partition(find_participants(seeds))
    problem, solution = _solve(
        partition, {}, relaxed=False, utility=utility, solver=solver, prune=True
    )
    return commit(graph, partition, problem, solution, Edits(), "prune")


# ---------------------------------------------------------------- structural mutations
class _Structure:
    """Undo log of a structural edit: restores edges, vertex order and outputs exactly."""

    def __init__(self, graph: Graph, touched: Sequence[Vertex]):
        self.graph = graph
        self.vertex_items = list(graph._vertices.items())
        self.outputs = list(graph._outputs)
        self.edges = {v.name: (v, list(v.inputs), list(v.outputs)) for v in touched}
        self.counter = graph._counter

    def rollback(self) -> None:
        g = self.graph
        g._vertices = dict(self.vertex_items)
        g._outputs = self.outputs
        g._counter = self.counter
        for v, inputs, outputs in self.edges.values():
            v.inputs[:] = inputs
            v.outputs[:] = outputs
        g._order = None


class _Snapshot:
    """Everything a sequence of mutations can change, for every vertex of the graph."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.vertex_items = list(graph._vertices.items())
        self.outputs = list(graph._outputs)
        self.counter = graph._counter
        self.state = [
            (v, list(v.inputs), list(v.outputs), v._nout, v.utility, v.groups)
            for v in graph._vertices.values()
        ]

    def restore(self) -> None:
        g = self.graph
        g._vertices = dict(self.vertex_items)
        g._outputs = self.outputs
        g._counter = self.counter
        for v, inputs, outputs, nout, utility, groups in self.state:
            v.inputs[:] = inputs
            v.outputs[:] = outputs
            v._nout, v.utility, v.groups = nout, utility, groups
        g._order = None


@contextmanager
def transaction(graph: Graph) -> Iterator[Graph]:
    """Make several mutations one: if the block raises, the graph is restored exactly.

    For adapters whose edit is a sequence of core mutations (a residual branch is an
    ``insert_after``, two ``absorb`` and a ``connect``). Costs one pass over the graph.

    Example:
        >>> import mutnas as mn
        >>> from mutnas.advanced import transaction
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(2, name="x"), nout=3, name="a")
        >>> try:
        ...     with transaction(g):
        ...         _ = g.insert_after("a", "invariant", name="r")
        ...         _ = g.absorb("r", nout=2, name="a")  # name taken: GraphError
        ... except mn.GraphError:
        ...     pass
        >>> [v.name for v in g.vertices]
        ['x', 'a']
    """
    snapshot = _Snapshot(graph)
    try:
        yield graph
    except BaseException:
        snapshot.restore()
        raise


def _resolve_structure(
    graph: Graph,
    undo: _Structure,
    seeds: Sequence[Vertex],
    edits: Edits,
    kind: str,
    *,
    utility: UtilityFn,
    solver: SolverOptions | None,
    targets: dict[str, int] | None = None,
    extra_consumers: Sequence[Vertex] = (),
) -> Change:
    graph._order = None
    try:
        partition = Partition(find_participants(seeds), edits.mode)
        problem, solution = _solve(
            partition, targets or {}, relaxed=False, utility=utility, solver=solver
        )
        return commit(
            graph, partition, problem, solution, edits, kind, extra_consumers=extra_consumers
        )
    except BaseException:
        undo.rollback()
        raise


def _replace_edges(old: Vertex, new: Vertex, consumers: list[Vertex]) -> list[tuple[str, int]]:
    """Point every edge ``old -> w`` (w in consumers) at ``new``; return (w, position)s."""
    moved = []
    for w in dict.fromkeys(consumers):
        for pos, u in enumerate(w.inputs):
            if u is old:
                w.inputs[pos] = new
                new.outputs.append(w)
                moved.append((w.name, pos))
    old.outputs[:] = [w for w in old.outputs if w not in consumers]
    return moved


def insert_after(
    graph: Graph,
    v: VertexLike,
    kind: str = ABSORB,
    *,
    nout: int | None = None,
    name: str | None = None,
    utility: Utility = None,
    solver: SolverOptions | None = None,
    **options: Any,
) -> Change:
    """Insert a new vertex between ``v`` and all its consumers.

    The new vertex starts with ``v``'s size and is treated as an identity (its consumers'
    columns are kept), so an adapter can initialise it to preserve function. With
    ``nout`` (absorb only) it is then resized in the same transaction.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(2, name="x"), nout=4, name="a")
        >>> b = g.absorb(a, nout=3, name="b")
        >>> change = g.insert_after(a, "absorb", nout=6, name="new")
        >>> [(w.name, w.nout) for w in g.vertices], change.added
        ([('x', 2), ('a', 4), ('new', 6), ('b', 3)], ['new'])
    """
    source = graph.vertex(v)
    if kind not in KINDS or kind == INPUT:
        raise GraphError(f"cannot insert a vertex of kind {kind!r}; use absorb or invariant")
    shown = name if name is not None else f"<new {kind}>"
    if nout is not None:
        nout = check_size(nout, shown)
    if nout is not None and kind != ABSORB and nout != source.nout:
        raise GraphError(f"a {kind} vertex keeps its input's size; nout={nout} is not allowed")
    groups = check_int(options.get("groups", 1), "groups", shown, minimum=1, maximum=max_size())
    utility = utility_function(graph, utility)
    consumers = list(dict.fromkeys(source.outputs))
    undo = _Structure(graph, [source, *consumers])
    if kind == ABSORB and groups > 1 and source.nout % groups:
        raise GraphError(
            f"grouped vertex {name!r}: groups={options['groups']} must divide nin={source.nout}"
        )
    # starts at the source's size (an identity); its own constraints are met by the solve
    new = graph._new(kind, [source], source.nout, name, nominal=True, **options)
    source.outputs.remove(new)
    moved = _replace_edges(source, new, consumers)
    source.outputs.append(new)
    graph._outputs = [new if o is source else o for o in graph._outputs]
    edits = Edits({(w, pos): (pos, True) for w, pos in moved})
    targets = {new.name: nout} if nout is not None and nout != source.nout else None
    change = _resolve_structure(
        graph, undo, [new], edits, "insert", utility=utility, solver=solver, targets=targets
    )
    change.added.append(new.name)
    change.edges_added.append((source.name, new.name, 0))
    for w, pos in moved:
        change.edges_removed.append((source.name, w, pos))
        change.edges_added.append((new.name, w, pos))
    return change


def remove(
    graph: Graph, v: VertexLike, *, utility: Utility = None, solver: SolverOptions | None = None
) -> Change:
    """Remove ``v`` (one input), feeding its input to its consumers and re-solving sizes.

    When ``v`` changes size (an absorb vertex with ``nin != nout``), its input and output
    are first brought to one size in the same transaction, as NaiveNASlib does: increase
    the smaller, else decrease the bigger, else any common size. The consumers then read
    the input neuron for neuron. If the consumers do not align neurons (plain layers) and
    no common size exists, they take the input as it is, reusing columns by position.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(2, name="x")
        >>> a = g.absorb(x, nout=4, name="a")
        >>> b = g.absorb(a, nout=5, name="b")
        >>> c = g.absorb(b, nout=3, name="c")
        >>> change = g.remove("b")  # a grows to b's 5 outputs: c keeps all its columns
        >>> [(w.name, w.nout) for w in g.vertices], change.outputs["a"].tolist()
        ([('x', 2), ('a', 5), ('c', 3)], [0, 1, 2, 3, -1])
    """
    vertex = graph.vertex(v)
    utility = utility_function(graph, utility)
    if vertex.kind == INPUT:
        raise GraphError(f"cannot remove input vertex {vertex.name!r}")
    if len(vertex.inputs) != 1:
        raise GraphError(
            f"cannot remove {vertex.name!r}: it has {len(vertex.inputs)} inputs; "
            f"disconnect all but one first"
        )
    (x,) = vertex.inputs
    consumers = list(dict.fromkeys(vertex.outputs))
    aligning = any(w.is_transparent or w.is_grouped for w in consumers)
    unequal = x.nout != vertex.nout and vertex.is_source
    if unequal and aligning:
        undo, edits, _ = _detach(graph, vertex, x, consumers)
        try:  # refuse a size cycle with its own message before trying anything else
            Partition(find_participants([x, *consumers]), edits.mode)
        finally:
            undo.rollback()
    first = Change("resize")
    sizes = _SizeSnapshot(graph, [x, vertex])
    if unequal:
        # make x and v the same size first (NaiveNASlib: increase the smaller or decrease
        # the bigger; here whichever the solver finds cheaper, and dropping neurons costs
        # utility), so the removal pairs neurons one to one and keeps every alignment
        try:
            first = _equalize(graph, x, vertex, utility, solver)
        except SizeError:
            if aligning:
                raise
    undo, edits, moved = _detach(graph, vertex, x, consumers)
    try:
        change = _resolve_structure(
            graph,
            undo,
            [x, *consumers],
            edits,
            "remove",
            utility=utility,
            solver=solver,
            extra_consumers=consumers,
        )
    except BaseException:
        sizes.restore()
        raise
    change = first.merge(change)
    change.kind = "remove"
    change.removed.append(vertex.name)
    change.edges_removed.append((x.name, vertex.name, 0))
    for w, pos in moved:
        change.edges_removed.append((vertex.name, w, pos))
        change.edges_added.append((x.name, w, pos))
    return change


def _detach(graph: Graph, vertex: Vertex, x: Vertex, consumers: list[Vertex]):
    """Take ``vertex`` out, feeding ``x`` to its consumers; returns (undo, edits, moved)."""
    undo = _Structure(graph, [vertex, x, *consumers])
    old_nin = {w.name: w.nin for w in consumers}
    x.outputs.remove(vertex)
    moved = _replace_edges(vertex, x, consumers)
    del graph._vertices[vertex.name]
    outputs = [x if o is vertex else o for o in graph._outputs]
    graph._outputs = list(dict.fromkeys(outputs))
    graph._order = None
    aligned = vertex.is_transparent
    return undo, Edits({(w, pos): (pos, aligned) for w, pos in moved}, old_nin), moved


class _SizeSnapshot:
    """Sizes, utilities and groups of every vertex a size change around ``seeds`` can touch."""

    def __init__(self, graph: Graph, seeds: Sequence[Vertex]):
        found = find_participants(seeds)
        touched = {v.name: v for v in found} | {w.name: w for v in found for w in v.outputs}
        self.state = {v: (v._nout, v.utility, v.groups) for v in touched.values()}

    def restore(self) -> None:
        for v, (nout, utility, groups) in self.state.items():
            v._nout, v.utility, v.groups = nout, utility, groups


def _equalize(graph: Graph, x: Vertex, v: Vertex, utility: UtilityFn, solver) -> Change:
    """Bring ``x`` and ``v`` to one size, trying NaiveNASlib's strategies in its order:
    increase the smaller, else decrease the bigger, else let the solver pick any size."""
    partition = Partition(find_participants([x, v]))
    small, big = sorted((x, v), key=lambda u: u.nout)
    attempts = [
        {small.name: big.nout, big.name: big.nout},  # IncreaseSmaller
        {small.name: small.nout, big.name: small.nout},  # DecreaseBigger
        {},  # AlignSizeBoth
    ]
    for targets in attempts:
        if any(graph[n].fixed and graph[n].nout != t for n, t in targets.items()):
            continue
        try:
            problem, solution = _solve(
                partition,
                targets,
                relaxed=False,
                utility=utility,
                solver=solver,
                equal=[(x.name, v.name)],
            )
        except SizeError as err:
            last = err
            continue
        return commit(graph, partition, problem, solution, Edits(), "resize")
    raise SizeError(
        f"cannot remove {v.name!r}: its input {x.name!r} ({x.nout}) and its output "
        f"({v.nout}) must end up the same size, and no sizes allow it",
        last.vertices if "last" in locals() else [x.name, v.name],
    )


def _reaches(start: Vertex, goal: Vertex) -> bool:
    stack, seen = [start], set()
    while stack:
        v = stack.pop()
        if v is goal:
            return True
        if v.name not in seen:
            seen.add(v.name)
            stack.extend(v.outputs)
    return False


def connect(
    graph: Graph,
    src: VertexLike,
    dst: VertexLike,
    position: int | None = None,
    *,
    utility: Utility = None,
    solver: SolverOptions | None = None,
) -> Change:
    """Add the edge ``src -> dst`` at input ``position`` of an add or concat vertex.

    For an add, ``src`` and the other inputs are brought to one size; for a concat, the
    consumers of ``dst`` see new (all ``-1``) columns, so an adapter can zero them.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(2, name="x")
        >>> a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b")
        >>> c = g.concat(a, name="c")
        >>> _ = g.connect(b, c)
        >>> c.nin, c.nout
        ([3, 4], 7)
    """
    source, target = graph.vertex(src), graph.vertex(dst)
    utility = utility_function(graph, utility)
    if target.kind not in (ADD, CONCAT):
        raise GraphError(
            f"can only connect into add or concat vertices; {target.name!r} is {target.kind}"
        )
    if _reaches(target, source):
        raise GraphError(f"edge {source.name!r} -> {target.name!r} would create a cycle")
    n = len(target.inputs)
    position = n if position is None else position
    if not 0 <= position <= n:
        raise GraphError(f"position {position} is out of range for {target.name!r} (0..{n})")
    undo = _Structure(graph, [source, target])
    old_nin = {target.name: target.nin}
    target.inputs.insert(position, source)
    source.outputs.append(target)
    origin = {(target.name, p): (p - (p > position), p != position) for p in range(n + 1)}
    origin[(target.name, position)] = (None, False)
    edits = Edits(origin, old_nin)
    change = _resolve_structure(
        graph, undo, [source, target], edits, "connect", utility=utility, solver=solver
    )
    change.edges_added.append((source.name, target.name, position))
    return change


def disconnect(
    graph: Graph,
    src: VertexLike,
    dst: VertexLike,
    *,
    utility: Utility = None,
    solver: SolverOptions | None = None,
) -> Change:
    """Remove the (first) edge ``src -> dst``; ``dst`` must keep at least one input.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(2, name="x")
        >>> a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b")
        >>> c = g.concat(a, b, name="c")
        >>> change = g.disconnect(a, c)
        >>> c.nout, change.outputs["c"].tolist()
        (4, [3, 4, 5, 6])
    """
    source, target = graph.vertex(src), graph.vertex(dst)
    utility = utility_function(graph, utility)
    if source not in target.inputs:
        raise GraphError(f"there is no edge {source.name!r} -> {target.name!r}")
    if len(target.inputs) < 2:
        raise GraphError(
            f"cannot disconnect the only input of {target.name!r}; remove the vertex instead"
        )
    position = target.inputs.index(source)
    try:
        return _disconnect(graph, source, target, position, utility, solver)
    except SizeError as err:
        if type(err) is not SizeError:
            raise
        placeholder = _removed_name(source)  # the request _disconnect_concat makes
        requested = {v: n for v, n in err.requested.items() if v != placeholder}
        message = err.message
        if placeholder in err.requested:  # the solver's message: say what the request meant
            context = f" once the {source.nout} neurons of {source.name!r} leave {target.name!r}"
            message = infeasible_message(requested, err.fixed, context)
        raise SizeError(
            f"cannot disconnect {source.name!r} -> {target.name!r}: {message}",
            [
                n
                for n in dict.fromkeys([source.name, target.name, *err.vertices])
                if n != placeholder
            ],
            requested=requested,
            fixed=err.fixed,
        ) from None


def _removed_name(source: Vertex) -> str:
    """The placeholder that stands for ``source``'s slots while a concat drops them."""
    return f"<{source.name} removed>"


def _disconnect(graph, source, target, position, utility, solver) -> Change:
    undo = _Structure(graph, [source, target])
    if target.kind != CONCAT:
        del target.inputs[position]
        source.outputs.remove(target)
        change = _resolve_structure(
            graph,
            undo,
            [target],
            _shifted(target, position, source.nout),
            "disconnect",
            utility=utility,
            solver=solver,
        )
    else:
        change = _disconnect_concat(graph, undo, source, target, position, utility, solver)
    change.edges_removed.append((source.name, target.name, position))
    return change


def _shifted(target: Vertex, position: int, n_removed: int) -> Edits:
    """Edits for ``target`` after its input ``position`` (of size n_removed) was deleted."""
    old_nin = [u.nout for u in target.inputs]
    old_nin.insert(position, n_removed)
    origin = {(target.name, p): (p + (p >= position), True) for p in range(len(target.inputs))}
    return Edits(origin, {target.name: old_nin})


def _disconnect_concat(graph, undo, source, target, position, utility, solver) -> Change:
    """Swap the edge for a placeholder that must shrink to nothing, then drop it.

    Whatever was aligned with the removed slots (through adds downstream) then drops
    exactly those slots, instead of being paired up by position.
    """
    placeholder = Vertex(graph, _removed_name(source), ABSORB, source.nout, [], min_nout=0)
    target.inputs[position] = placeholder
    placeholder.outputs.append(target)
    source.outputs.remove(target)
    change = _resolve_structure(
        graph,
        undo,
        [target, placeholder],
        Edits(),
        "disconnect",
        utility=utility,
        solver=solver,
        targets={placeholder.name: 0},
    )
    del target.inputs[position]
    change.outputs.pop(placeholder.name, None)
    change.nout_before.pop(placeholder.name, None)
    change.nout_after.pop(placeholder.name, None)
    change.inputs.pop(placeholder.name, None)
    maps = change.inputs.get(target.name)
    if maps is not None:
        change.inputs[target.name] = [m for k, m in enumerate(maps) if k != position]
    return change
