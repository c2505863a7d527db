"""Turn a solved size problem into index maps, and commit them to the graph.

Decoding picks, for every class, the kept slots with the highest utility (ties: lower
index first) and places new slots right after the class. Sources' maps follow from their
pieces; transparent vertices' maps follow from their inputs', in topological order.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mutnas.change import Change, is_identity
from mutnas.errors import SizeError
from mutnas.graph import Graph, _inconsistency
from mutnas.problem import SizeProblem
from mutnas.segments import NEW, OLD, REWIRED, Partition, is_extra
from mutnas.solve import Solution
from mutnas.validate import max_size
from mutnas.vertex import ADD, INPUT, INVARIANT, Vertex

__all__ = ["Edits", "commit", "decode", "positional"]


@dataclass
class Edits:
    """Edge bookkeeping of a structural edit, used to express maps in old columns.

    Attributes:
        origin: ``(consumer, new position) -> (old position or None, identity)``. Edges not
            listed kept their position and producer. ``identity`` is False for an edge whose
            producer changed: its columns are then reused by position.
        old_nin: consumer -> its input sizes before the edit, by old position.
    """

    origin: dict[tuple[str, int], tuple[int | None, bool]] = field(default_factory=dict)
    old_nin: dict[str, list[int]] = field(default_factory=dict)

    def mode(self, consumer: str, position: int) -> int:
        """OLD, NEW (no old columns) or REWIRED (producer changed: reuse by position)."""
        entry = self.origin.get((consumer, position))
        if entry is None or entry[1]:
            return OLD
        return NEW if entry[0] is None else REWIRED

    def source_of(self, consumer: str, position: int) -> tuple[int | None, bool]:
        return self.origin.get((consumer, position), (position, True))

    def nin_before(self, v: Vertex) -> list[int]:
        return self.old_nin.get(v.name) or v.nin


def positional(n_new: int, n_old: int) -> np.ndarray:
    """Reuse old columns by position: ``[0, 1, ..., n_old-1, -1, ...]`` cut to ``n_new``."""
    index = np.arange(n_new, dtype=np.int64)
    index[index >= n_old] = -1
    return index


def decode(
    partition: Partition, problem: SizeProblem, solution: Solution, edits: Edits
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Output index maps of every participant, and the matching *copy* maps.

    A copy map is the index map with each new neuron replaced by an old neuron it may
    copy (Net2WiderNet): chosen once per class of aligned neurons, so every vertex that
    carries a class copies the same neurons. Neurons with nothing to copy stay -1.
    """
    kept, copied = [], []
    for c, info in enumerate(problem.classes):
        n_keep = int(solution.keep[c])
        if n_keep == info.length:
            kept.append(np.arange(info.length, dtype=np.int64))
        else:
            best = np.argsort(-info.utility, kind="stable")[:n_keep]
            kept.append(np.sort(best).astype(np.int64))
        n_new = int(solution.new[c])
        if n_new and len(kept[c]):
            rng = np.random.default_rng(zlib.crc32(repr(info.key).encode()))
            copied.append(np.sort(rng.choice(kept[c], size=n_new)))
        else:
            copied.append(np.full(n_new, -1, dtype=np.int64))
    maps: dict[str, np.ndarray] = {}
    copies: dict[str, np.ndarray] = {}
    for v in partition.order:
        if v.is_source:
            maps[v.name], copies[v.name] = _source_maps(
                v, partition, problem, solution, kept, copied
            )
        else:
            for table in (maps, copies):
                table[v.name] = _transparent_map(v, partition, table, edits)
    return maps, copies


def _source_maps(v, partition, problem, solution, kept, copied):
    parts, copy_parts = [], []
    for entry in partition.source_seq(v.name):
        if is_extra(entry):
            fresh = np.full(int(solution.extra[problem.xindex[entry]]), -1, dtype=np.int64)
            parts.append(fresh)
            copy_parts.append(fresh)
            continue
        c = problem.class_of(entry)
        start = entry[1]
        fresh = np.full(int(solution.new[c]), -1, dtype=np.int64)
        parts += [start + kept[c], fresh]
        copy_parts += [start + kept[c], np.where(copied[c] >= 0, start + copied[c], -1)]
    return np.concatenate(parts), np.concatenate(copy_parts)


def _transparent_map(v, partition, maps, edits) -> np.ndarray:
    if v.kind == INVARIANT:
        return input_map(v, 0, maps, edits)
    if v.kind == ADD:
        return input_map(v, partition.primary_input(v), maps, edits)
    return _concat_map(v, maps, edits)


def input_map(w: Vertex, pos: int, maps: dict[str, np.ndarray], edits: Edits) -> np.ndarray:
    """Index map of ``w``'s input ``pos`` in ``w``'s old columns."""
    u = w.inputs[pos]
    produced = maps.get(u.name)
    old_pos, identity = edits.source_of(w.name, pos)
    if identity:
        return produced if produced is not None else np.arange(u.nout, dtype=np.int64)
    n_new = len(produced) if produced is not None else u.nout
    n_old = 0 if old_pos is None else edits.nin_before(w)[old_pos]
    return positional(n_new, n_old)


def _concat_map(v: Vertex, maps: dict[str, np.ndarray], edits: Edits) -> np.ndarray:
    offsets = np.concatenate([[0], np.cumsum(edits.nin_before(v))])
    parts = []
    for pos in range(len(v.inputs)):
        index = input_map(v, pos, maps, edits)
        old_pos, _ = edits.source_of(v.name, pos)
        if old_pos is None:
            parts.append(np.full(len(index), -1, dtype=np.int64))
        else:
            parts.append(np.where(index >= 0, index + offsets[old_pos], -1))
    return np.concatenate(parts).astype(np.int64)


def commit(
    graph: Graph,
    partition: Partition,
    problem: SizeProblem,
    solution: Solution,
    edits: Edits,
    kind: str,
    extra_consumers: Iterable[Vertex] = (),
) -> Change:
    """Apply the solution to the graph and return the change record (all or nothing)."""
    maps, copies = decode(partition, problem, solution, edits)
    moved = [
        v
        for v in partition.order
        if v.fixed and v.kind != INPUT and not is_identity(maps[v.name], v.nout)
    ]
    if moved:  # a structural edit rewired the slots a fixed vertex carries
        described = ", ".join(f"{v.name!r} ({v.nout} -> {len(maps[v.name])})" for v in moved)
        raise SizeError(
            f"{kind} would change the neurons of fixed vertex {described}; fixed vertices "
            f"(graph outputs, pinned layers) keep theirs, so change another edge or layer",
            [v.name for v in moved],
        )
    _check_bound(kind, partition, maps)
    change = Change(kind)
    old_groups = {b.vertex: graph[b.vertex].groups for b in partition.groups}
    widths = {b.vertex: b.width_out for b in partition.groups}
    consumers = {w.name: w for v in partition.order for w in v.outputs}
    consumers.update({w.name: w for w in extra_consumers})
    touched = {v.name: v for v in partition.order} | consumers
    saved = {n: (v._nout, v.utility, v.groups) for n, v in touched.items()}
    old_nin = {name: edits.nin_before(w) for name, w in touched.items()}
    input_maps = {
        name: [input_map(w, p, maps, edits) for p in range(len(w.inputs))]
        for name, w in touched.items()
    }
    input_copies = {
        name: [input_map(w, p, copies, edits) for p in range(len(w.inputs))]
        for name, w in touched.items()
    }
    for v in partition.order:
        index = maps[v.name]
        if not is_identity(index, v.nout):
            change.outputs[v.name] = index
            change.copies[v.name] = copies[v.name]
        if len(index) != v.nout:
            change.nout_before[v.name], change.nout_after[v.name] = v.nout, len(index)
        if v.utility is not None and not is_identity(index, v.nout):
            v.utility = _permute(v.utility, index)
        v._nout = len(index)
        if v.name in widths:
            v.groups = v._nout // widths[v.name]
            if v.groups != old_groups[v.name]:
                change.groups[v.name] = (old_groups[v.name], v.groups)
    for name, w in touched.items():
        old, ims = old_nin[name], input_maps[name]
        changed = len(old) != len(ims) or any(
            not is_identity(m, n) for m, n in zip(ims, old, strict=False)
        )
        if changed or any((name, p) in edits.origin for p in range(len(w.inputs))):
            change.inputs[name] = ims
            change.input_copies[name] = input_copies[name]
    problems = [p for w in touched.values() if w in graph and (p := _inconsistency(w))]
    if problems:
        for name, (nout, utility, groups) in saved.items():
            touched[name]._nout, touched[name].utility, touched[name].groups = nout, utility, groups
        raise SizeError(
            "internal error: the solution left sizes inconsistent; please report this "
            "with the graph's JSON: " + "; ".join(problems),
            list(touched),
        )
    change.stats.update(
        build_s=solution.build_s,
        solve_s=solution.solve_s,
        n_participants=len(partition.order),
        n_classes=len(problem.classes),
        n_milp_classes=solution.n_milp_classes,
    )
    return change


def _check_bound(kind: str, partition: Partition, maps: dict[str, np.ndarray]) -> None:
    """Refuse a solution that grows a vertex past :func:`mutnas.validate.max_size`.

    Requested sizes are checked before solving; this catches sizes that follow from them
    (a concat whose inputs grew).
    """
    over = [v.name for v in partition.order if len(maps[v.name]) > max_size()]
    if over:
        described = ", ".join(f"{n!r} ({len(maps[n])})" for n in over)
        raise SizeError(
            f"{kind} would grow {described} above the size bound {max_size()}; raise it "
            "with mutnas.advanced.set_max_size(n) if the size is meant",
            over,
        )


def _permute(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    out = np.zeros(len(index), dtype=float)
    kept = (index >= 0) & (index < len(values))
    out[kept] = values[index[kept]]
    return out
