"""Solver internals for advanced use: the pipeline's pieces, one import away.

Every mutation runs: participants (:func:`find_participants`) → aligned classes
(:class:`Partition`) → size problem (:class:`SizeProblem`) → :func:`solve` → decode and
:func:`commit`. Use these to inspect a problem, or :func:`set_default_solver` to change
the solver everywhere, and :func:`set_max_size` to change the bound on every vertex's
size (:data:`DEFAULT_MAX_SIZE`, ``2**20``; see :mod:`mutnas.validate`).

Example:
    >>> import mutnas as mn
    >>> from mutnas.advanced import Partition, find_participants
    >>> g = mn.Graph()
    >>> x = g.input(3, name="x")
    >>> a, b = g.absorb(x, nout=4, name="a"), g.absorb(x, nout=4, name="b")
    >>> s = g.add(a, b, name="s")
    >>> part = Partition(find_participants([a]))
    >>> sorted(v.name for v in part.order), len({part.find(k) for k in part.parent})
    (['a', 'b', 's'], 1)
"""

from mutnas.apply import Edits, commit, decode
from mutnas.graph import Graph
from mutnas.mutations import default_solver, set_default_solver, transaction
from mutnas.problem import Component, SizeProblem, SizeTerm, Weights
from mutnas.segments import Partition, find_participants
from mutnas.solve import Solution, SolverOptions, solve
from mutnas.validate import DEFAULT_MAX_SIZE, max_size, set_max_size

__all__ = [
    "DEFAULT_MAX_SIZE",
    "Component",
    "Edits",
    "Partition",
    "SizeProblem",
    "SizeTerm",
    "Solution",
    "SolverOptions",
    "Weights",
    "commit",
    "decode",
    "default_solver",
    "find_participants",
    "frozen_vertices",
    "max_size",
    "set_default_solver",
    "set_max_size",
    "solve",
    "transaction",
]


def frozen_vertices(graph: Graph) -> set[str]:
    """Vertices whose neurons are all pinned (by inputs or fixed vertices they align with).

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> x = g.input(3, name="x")
        >>> a = g.absorb(x, nout=3, name="a")
        >>> b = g.absorb(x, nout=4, name="b")
        >>> s = g.add(x, a, name="s")
        >>> sorted(frozen_vertices(g))
        ['a', 's', 'x']
    """
    partition = Partition(find_participants(graph.vertices))
    problem = SizeProblem(partition, targets={}, utility=lambda v: None)
    return problem.frozen()
