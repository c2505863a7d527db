"""Participants of a change and the partition of their neurons into aligned segments.

Every neuron slot of every participating vertex belongs to exactly one *source* vertex
(an input or an absorb vertex): invariant and add vertices reuse their inputs' slots and a
concat stacks them. Elementwise merges force slots of different sources to be aligned one
to one. Instead of one variable per neuron, we cut each source into *pieces* and group
pieces that are aligned somewhere into *classes*; every vertex that contains one slot of a
class contains all of them, in the same order. So only the *number* of kept slots of a
class matters to the sizes, and choosing which ones to keep is a sort by utility.

An add whose inputs currently have different sizes (only possible in the middle of a
structural edit) cannot align slots; it contributes a size equality instead.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mutnas.errors import SizeCycleError, SizeError
from mutnas.vertex import ADD, CONCAT, INVARIANT, Vertex

__all__ = ["GroupBlocks", "Partition", "find_participants"]

Key = tuple[str, int]  # a piece: (source vertex name, start slot)
XKey = tuple[
    str, str, int
]  # an extra run of new slots: ("+", source, after which start; -1: front)
Entry = Key | XKey

OLD, NEW, REWIRED = 0, 1, 2  # edge modes; also tags of sequence entries


def is_extra(entry: Entry) -> bool:
    return len(entry) == 3


def _spreads(v: Vertex) -> bool:
    return v.is_transparent or v.is_grouped


def find_participants(seeds: Iterable[Vertex]) -> list[Vertex]:
    """Vertices whose output sizes can change when the seeds' sizes change.

    A size change spreads through transparent vertices (and grouped absorb vertices, whose
    input and output groups are tied) and stops at dense absorb vertices, whose input size
    follows but whose output size is free.
    """
    found: dict[str, Vertex] = {}
    stack = list(seeds)
    while stack:
        v = stack.pop()
        if v.name in found:
            continue
        found[v.name] = v
        if _spreads(v):
            stack.extend(v.inputs)
        stack.extend(w for w in v.outputs if _spreads(w))
    return _local_topological(found)


def _local_topological(found: dict[str, Vertex]) -> list[Vertex]:
    indegree = {name: sum(u.name in found for u in v.inputs) for name, v in found.items()}
    stack = [v for name, v in found.items() if indegree[name] == 0]
    stack.reverse()
    order = []
    while stack:
        v = stack.pop()
        order.append(v)
        for w in v.outputs:
            if w.name in found:
                indegree[w.name] -= 1
                if indegree[w.name] == 0:
                    stack.append(w)
    return order


@dataclass
class GroupBlocks:
    """Blocks of a grouped vertex: block j of its input is tied to block j of its output."""

    vertex: str
    width_in: int
    width_out: int
    blocks: list[list[Key]] = field(default_factory=list)  # pieces (input and output) per block
    interior: list[Entry] = field(default_factory=list)  # entries whose new slots must stay 0
    last_in: Key | None = None
    last_out: Key | None = None


Tagged = list[tuple[Entry, int]]


class Partition:
    """Classes of aligned pieces over a set of participating vertices.

    Args:
        participants: vertices in topological order (see :func:`find_participants`).
        edge_mode: ``(consumer, position) -> OLD | NEW | REWIRED`` for the edge into
            ``consumer`` at ``position``. NEW: added by the edit in progress (its slots are
            new to whatever was aligned with the consumer); REWIRED: its producer changed
            (slots are paired by position). Default: every edge is OLD.

    Attributes:
        seqs: per vertex, its output as a list of entries (pieces and extras).
        links: pairs of entry runs whose sizes must be equal (new slots matched up).
        equalities: ``(add vertex, input)`` pairs that only need equal sizes (positional).
        groups: block structure of every grouped vertex.
    """

    def __init__(
        self,
        participants: list[Vertex],
        edge_mode: Callable[[str, int], int] | None = None,
    ):
        self.order = participants
        self.vertices = {v.name: v for v in participants}
        self._mode = edge_mode or (lambda _c, _p: OLD)
        self.cuts: dict[str, list[int]] = {}
        self.extras: dict[str, set[int]] = {}
        self.parent: dict[Key, Key] = {}
        self.length: dict[Key, int] = {}
        self.members: dict[Key, list[Key]] = {}
        for v in participants:
            if v.is_source:
                key = (v.name, 0)
                self.cuts[v.name] = [0]
                self.extras[v.name] = set()
                self.parent[key] = key
                self.length[key] = v.nout
                self.members[key] = [key]
        self.equalities: list[tuple[str, str]] = []
        self.links: list[tuple[list[Entry], list[Entry]]] = []
        self.groups: list[GroupBlocks] = []
        self.seqs: dict[str, list[Entry]] = {}
        self._check_inputs_present()
        self._check_size_cycles()
        while self._align_once():
            pass

    # ------------------------------------------------------------ union-find on pieces
    def find(self, key: Key) -> Key:
        root = key
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[key] != root:
            self.parent[key], key = root, self.parent[key]
        return root

    def _union(self, a: Key, b: Key) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra].extend(self.members.pop(rb))
        del self.length[rb]

    def _split(self, key: Key, offset: int) -> None:
        """Cut the class of ``key`` after ``offset`` slots, in every member."""
        root = self.find(key)
        total = self.length[root]
        new_keys = []
        for source, start in self.members[root]:
            new = (source, start + offset)
            bisect.insort(self.cuts[source], start + offset)
            new_keys.append(new)
        new_root = new_keys[0]
        for new in new_keys:
            self.parent[new] = new_root
        self.members[new_root] = new_keys
        self.length[new_root] = total - offset
        self.length[root] = offset

    def piece_length(self, key: Key) -> int:
        return self.length[self.find(key)]

    def seq_length(self, seq: list[Entry]) -> int:
        """Current number of slots in a sequence (extras count as empty)."""
        return sum(self.length[self.find(k)] for k in seq if not is_extra(k))

    # ------------------------------------------------------------ sequences
    def source_seq(self, name: str) -> list[Entry]:
        """A source's own entries: its pieces, each followed by its extra run if any."""
        extras = self.extras[name]
        seq: list[Entry] = [("+", name, -1)] if -1 in extras else []
        for start in self.cuts[name]:
            seq.append((name, start))
            if start in extras:
                seq.append(("+", name, start))
        return seq

    def primary_input(self, v: Vertex) -> int:
        """Position of the input that defines an add vertex's slots (an old edge first)."""
        for pos in range(len(v.inputs)):
            if self._mode(v.name, pos) == OLD:
                return pos
        return 0

    def _compute_seqs(self) -> dict[str, Tagged]:
        tagged: dict[str, Tagged] = {}
        for v in self.order:
            if v.is_source:
                tagged[v.name] = [(e, OLD) for e in self.source_seq(v.name)]
            elif v.kind == INVARIANT:
                tagged[v.name] = _retag(tagged[v.inputs[0].name], self._mode(v.name, 0))
            elif v.kind == ADD:
                pos = self.primary_input(v)
                tagged[v.name] = _retag(tagged[v.inputs[pos].name], self._mode(v.name, pos))
            elif v.kind == CONCAT:
                tagged[v.name] = [
                    item
                    for pos, u in enumerate(v.inputs)
                    for item in _retag(tagged[u.name], self._mode(v.name, pos))
                ]
        self.seqs = {name: [e for e, _ in seq] for name, seq in tagged.items()}
        return tagged

    def _align_once(self) -> bool:
        """One pass of alignment. Returns True when the pieces changed (start again)."""
        tagged = self._compute_seqs()
        self.equalities, self.links = [], []
        for v in self.order:
            if v.kind != ADD:
                continue
            primary = self.primary_input(v)
            mine = tagged[v.name]
            for pos, u in enumerate(v.inputs):
                if pos == primary:
                    continue
                theirs = tagged[u.name]
                if self._mode(v.name, pos) != OLD:
                    theirs = _retag(theirs, REWIRED)
                if self._align(mine, theirs):
                    return True
                if self._fallback:
                    self.equalities.append((v.name, u.name))
        return self._cut_groups()

    def _align(self, a: Tagged, b: Tagged) -> bool:
        """Align two sequences that an add merges. True: pieces changed, start again."""
        self._fallback = False
        if any(t == REWIRED for _, t in a) or any(t == REWIRED for _, t in b):
            plain_a, plain_b = [e for e, _ in a], [e for e, _ in b]
            if any(map(is_extra, plain_a + plain_b)) or (
                self.seq_length(plain_a) != self.seq_length(plain_b)
            ):
                self._fallback = True
                return False
            return self._align_pieces(plain_a, plain_b)
        i = j = 0
        while True:
            run_a, i_end = _variable_run(a, i)
            run_b, j_end = _variable_run(b, j)
            if run_a != run_b:
                if not run_a:
                    return self._add_extra(a, i)
                if not run_b:
                    return self._add_extra(b, j)
                self.links.append((run_a, run_b))
            i, j = i_end, j_end
            if i == len(a) or j == len(b):
                self._fallback = i != len(a) or j != len(b)
                return False
            (ka, _), (kb, _) = a[i], b[j]
            la, lb = self.piece_length(ka), self.piece_length(kb)
            if la != lb:
                self._split(ka, lb) if la > lb else self._split(kb, la)
                return True
            self._union(ka, kb)
            i, j = i + 1, j + 1

    def _align_pieces(self, a: list[Entry], b: list[Entry]) -> bool:
        for ka, kb in zip(a, b, strict=False):
            la, lb = self.piece_length(ka), self.piece_length(kb)
            if la != lb:
                self._split(ka, lb) if la > lb else self._split(kb, la)
                return True
            self._union(ka, kb)
        return False

    def _add_extra(self, seq: Tagged, index: int) -> bool:
        """Open a run of new slots in ``seq`` at ``index`` (after a piece, or at a front)."""
        before = seq[index - 1][0] if index > 0 else None
        after = seq[index][0] if index < len(seq) else None
        candidates = []
        if before is not None:
            candidates.append((before[0], before[1]))
        if after is not None and not is_extra(after):
            cuts = self.cuts[after[0]]
            at = bisect.bisect_left(cuts, after[1])
            candidates.append((after[0], cuts[at - 1] if at else -1))
        free = [c for c in candidates if not self.vertices[c[0]].fixed]
        source, start = (free or candidates)[0]
        self.extras[source].add(start)
        return True

    # ------------------------------------------------------------ checks
    def _cut_at(self, seq: list[Entry], width: int) -> bool:
        """Cut ``seq``'s pieces at every multiple of ``width``; True if anything was cut.

        All boundaries are cut in one walk (a grouped vertex has one per group). A walk
        stops early at a piece whose class it already cut (the sequence holds that class
        twice and is stale): the caller recomputes the sequences and walks again.
        """
        position, cut = 0, False
        touched: set[Key] = set()
        for key in seq:
            if is_extra(key):
                continue
            root = self.find(key)
            if root in touched:
                return True
            n = self.length[root]
            boundary = (position // width + 1) * width
            while position < boundary < position + n:
                offset = boundary - position
                self._split(key, offset)
                touched.add(self.find(key))
                key, position, n = (key[0], key[1] + offset), boundary, n - offset
                touched.add(self.find(key))
                boundary += width
                cut = True
            position += n
        return cut

    def _cut_groups(self) -> bool:
        """Cut grouped vertices' inputs and outputs at group boundaries; record blocks.

        Cuts refine classes in every member, so alignments made so far stay valid and only
        the sequences need recomputing between vertices. Returns True if anything was cut
        (the caller aligns once more); blocks are recorded on a pass without cuts.
        """
        self.groups = []
        changed = False
        for v in self.order:
            if not v.is_grouped:
                continue
            while True:
                seq_in, seq_out = self.seqs[v.inputs[0].name], self.seqs[v.name]
                n_in, n_out = self.seq_length(seq_in), self.seq_length(seq_out)
                if n_in % v.groups or n_out % v.groups:
                    raise SizeError(
                        f"grouped vertex {v.name!r} (groups={v.groups}) would get {n_in} input "
                        f"channels, which its groups do not divide",
                        [v.name, v.inputs[0].name],
                    )
                w_in, w_out = n_in // v.groups, n_out // v.groups
                if not (self._cut_at(seq_in, w_in) or self._cut_at(seq_out, w_out)):
                    break
                changed = True
                self._compute_seqs()
            if changed:
                continue
            pieces_in = [k for k in seq_in if not is_extra(k)]
            pieces_out = [k for k in seq_out if not is_extra(k)]
            blocks = GroupBlocks(
                v.name, w_in, w_out, last_in=pieces_in[-1], last_out=pieces_out[-1]
            )
            blocks.blocks = [[] for _ in range(v.groups)]
            for pieces, width in ((pieces_in, w_in), (pieces_out, w_out)):
                position = 0
                for key in pieces:
                    blocks.blocks[position // width].append(key)
                    position += self.piece_length(key)
                blocks.interior.extend(pieces[:-1])
            blocks.interior.extend(k for k in seq_in + seq_out if is_extra(k))
            self.groups.append(blocks)
        return changed

    def _check_inputs_present(self) -> None:
        for v in self.order:
            if (v.is_transparent or v.is_grouped) and not v.inputs:
                raise SizeError(f"{v.kind} vertex {v.name!r} has no inputs", [v.name])

    def _check_size_cycles(self) -> None:
        """Refuse structures where a size must equal itself plus something positive."""
        same = {v.name: v.name for v in self.order}

        def root(n: str) -> str:
            while same[n] != n:
                same[n] = same[same[n]]
                n = same[n]
            return n

        for v in self.order:
            if v.kind in (INVARIANT, ADD) or (v.kind == CONCAT and len(v.inputs) == 1):
                for u in v.inputs:
                    same[root(u.name)] = root(v.name)
        edges: dict[str, set[str]] = {}
        origin: dict[tuple[str, str], str] = {}
        for v in self.order:
            if v.kind == CONCAT and len(v.inputs) > 1:
                for u in v.inputs:
                    edges.setdefault(root(v.name), set()).add(root(u.name))
                    origin[(root(v.name), root(u.name))] = v.name
        cycle = _find_cycle(edges)
        if cycle:
            concats = sorted({origin[(a, b)] for a, b in itertools.pairwise(cycle)})
            raise SizeCycleError(
                f"size cycle: concat {concats} would have to be as large as one of its own "
                f"inputs plus the others, because its output is aligned (through add or "
                f"invariant vertices) with that input; no sizes can satisfy this — remove "
                f"the edge that closes the loop",
                concats + [c for c in cycle if c not in concats],
            )


def _retag(seq: Tagged, mode: int) -> Tagged:
    if mode == OLD:
        return seq
    return [(e, max(t, mode)) for e, t in seq]


def _variable_run(seq: Tagged, i: int) -> tuple[list[Entry], int]:
    """Entries from ``i`` whose size is not tied to a piece there: extras and new slots."""
    j = i
    while j < len(seq) and (is_extra(seq[j][0]) or seq[j][1] == NEW):
        j += 1
    return [e for e, _ in seq[i:j]], j


def _find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    for start in edges:
        if state.get(start):
            continue
        stack = [(start, iter(edges.get(start, ())))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(edges.get(nxt, ()))))
                path.append(nxt)
    return None
