"""mutnas: neural architecture search by size-consistent graph mutation.

The core is framework-agnostic (it never imports torch). Build a :class:`Graph` of
vertices, then mutate it; every mutation is solved as one mixed-integer program so that
all sizes stay consistent through adds and concatenations, and returns a
:class:`Change` record of index maps that an adapter applies to weights.

Example:
    >>> import mutnas as mn
    >>> g = mn.Graph()
    >>> x = g.input(3, name="x")
    >>> a = g.absorb(x, nout=4, name="a")
    >>> b = g.absorb(x, nout=4, name="b")
    >>> s = g.add(a, b, name="s")
    >>> _ = g.resize(a, -1)
    >>> a.nout, b.nout, s.nout
    (3, 3, 3)
"""

from mutnas.change import Change, IndexMaps
from mutnas.errors import GraphError, MutnasError, SizeCycleError, SizeError, SolverError
from mutnas.graph import Graph
from mutnas.mutations import (
    connect,
    disconnect,
    insert_after,
    prune,
    remove,
    resize,
    resize_inputs,
)
from mutnas.problem import Weights
from mutnas.serialize import graph_from_json, graph_to_json
from mutnas.solve import SolverOptions
from mutnas.vertex import ABSORB, ADD, CONCAT, INPUT, INVARIANT, Vertex

__all__ = [
    "ABSORB",
    "ADD",
    "CONCAT",
    "INPUT",
    "INVARIANT",
    "Change",
    "Graph",
    "GraphError",
    "IndexMaps",
    "MutnasError",
    "SizeCycleError",
    "SizeError",
    "SolverError",
    "SolverOptions",
    "Vertex",
    "Weights",
    "connect",
    "disconnect",
    "graph_from_json",
    "graph_to_json",
    "insert_after",
    "prune",
    "remove",
    "resize",
    "resize_inputs",
]

__version__ = "0.1.0"
