"""The record a mutation returns: what an adapter must do to weights.

For each affected vertex, ``outputs[v]`` is the output index map: entry ``j`` is the old
output index that new output ``j`` comes from, or ``-1`` for a new neuron. ``inputs[v][k]``
is the same for the ``k``-th input edge of ``v``, in ``v``'s own old input columns (an
input fed by a new edge has no old columns: all ``-1``). A consumer's input map is exactly
its producer's output map whenever the edge existed before, which is what keeps adds and
concats aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mutnas.vertex import Vertex

__all__ = ["Change", "IndexMaps", "is_identity"]


def _key(v: Vertex | str) -> str:
    return v.name if isinstance(v, Vertex) else v


class IndexMaps(dict):
    """A dict by vertex name that also accepts :class:`~mutnas.Vertex` keys."""

    def __getitem__(self, v):
        return super().__getitem__(_key(v))

    def __contains__(self, v) -> bool:
        return super().__contains__(_key(v))

    def get(self, v, default=None):
        return super().get(_key(v), default)


def is_identity(index_map: np.ndarray, n_old: int) -> bool:
    """True when ``index_map`` keeps all ``n_old`` neurons in order and adds none."""
    return len(index_map) == n_old and bool(np.array_equal(index_map, np.arange(n_old)))


@dataclass
class Change:
    """What one mutation did.

    Attributes:
        kind: the mutation (``"resize"``, ``"prune"``, ``"insert"``, ``"remove"``,
            ``"connect"``, ``"disconnect"``).
        outputs: output index map of every vertex whose output neurons changed.
        inputs: input index maps (one per input edge) of every vertex whose inputs changed.
        nout_before / nout_after: sizes of the vertices whose size changed.
        added / removed: vertex names added to or removed from the graph.
        edges_added / edges_removed: ``(src, dst, position)`` triples.
        groups: ``name -> (before, after)`` for grouped vertices whose group count changed.
        copies / input_copies: like ``outputs`` / ``inputs``, but each new neuron names an
            old neuron it may copy (Net2WiderNet), consistently across aligned vertices;
            -1 where there is nothing to copy.
        stats: timings and problem sizes (``build_s``, ``solve_s``, ``n_participants``,
            ``n_classes``, ``n_milp_classes``).

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(2, name="x"), nout=3, name="a")
        >>> b = g.absorb(a, nout=2, name="b")
        >>> change = g.resize("a", -1, utility=lambda v: [3.0, 1.0, 2.0] if v.name == "a" else None)
        >>> change.outputs["a"].tolist(), [m.tolist() for m in change.inputs["b"]]
        ([0, 2], [[0, 2]])
    """

    kind: str
    outputs: IndexMaps = field(default_factory=IndexMaps)
    inputs: IndexMaps = field(default_factory=IndexMaps)
    nout_before: dict[str, int] = field(default_factory=dict)
    nout_after: dict[str, int] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    edges_added: list[tuple[str, str, int]] = field(default_factory=list)
    edges_removed: list[tuple[str, str, int]] = field(default_factory=list)
    groups: dict[str, tuple[int, int]] = field(default_factory=dict)
    copies: IndexMaps = field(default_factory=IndexMaps)
    input_copies: IndexMaps = field(default_factory=IndexMaps)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def vertices(self) -> list[str]:
        """Names of every vertex this change touched."""
        names = list(self.outputs) + list(self.inputs) + self.added
        return list(dict.fromkeys(names))

    def __bool__(self) -> bool:
        return bool(self.outputs or self.inputs or self.added or self.removed)

    def merge(self, later: Change) -> Change:
        """Compose ``self`` followed by ``later`` into one record (maps are chained)."""
        merged = Change(self.kind)
        for name in dict.fromkeys(list(self.outputs) + list(later.outputs)):
            merged.outputs[name] = _chain(self.outputs.get(name), later.outputs.get(name))
        for name in dict.fromkeys(list(self.inputs) + list(later.inputs)):
            first, second = self.inputs.get(name), later.inputs.get(name)
            if first is None or second is None or len(first) != len(second):
                merged.inputs[name] = second if second is not None else first
            else:
                merged.inputs[name] = [_chain(a, b) for a, b in zip(first, second, strict=True)]
        merged.nout_before = {**later.nout_before, **self.nout_before}
        merged.nout_after = {**self.nout_after, **later.nout_after}
        merged.added = self.added + [n for n in later.added if n not in self.added]
        merged.removed = self.removed + later.removed
        merged.edges_added = self.edges_added + later.edges_added
        merged.edges_removed = self.edges_removed + later.edges_removed
        merged.groups = {**self.groups, **later.groups}
        merged.copies = IndexMaps({**self.copies, **later.copies})
        merged.input_copies = IndexMaps({**self.input_copies, **later.input_copies})
        merged.stats = {**self.stats, **later.stats}
        return merged

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{n}: {self.nout_before.get(n)}->{self.nout_after[n]}" for n in self.nout_after
        )
        return f"Change({self.kind}, {{{sizes}}}, added={self.added}, removed={self.removed})"


def _chain(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray:
    if first is None:
        return second
    if second is None:
        return first
    out = np.full(len(second), -1, dtype=np.int64)
    kept = second >= 0
    out[kept] = first[second[kept]]
    return out
