"""The size problem of one mutation, before it is handed to a solver.

Variables, per class of aligned pieces (see :mod:`mutnas.segments`): ``k`` = how many of
its slots are kept and ``g`` = how many new slots are inserted right after it. The size of
a vertex is then ``N_v = sum over the classes c in v of mult(v, c) * (k_c + g_c)``. Every
constraint is stated on such size expressions, so independent parts of the graph fall
apart into independent components, most of which have one class and are solved in closed
form (:mod:`mutnas.solve`).

The objective (maximised) is the utility of the kept slots, minus a small cost per new
slot, minus a penalty on the relative size change of vertices nobody asked to change
(``0.1 * L1 + 0.8 * max``, after NaiveNASlib), minus, in relaxed mode, a large penalty on
the distance to each requested size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mutnas.segments import Entry, Key, Partition, is_extra
from mutnas.vertex import Vertex

__all__ = ["Component", "SizeProblem", "SizeTerm", "Weights"]


@dataclass(frozen=True)
class Weights:
    """Objective weights. Utilities are scaled to at most 1 per slot before use."""

    new_slot: float = 1e-3
    change_l1: float = 0.1
    change_max: float = 0.8
    relaxed: float = 100.0
    resize_floor: float = 0.1  # in resize mode, utilities are mapped into [floor, 1]


@dataclass
class ClassInfo:
    """One variable pair (k, g) of the problem."""

    key: Key
    length: int
    k_min: int
    g_max: int | None  # None: unbounded
    utility: np.ndarray  # summed raw utility per relative slot


@dataclass
class ExtraInfo:
    """A run of new slots owned by one source at one place (see ``Partition.extras``)."""

    key: tuple
    x_max: int | None  # 0: forbidden, None: unbounded


@dataclass
class SizeTerm:
    """A size as a combination of variables.

    ``coef``: ``{class index: multiplicity}`` (each counts its kept and new slots);
    ``xcoef``: ``{extra index: multiplicity}``.
    """

    vertex: str
    n_old: int
    coef: dict[int, int]
    xcoef: dict[int, int] = field(default_factory=dict)

    def nodes(self, n_classes: int) -> list[int]:
        return list(self.coef) + [n_classes + e for e in self.xcoef]


@dataclass
class Component:
    """Classes and constraints that do not interact with the rest of the problem."""

    classes: list[int]
    extras: list[int] = field(default_factory=list)
    bounds: list[tuple[SizeTerm, int, int | None]] = field(default_factory=list)
    multiples: list[tuple[SizeTerm, int]] = field(default_factory=list)
    targets: list[tuple[SizeTerm, int]] = field(default_factory=list)
    relaxed: list[tuple[SizeTerm, int]] = field(default_factory=list)
    penalties: list[SizeTerm] = field(default_factory=list)
    equalities: list[tuple[SizeTerm, SizeTerm]] = field(default_factory=list)
    groups: list[tuple] = field(default_factory=list)

    def vertices(self) -> list[str]:
        names: list[str] = []
        for term, *_ in self.bounds + self.multiples + self.targets + self.relaxed:
            names.append(term.vertex)
        names += [t.vertex for t in self.penalties]
        names += [t.vertex for pair in self.equalities for t in pair]
        names += [g[0] for g in self.groups]
        return list(dict.fromkeys(names))


class SizeProblem:
    """Build the size problem of a partition and a request.

    Args:
        partition: the participants' classes.
        targets: requested sizes, by vertex name.
        relaxed: if True, targets move into the objective with a direction constraint.
        prune: pure re-selection: no new slots, no change penalties, raw utilities.
        utility: ``vertex -> array or None`` (per output slot of that vertex).
        weights: objective weights.
        equal: pairs of vertex names whose sizes must end up equal.
    """

    def __init__(
        self,
        partition: Partition,
        *,
        targets: dict[str, int],
        relaxed: bool = False,
        prune: bool = False,
        utility: Callable[[Vertex], np.ndarray | None],
        weights: Weights = Weights(),
        equal: Sequence[tuple[str, str]] = (),
    ):
        self.partition = partition
        self.equal = list(equal)
        self.targets = targets
        self.relaxed = relaxed
        self.prune = prune
        self.weights = weights
        roots = sorted({partition.find(k) for k in partition.parent})
        self.index = {root: i for i, root in enumerate(roots)}
        self.classes = [self._class_info(root) for root in roots]
        extra_keys = [
            ("+", s, st) for s, starts in partition.extras.items() for st in sorted(starts)
        ]
        self.xindex = {key: i for i, key in enumerate(extra_keys)}
        self.extras = [self._extra_info(key) for key in extra_keys]
        self.terms = {
            v.name: self._term(v.name, v.nout, partition.seqs[v.name]) for v in partition.order
        }
        self._pin_fixed_transparent()
        self._add_utilities(utility)
        self.components = self._components()

    # ------------------------------------------------------------ variables
    def class_of(self, key: Key) -> int:
        return self.index[self.partition.find(key)]

    def _class_info(self, root: Key) -> ClassInfo:
        part = self.partition
        members = part.members[root]
        length = part.length[root]
        sources = [part.vertices[s] for s, _ in members]
        fixed = any(v.fixed for v in sources)
        at_end = any(start + length == part.vertices[s].nout for s, start in members)
        g_max = 0 if (fixed or self.prune or not at_end) else None
        return ClassInfo(root, length, length if fixed else 0, g_max, np.zeros(length))

    def _pin_fixed_transparent(self) -> None:
        """A fixed add/invariant/concat keeps exactly the slots it carries, and gets none."""
        for v in self.partition.order:
            if not (v.fixed and v.is_transparent):
                continue
            for key in self.partition.seqs[v.name]:
                if is_extra(key):
                    self.extras[self.xindex[key]].x_max = 0
                else:
                    info = self.classes[self.class_of(key)]
                    info.k_min, info.g_max = info.length, 0

    def frozen(self) -> set[str]:
        """Names of participants none of whose slots may be dropped."""
        out = set()
        for v in self.partition.order:
            term = self.terms[v.name]
            if all(self.classes[c].k_min == self.classes[c].length for c in term.coef):
                out.add(v.name)
        return out

    def _extra_info(self, key: tuple) -> ExtraInfo:
        source = self.partition.vertices[key[1]]
        return ExtraInfo(key, 0 if (source.fixed or self.prune) else None)

    def _term(self, name: str, n_old: int, entries: list[Entry]) -> SizeTerm:
        term = SizeTerm(name, n_old, {})
        for key in entries:
            if is_extra(key):
                e = self.xindex[key]
                term.xcoef[e] = term.xcoef.get(e, 0) + 1
            else:
                c = self.class_of(key)
                term.coef[c] = term.coef.get(c, 0) + 1
        return term

    def _add_utilities(self, utility: Callable[[Vertex], np.ndarray | None]) -> None:
        part = self.partition
        for v in part.order:
            values = utility(v)
            if values is None:
                continue
            values = np.asarray(values, dtype=float).ravel()
            seq = part.seqs[v.name]
            if len(values) != part.seq_length(seq) or any(map(is_extra, seq)):
                continue  # sizes in flux (structural edit): this vertex's values do not apply
            position = 0
            for key in seq:
                info = self.classes[self.class_of(key)]
                info.utility += values[position : position + info.length]
                position += info.length
        self._scale_utilities()

    def _scale_utilities(self) -> None:
        """Map utilities to a sane range: [-1, 1] for prune, [floor, 1] for resizes."""
        mutable = [c.utility for c in self.classes if c.k_min < c.length]
        if not mutable:
            return
        values = np.concatenate(mutable)
        lo, hi = float(values.min()), float(values.max())
        for c in self.classes:
            if self.prune:
                scale = max(abs(lo), abs(hi))
                c.utility = c.utility / scale if scale > 0 else c.utility
            elif hi > lo:
                floor = self.weights.resize_floor
                c.utility = floor + (1 - floor) * (c.utility - lo) / (hi - lo)
            else:
                c.utility = np.ones_like(c.utility)

    # ------------------------------------------------------------ constraints
    def _components(self) -> list[Component]:
        part = self.partition
        n_classes = len(self.classes)
        parent = list(range(n_classes + len(self.extras)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        entries: list[tuple[str, tuple]] = []
        for v in part.order:
            entries.extend(self._vertex_constraints(v, self.terms[v.name]))
        for a, b in list(part.equalities) + self.equal:
            entries.append(("equalities", (self.terms[a], self.terms[b])))
        for i, (run_a, run_b) in enumerate(part.links):
            a = self._term(f"<new slots {i}>", 0, run_a)
            b = self._term(f"<new slots {i}>", 0, run_b)
            entries.append(("equalities", (a, b)))
        for blocks in part.groups:
            entries.append(("groups", self._group_entry(blocks)))
        nodes_of = [self._nodes(entry) for entry in entries]
        for nodes in nodes_of:
            root = find(nodes[0])
            for node in nodes[1:]:
                parent[find(node)] = root
        components: dict[int, Component] = {}
        for i in range(n_classes):
            components.setdefault(find(i), Component([])).classes.append(i)
        for e in range(len(self.extras)):
            components.setdefault(find(n_classes + e), Component([])).extras.append(e)
        for (kind, payload), nodes in zip(entries, nodes_of, strict=True):
            getattr(components[find(nodes[0])], kind).append(payload)
        return list(components.values())

    def _nodes(self, entry: tuple[str, tuple]) -> list[int]:
        kind, payload = entry
        n = len(self.classes)
        if kind == "equalities":
            return payload[0].nodes(n) + payload[1].nodes(n)
        if kind == "groups":
            _, _, _, blocks, interior, xinterior, last_in, last_out = payload
            classes = [c for block in blocks for c in block] + interior + [last_in, last_out]
            return classes + [n + e for e in xinterior]
        if kind == "penalties":
            return payload.nodes(n)
        return payload[0].nodes(n)

    def _vertex_constraints(self, v: Vertex, term: SizeTerm):
        if not term.coef and not term.xcoef:
            return
        n_classes_fixed = all(self.classes[c].k_min == self.classes[c].length for c in term.coef)
        lo = v.min_nout if (v.is_source or v.min_nout > 1) else 1
        if v.max_nout is not None or lo > 1 or (v.is_source and not n_classes_fixed):
            yield "bounds", (term, lo, v.max_nout)
        if v.multiple_of > 1:
            yield "multiples", (term, v.multiple_of)
        if v.name in self.targets:
            kind = "relaxed" if self.relaxed else "targets"
            yield kind, (term, self.targets[v.name])
        elif not self.prune and v.is_source and not v.fixed:
            yield "penalties", term

    def _group_entry(self, blocks):
        cls = self.class_of
        block_classes = [[cls(k) for k in block] for block in blocks.blocks]
        interior = [cls(k) for k in blocks.interior if not is_extra(k)]
        xinterior = [self.xindex[k] for k in blocks.interior if is_extra(k)]
        return (
            blocks.vertex,
            blocks.width_in,
            blocks.width_out,
            block_classes,
            interior,
            xinterior,
            cls(blocks.last_in),
            cls(blocks.last_out),
        )
