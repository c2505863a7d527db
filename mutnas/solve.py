"""Solving size problems: closed form where possible, PuLP (CBC or HiGHS) elsewhere.

A component with one class of slots is a one-dimensional problem: for every candidate
total ``S = k + g`` the best ``k`` is a clamp of the unconstrained optimum (the utility
curve is concave), so a vectorised scan over ``S`` is exact. A component that is one
grouped vertex (a grouped convolution between two dense layers) is two-dimensional:
whole blocks are kept or dropped and new blocks are appended, so when every block weighs
the same in every size, the sizes depend only on the number of kept blocks ``B`` and of
new blocks ``h``, the best blocks for a given ``B`` are the ``B`` most useful ones, and a
scan over ``(B, h)`` is exact. Everything else goes into one MILP per call: components
are independent, so putting them side by side in one model costs one solver start
instead of many.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from mutnas.errors import SizeError, SolverError, infeasible_message
from mutnas.problem import Component, SizeProblem, SizeTerm, Weights

__all__ = ["Solution", "SolverOptions", "solve"]

log = logging.getLogger(__name__)

MAX_BREAKPOINTS = 48


@dataclass(frozen=True)
class SolverOptions:
    """How size problems are solved.

    Attributes:
        backend: ``"cbc"`` (PuLP's bundled CBC) or ``"highs"`` (needs ``highspy``).
        time_limit: seconds per MILP; a time-out without a solution is a
            :class:`~mutnas.SolverError`, never a hang.
        threads: solver threads (None: solver default).
        msg: show solver output.
        weights: objective weights.
        closed_form: solve one-class components without the MILP solver.

    Example:
        >>> import mutnas as mn
        >>> opts = mn.SolverOptions(time_limit=5.0)
        >>> opts.backend, opts.time_limit
        ('cbc', 5.0)
    """

    backend: str = "cbc"
    time_limit: float = 20.0
    threads: int | None = None
    msg: bool = False
    weights: Weights = field(default_factory=Weights)
    closed_form: bool = True


@dataclass
class Solution:
    """Kept and new slot counts per class, plus timing figures."""

    keep: np.ndarray
    new: np.ndarray
    extra: np.ndarray
    build_s: float = 0.0
    solve_s: float = 0.0
    n_milp_classes: int = 0


def solve(problem: SizeProblem, options: SolverOptions) -> Solution:
    """Solve every component; raise :class:`SizeError` naming the vertices if infeasible."""
    n = len(problem.classes)
    keep = np.array([c.length for c in problem.classes], dtype=np.int64)
    new = np.zeros(n, dtype=np.int64)
    hard = []
    for comp in problem.components:
        simple = len(comp.classes) == 1 and not comp.groups and not comp.extras
        blocks = _GroupedForm.of(problem, comp) if options.closed_form and not simple else None
        if options.closed_form and simple:
            c = comp.classes[0]
            result = _solve_single(problem, comp, options.weights)
            if result is None:
                raise _infeasible(problem, comp)
            keep[c], new[c] = result
        elif blocks is not None:
            if not blocks.solve(problem, comp, options.weights, keep, new):
                raise _infeasible(problem, comp)
        else:
            hard.append(comp)
    solution = Solution(keep, new, np.zeros(len(problem.extras), dtype=np.int64))
    if hard:
        _solve_milp(problem, hard, options, solution)
    return solution


def _infeasible(problem: SizeProblem, comp: Component) -> SizeError:
    names = comp.vertices() or [problem.partition.find(problem.classes[comp.classes[0]].key)[0]]
    requested = {t.vertex: value for t, value in comp.targets + comp.relaxed}
    classes = set(comp.classes)
    fixed = [
        v.name
        for v in problem.partition.order
        if v.fixed and v.inputs and classes & set(problem.terms[v.name].coef)
    ]
    message = infeasible_message(requested, fixed)
    return SizeError(message, names, requested=requested, fixed=fixed)


# ---------------------------------------------------------------- closed form
def _solve_single(problem: SizeProblem, comp: Component, w: Weights) -> tuple[int, int] | None:
    c = comp.classes[0]
    info = problem.classes[c]
    length = info.length
    gains = np.sort(info.utility)[::-1]
    prefix = np.concatenate([[0.0], np.cumsum(gains)])
    best_k = int(np.count_nonzero(gains > -w.new_slot))
    s_hi = length if info.g_max == 0 else length + _growth_room(comp, c, length)
    if info.g_max:
        s_hi = min(s_hi, length + info.g_max)
    s = np.arange(0, s_hi + 1)
    k_lo = np.maximum(info.k_min, s - (info.g_max if info.g_max is not None else s))
    k_hi = np.minimum(length, s)
    feasible = k_lo <= k_hi
    k = np.clip(best_k, k_lo, np.maximum(k_lo, k_hi))
    value = prefix[k] + w.new_slot * (k - s)
    for term, lo, hi in comp.bounds:
        size = term.coef[c] * s
        feasible &= size >= lo
        if hi is not None:
            feasible &= size <= hi
    for term, m in comp.multiples:
        feasible &= (term.coef[c] * s) % m == 0
    for term, target in comp.targets:
        feasible &= term.coef[c] * s == target
    for a, b in comp.equalities:
        feasible &= a.coef.get(c, 0) * s == b.coef.get(c, 0) * s
    for term, target in comp.relaxed:
        size = term.coef[c] * s
        value = value - w.relaxed * np.abs(size - target) / term.n_old
        if target > term.n_old:
            feasible &= size > term.n_old
        elif target < term.n_old:
            feasible &= size < term.n_old
    if comp.penalties:
        change = np.stack([np.abs(t.coef[c] * s - t.n_old) / t.n_old for t in comp.penalties])
        value = value - w.change_l1 * change.sum(axis=0) - w.change_max * change.max(axis=0)
    if not feasible.any():
        return None
    best = int(np.flatnonzero(feasible)[np.argmax(value[feasible])])
    return int(k[best]), int(best - k[best])


def _growth_room(comp: Component, c: int, length: int) -> int:
    """How far beyond the current length a one-class component may usefully grow."""
    need = length
    for term, lo, _ in comp.bounds:
        need = max(need, -(-lo // term.coef[c]))
    for term, target in comp.targets + comp.relaxed:
        need = max(need, -(-target // term.coef[c]), -(-(term.n_old + 1) // term.coef[c]))
    step = max([m for _, m in comp.multiples] + [1])
    return need - length + step


@dataclass
class _GroupedForm:
    """A component that is one grouped vertex whose blocks all weigh the same in each size.

    ``size(term) = a[term] * B + e[term] * h`` for ``B`` kept blocks and ``h`` new ones.
    """

    blocks: list[list[int]]  # classes per block
    value: np.ndarray  # utility of each block when kept
    forced: np.ndarray  # blocks that must be kept (a class with kept slots pinned)
    grow: list[tuple[int, int]]  # (class, width): new slots per new block (empty: no growth)
    a: dict[int, int]  # by id(term)
    e: dict[int, int]

    @classmethod
    def of(cls, problem: SizeProblem, comp: Component) -> _GroupedForm | None:
        if len(comp.groups) != 1:
            return None
        _vertex, w_in, w_out, blocks, _interior, xinterior, last_in, last_out = comp.groups[0]
        members = [c for block in blocks for c in block]
        if len(set(members)) != len(members) or set(members) != set(comp.classes):
            return None
        if not set(comp.extras) <= set(xinterior):
            return None  # new slots outside the blocks
        infos = problem.classes
        can_grow = infos[last_in].g_max != 0 and infos[last_out].g_max != 0
        grow = [(last_in, w_in), (last_out, w_out)] if can_grow else []
        a, e = {}, {}
        for term in _terms(comp):
            weights = {sum(term.coef.get(c, 0) * infos[c].length for c in b) for b in blocks}
            if len(weights) != 1:
                return None  # which blocks are kept would matter to this size
            a[id(term)] = weights.pop()
            e[id(term)] = sum(term.coef.get(c, 0) * width for c, width in grow)
        value = np.array([sum(float(infos[c].utility.sum()) for c in b) for b in blocks])
        forced = np.array([any(infos[c].k_min > 0 for c in b) for b in blocks], dtype=bool)
        return cls(blocks, value, forced, grow, a, e)

    def solve(
        self, problem: SizeProblem, comp: Component, w: Weights, keep: np.ndarray, new: np.ndarray
    ) -> bool:
        """Write the best ``keep``/``new`` for the component's classes; False if infeasible."""
        n_forced = int(self.forced.sum())
        order = np.flatnonzero(~self.forced)[np.argsort(-self.value[~self.forced], kind="stable")]
        gains = np.concatenate([[self.value[self.forced].sum()], self.value[order]])
        b = np.arange(n_forced, len(self.blocks) + 1)[:, None]  # kept blocks
        h = np.arange(0, self._growth_room(comp) + 1)[None, :]  # new blocks
        value = np.cumsum(gains)[b - n_forced] - w.new_slot * h * sum(wd for _, wd in self.grow)
        feasible = np.ones(value.shape, dtype=bool)

        def size(term: SizeTerm) -> np.ndarray:
            return self.a[id(term)] * b + self.e[id(term)] * h

        for term, lo, hi in comp.bounds:
            feasible &= size(term) >= lo
            if hi is not None:
                feasible &= size(term) <= hi
        for term, m in comp.multiples:
            feasible &= size(term) % m == 0
        for term, target in comp.targets:
            feasible &= size(term) == target
        for left, right in comp.equalities:
            feasible &= size(left) == size(right)
        for term, target in comp.relaxed:
            value = value - w.relaxed * np.abs(size(term) - target) / term.n_old
            if target > term.n_old:
                feasible &= size(term) > term.n_old
            elif target < term.n_old:
                feasible &= size(term) < term.n_old
        if comp.penalties:
            change = np.stack([np.abs(size(t) - t.n_old) / t.n_old for t in comp.penalties])
            value = value - w.change_l1 * change.sum(axis=0) - w.change_max * change.max(axis=0)
        if not feasible.any():
            return False
        flat = np.flatnonzero(feasible.ravel())
        best = int(flat[np.argmax(value.ravel()[flat])])
        n_kept, n_new = divmod(best, value.shape[1])
        kept = set(np.flatnonzero(self.forced).tolist()) | set(order[:n_kept].tolist())
        for j, block in enumerate(self.blocks):
            for c in block:
                keep[c] = problem.classes[c].length if j in kept else 0
                new[c] = 0
        for c, width in self.grow:
            new[c] = width * n_new
        return True

    def _growth_room(self, comp: Component) -> int:
        """How many new blocks could matter: enough to reach every bound and target."""
        if not self.grow:
            return 0
        need = 0
        for term, lo, _ in comp.bounds:
            need = max(need, self._blocks_for(term, lo))
        for term, target in comp.targets + comp.relaxed:
            need = max(need, self._blocks_for(term, max(target, term.n_old + 1)))
        step = max([m for _, m in comp.multiples] + [1])
        return need + step

    def _blocks_for(self, term: SizeTerm, size: int) -> int:
        e = self.e[id(term)]
        return -(-size // e) if e > 0 else 0


def _terms(comp: Component) -> list[SizeTerm]:
    terms = [t for t, *_ in comp.bounds + comp.multiples + comp.targets + comp.relaxed]
    return terms + comp.penalties + [t for pair in comp.equalities for t in pair]


# ---------------------------------------------------------------- MILP
def _solve_milp(
    problem: SizeProblem, comps: list[Component], options: SolverOptions, out: Solution
) -> None:
    import pulp

    start = time.perf_counter()
    model = pulp.LpProblem("mutnas_sizes", pulp.LpMaximize)
    builder = _MilpBuilder(problem, model, options.weights)
    for i, comp in enumerate(comps):
        builder.add_component(i, comp)
    model += pulp.lpSum(builder.objective)
    out.build_s = time.perf_counter() - start
    out.n_milp_classes = sum(len(c.classes) for c in comps)
    start = time.perf_counter()
    status = _run(model, options)
    out.solve_s = time.perf_counter() - start
    if status == "infeasible":
        raise _first_infeasible(problem, comps, options)
    for comp in comps:
        for c in comp.classes:
            out.keep[c] = _value(builder.k[c])
            out.new[c] = _value(builder.g.get(c))
        for e in comp.extras:
            out.extra[e] = _value(builder.x.get(e))


def _value(var) -> int:
    """A variable's solved value; a variable in no constraint keeps its lower bound."""
    if var is None:
        return 0
    value = var.value()
    return round(value) if value is not None else round(var.lowBound or 0)


def _run(model, options: SolverOptions) -> str:
    import pulp

    kwargs = {"msg": options.msg, "timeLimit": options.time_limit}
    if options.threads:
        kwargs["threads"] = options.threads
    if options.backend == "cbc":
        solver = pulp.PULP_CBC_CMD(**kwargs)
    elif options.backend == "highs":
        if not pulp.HiGHS().available():
            raise SolverError("backend 'highs' needs highspy: pip install 'mutnas[highs]'")
        solver = pulp.HiGHS(**kwargs)
    else:
        raise SolverError(f"unknown solver backend {options.backend!r}; use 'cbc' or 'highs'")
    start = time.perf_counter()
    try:
        model.solve(solver)
    except pulp.PulpSolverError as err:
        raise SolverError(f"the {options.backend} solver failed: {err}") from None
    solved = model.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    if not solved and time.perf_counter() - start >= 0.9 * options.time_limit:
        # CBC stopped by its time limit before finding any solution reports "infeasible"
        raise SolverError(
            f"the {options.backend} solver found no solution within {options.time_limit} s; "
            f"raise SolverOptions.time_limit or simplify the request"
        )
    if model.status == pulp.LpStatusInfeasible:
        return "infeasible"
    if model.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
        return "ok"
    if model.status == pulp.LpStatusOptimal:
        return "ok"
    if model.status == pulp.LpStatusNotSolved:
        raise SolverError(
            f"the {options.backend} solver found no solution within {options.time_limit} s; "
            f"raise SolverOptions.time_limit or simplify the request"
        )
    return "infeasible"


def _first_infeasible(problem, comps, options) -> SizeError:
    import pulp

    for comp in comps:
        model = pulp.LpProblem("mutnas_check", pulp.LpMaximize)
        builder = _MilpBuilder(problem, model, options.weights)
        builder.add_component(0, comp)
        model += pulp.lpSum(builder.objective)
        if _run(model, options) == "infeasible":
            return _infeasible(problem, comp)
    return SizeError(infeasible_message({}, ()), [n for c in comps for n in c.vertices()])


class _MilpBuilder:
    def __init__(self, problem: SizeProblem, model, weights: Weights):
        self.problem = problem
        self.model = model
        self.w = weights
        self.k: dict[int, object] = {}
        self.g: dict[int, object | None] = {}
        self.x: dict[int, object | None] = {}
        self.objective: list = []

    def size(self, term: SizeTerm):
        import pulp

        parts = []
        for c, m in term.coef.items():
            parts.append(m * self.k[c])
            if self.g[c] is not None:
                parts.append(m * self.g[c])
        for e, m in term.xcoef.items():
            if self.x[e] is not None:
                parts.append(m * self.x[e])
        return pulp.lpSum(parts)

    def add_component(self, i: int, comp: Component) -> None:
        import pulp

        for c in comp.classes:
            info = self.problem.classes[c]
            self.k[c] = pulp.LpVariable(f"k{c}", info.k_min, info.length, cat="Integer")
            self.g[c] = (
                None if info.g_max == 0 else pulp.LpVariable(f"g{c}", 0, info.g_max, cat="Integer")
            )
            self._utility(c, info)
        for e in comp.extras:
            cap = self.problem.extras[e].x_max
            self.x[e] = None if cap == 0 else pulp.LpVariable(f"x{e}", 0, cap, cat="Integer")
            if self.x[e] is not None:
                self.objective.append(-self.w.new_slot * self.x[e])
        for term, lo, hi in comp.bounds:
            self.model += self.size(term) >= lo
            if hi is not None:
                self.model += self.size(term) <= hi
        for j, (term, m) in enumerate(comp.multiples):
            z = pulp.LpVariable(f"z{i}_{j}", 0, cat="Integer")
            self.model += self.size(term) == m * z
        for term, target in comp.targets:
            self.model += self.size(term) == target
        for a, b in comp.equalities:
            self.model += self.size(a) == self.size(b)
        for j, (term, target) in enumerate(comp.relaxed):
            e = pulp.LpVariable(f"e{i}_{j}", 0)
            size = self.size(term)
            self.model += e * term.n_old >= size - target
            self.model += e * term.n_old >= target - size
            self.objective.append(-self.w.relaxed * e)
            if target > term.n_old:
                self.model += size >= term.n_old + 1
            elif target < term.n_old:
                self.model += size <= term.n_old - 1
        self._penalties(i, comp)
        for j, group in enumerate(comp.groups):
            self._group(i, j, group)

    def _utility(self, c: int, info) -> None:
        import pulp

        gains = np.sort(info.utility)[::-1]
        if self.g[c] is not None:
            self.objective.append(-self.w.new_slot * self.g[c])
        if np.allclose(gains, gains[0]):
            self.objective.append(float(gains[0]) * self.k[c])
            return
        prefix = np.concatenate([[0.0], np.cumsum(gains)])
        points = _breakpoints(info.length, info.k_min, gains)
        t = pulp.LpVariable(f"t{c}")
        for a, b in itertools.pairwise(points):
            slope = (prefix[b] - prefix[a]) / (b - a)
            self.model += t <= float(prefix[a]) + float(slope) * (self.k[c] - int(a))
        if len(points) == 1:
            self.model += t <= float(prefix[points[0]])
        self.objective.append(t)

    def _penalties(self, i: int, comp: Component) -> None:
        import pulp

        if not comp.penalties:
            return
        top = pulp.LpVariable(f"dmax{i}", 0)
        for j, term in enumerate(comp.penalties):
            d = pulp.LpVariable(f"d{i}_{j}", 0)
            size = self.size(term)
            self.model += d * term.n_old >= size - term.n_old
            self.model += d * term.n_old >= term.n_old - size
            self.model += top >= d
            self.objective.append(-self.w.change_l1 * d)
        self.objective.append(-self.w.change_max * top)

    def _group(self, i: int, j: int, group) -> None:
        import pulp

        _vertex, w_in, w_out, blocks, interior, xinterior, last_in, last_out = group
        for b, block in enumerate(blocks):
            keep = pulp.LpVariable(f"b{i}_{j}_{b}", cat="Binary")
            for c in block:
                self.model += self.k[c] == self.problem.classes[c].length * keep
        h = pulp.LpVariable(f"h{i}_{j}", 0, cat="Integer")
        for c in interior:
            if self.g[c] is not None:
                self.model += self.g[c] == 0
        for e in xinterior:
            if self.x[e] is not None:
                self.model += self.x[e] == 0
        for c, width in ((last_in, w_in), (last_out, w_out)):
            if self.g[c] is None:
                self.model += h == 0
            else:
                self.model += self.g[c] == width * h


def _breakpoints(length: int, k_min: int, gains: np.ndarray) -> list[int]:
    """Where the concave utility curve of a class is sampled for the MILP objective."""
    if length - k_min <= MAX_BREAKPOINTS:
        return list(range(k_min, length + 1))
    points = set(np.linspace(k_min, length, MAX_BREAKPOINTS).round().astype(int).tolist())
    sign_change = int(np.count_nonzero(gains > 0))
    points.update({k_min, length, max(k_min, min(length, sign_change))})
    return sorted(points)
