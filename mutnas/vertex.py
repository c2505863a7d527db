"""Vertices of a mutnas graph.

A vertex is one tensor-producing operation. Its *kind* says how its output size relates to
its inputs:

- ``"input"``: an immutable graph input of fixed size;
- ``"absorb"``: a layer with weights; its input sizes follow its inputs and its output size
  is free (a Linear or Conv layer). With ``groups > 1`` input and output channels come in
  that many aligned blocks, and whole blocks are kept or dropped together;
- ``"invariant"``: one input, output aligned with it neuron by neuron (activation, norm,
  pooling, dropout, depthwise convolution);
- ``"add"``: one or more inputs, all aligned with each other and with the output
  (elementwise sum or product);
- ``"concat"``: output is the inputs stacked in order.

Vertices are created through :class:`mutnas.Graph`; their sizes change only through the
graph's mutations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mutnas.graph import Graph

__all__ = ["ABSORB", "ADD", "CONCAT", "INPUT", "INVARIANT", "KINDS", "Vertex"]

INPUT = "input"
ABSORB = "absorb"
INVARIANT = "invariant"
ADD = "add"
CONCAT = "concat"
KINDS = (INPUT, ABSORB, INVARIANT, ADD, CONCAT)


class Vertex:
    """One vertex of a :class:`mutnas.Graph`.

    Attributes:
        name: unique name within its graph.
        kind: one of ``"input"``, ``"absorb"``, ``"invariant"``, ``"add"``, ``"concat"``.
        inputs: producers, in argument order (a producer may appear twice).
        outputs: consumers, one entry per edge.
        min_nout: smallest output size a mutation may leave (at least 1).
        max_nout: largest output size a mutation may leave, or None.
        multiple_of: the output size must stay a multiple of this.
        fixed: the output neurons may not change at all (inputs are always fixed).
        groups: for absorb vertices, the number of aligned channel groups (1 = dense).
        utility: optional per-neuron value (higher = more worth keeping).
        meta: free-form JSON-serialisable data for adapters (layer type, module path).

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(3, name="x"), nout=4, name="a")
        >>> a.kind, a.nout, a.nin, [v.name for v in a.inputs]
        ('absorb', 4, [3], ['x'])
    """

    __slots__ = (
        "_graph",
        "_nout",
        "fixed",
        "groups",
        "inputs",
        "kind",
        "max_nout",
        "meta",
        "min_nout",
        "multiple_of",
        "name",
        "outputs",
        "utility",
    )

    def __init__(
        self,
        graph: Graph,
        name: str,
        kind: str,
        nout: int,
        inputs: list[Vertex],
        *,
        min_nout: int = 1,
        max_nout: int | None = None,
        multiple_of: int = 1,
        fixed: bool = False,
        groups: int = 1,
        utility: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ):
        self._graph = graph
        self.name = name
        self.kind = kind
        self._nout = int(nout)
        self.inputs: list[Vertex] = list(inputs)
        self.outputs: list[Vertex] = []
        self.min_nout = int(min_nout)
        self.max_nout = None if max_nout is None else int(max_nout)
        self.multiple_of = int(multiple_of)
        self.fixed = bool(fixed) or kind == INPUT
        self.groups = int(groups)
        self.utility = None if utility is None else np.asarray(utility, dtype=float)
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def nout(self) -> int:
        """Output size (number of neurons or channels)."""
        return self._nout

    @property
    def nin(self) -> list[int]:
        """Input sizes, one per input edge."""
        return [u._nout for u in self.inputs]

    @property
    def graph(self) -> Graph:
        """The graph this vertex belongs to."""
        return self._graph

    @property
    def is_source(self) -> bool:
        """True for vertices that own their output neurons (inputs and absorb vertices)."""
        return self.kind in (INPUT, ABSORB)

    @property
    def is_transparent(self) -> bool:
        """True for vertices whose output neurons are their inputs' neurons."""
        return self.kind in (INVARIANT, ADD, CONCAT)

    @property
    def is_grouped(self) -> bool:
        """True for absorb vertices with aligned channel groups (grouped convolution)."""
        return self.kind == ABSORB and self.groups > 1

    def __repr__(self) -> str:
        extra = f", groups={self.groups}" if self.groups > 1 else ""
        extra += ", fixed" if self.fixed and self.kind != INPUT else ""
        return f"Vertex({self.name!r}, {self.kind}, nout={self._nout}, nin={self.nin}{extra})"

    def constraints(self) -> dict[str, Any]:
        """The vertex's size constraints as a dict (what serialisation stores)."""
        return {
            "min_nout": self.min_nout,
            "max_nout": self.max_nout,
            "multiple_of": self.multiple_of,
            "fixed": self.fixed,
            "groups": self.groups,
        }
