"""Making candidates: the initial population and offspring, screened against budgets.

Every child is checked before any training is spent on it: the cost objectives are
computed and, where one breaks its budget (``max_value``), the objective may *repair* the
model (prune it to fit); a child still over budget, or one whose mutation was refused,
is marked failed with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch

from evolve.candidate import Candidate
from evolve.config import Hyperparams
from evolve.errors import CandidateFailedError
from evolve.operators.crossover import Crossover
from evolve.operators.mutation import Mutation, guarded
from evolve.problem import Problem
from evolve.search_space import SearchSpace
from evolve.selection import Selection
from evolve.training import score_cheap
from mutnas_torch import mutable

__all__ = ["breed", "initial_candidate", "screen"]


def screen(child: Candidate, problem: Problem, rng: np.random.Generator) -> None:
    """Score the cost objectives, repairing budget violations where an objective can.

    Raises:
        CandidateFailedError: a budget is still broken, or the repair was refused.
    """
    scores = score_cheap(child.model, problem)
    for objective in problem.objectives.cheap():
        before = scores[objective.name]
        if objective.violation(before) is None:
            continue

        def repair(objective=objective, before=before) -> str | None:
            if not objective.repair(child.model):
                return None
            child.model.verify()
            after = score_cheap(child.model, problem)[objective.name]
            return f"repair {objective.name} {before:.6g} -> {after:.6g}"

        if guarded(objective, child, repair, rng):
            scores = score_cheap(child.model, problem)
    child.scores = dict(scores)
    for objective in problem.objectives.cheap():
        reason = objective.violation(scores[objective.name])
        if reason:
            raise CandidateFailedError(reason)


def initial_candidate(
    index: int,
    rng: np.random.Generator,
    problem: Problem,
    *,
    search_space: SearchSpace,
    hparams: Hyperparams,
    mutation: Mutation,
    seed_model=None,
    growth: str = "exact",
) -> Candidate:
    """One member of the initial population: a random model of the search space, or a
    copy of ``seed_model`` (mutated, except for the first)."""
    if seed_model is not None:
        child = Candidate(None, copy.deepcopy(seed_model), hparams, mutations=["seed model"])
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            net = search_space.build(problem.input_shape, problem.n_outputs, rng)
        mm = mutable(net, problem.example_input, growth=growth).eval()
        child = Candidate(None, mm, hparams, mutations=["random model from the search space"])
    try:
        if seed_model is not None and index > 0:
            mutation.do(child, rng, copy=False)
        screen(child, problem, rng)
    except CandidateFailedError as err:
        child.fail(err.reason)
    return child


def breed(
    population: Sequence[Candidate],
    rng: np.random.Generator,
    problem: Problem,
    *,
    selection: Selection,
    crossovers: Sequence[Crossover],
    mutation: Mutation,
) -> Candidate:
    """One child: parents by ``selection``, then each crossover, the mutation, screening."""
    parents = selection.do(population, 2 if crossovers else 1, rng, problem.objectives)
    if len(parents) == 2 and parents[0] is parents[1] and len(population) > 1:
        parents[1] = selection.do(
            [c for c in population if c is not parents[0]], 1, rng, problem.objectives
        )[0]
    child = parents[0].spawn()
    try:
        for crossover in crossovers:
            crossover.do(child, parents[-1], rng, copy=False)
        mutation.do(child, rng, copy=False)
        screen(child, problem, rng)
    except CandidateFailedError as err:
        child.fail(err.reason)
    return child
