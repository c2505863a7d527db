"""Solving size problems: closed form where possible, PuLP (CBC or HiGHS) elsewhere.

A component with one class of slots is a one-dimensional problem: for every candidate
total ``S = k + g`` the best ``k`` is a clamp of the unconstrained optimum (the utility
curve is concave), so a vectorised scan over ``S`` is exact. Everything else goes into
one MILP per call: components are independent, so putting them side by side in one model
costs one solver start instead of many.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from mutnas.errors import SizeError, SolverError
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
        if options.closed_form and simple:
            c = comp.classes[0]
            result = _solve_single(problem, comp, options.weights)
            if result is None:
                raise _infeasible(problem, comp)
            keep[c], new[c] = result
        else:
            hard.append(comp)
    solution = Solution(keep, new, np.zeros(len(problem.extras), dtype=np.int64))
    if hard:
        _solve_milp(problem, hard, options, solution)
    return solution


def _infeasible(problem: SizeProblem, comp: Component) -> SizeError:
    names = comp.vertices() or [problem.partition.find(problem.classes[comp.classes[0]].key)[0]]
    wanted = [f"{t.vertex!r} -> {value}" for t, value in comp.targets + comp.relaxed]
    detail = f" (requested: {', '.join(wanted)})" if wanted else ""
    return SizeError(f"no sizes satisfy every constraint{detail}", names)


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
    return SizeError("no sizes satisfy every constraint", [n for c in comps for n in c.vertices()])


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
