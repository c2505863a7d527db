"""Parent and survivor selections."""

from __future__ import annotations

import numpy as np
import pytest

import evolve
from evolve.candidate import Candidate
from evolve.errors import ConfigError, EvolveError

ACC = evolve.ObjectiveSet(["accuracy"])
PARETO = evolve.ObjectiveSet(["accuracy", "flops"])


def population(scores):
    return [Candidate(i, None, status="ok", scores=s) for i, s in enumerate(scores)]


def test_failed_candidates_are_never_selected():
    pop = population([{"accuracy": 0.9}, {"accuracy": 0.1}])
    pop[0].fail("nan loss")
    for selection in (
        evolve.TournamentSelection(2),
        evolve.RandomSelection(),
        evolve.EliteSelection(),
    ):
        assert {c.id for c in selection.do(pop, 3, np.random.default_rng(0), ACC)} == {1}


def test_nothing_to_select_raises_evolve_error():
    pop = population([{"accuracy": 0.5}])
    pop[0].fail("oom")
    with pytest.raises(EvolveError, match="no candidate was evaluated successfully"):
        evolve.TournamentSelection().do(pop, 1, np.random.default_rng(0), ACC)
    with pytest.raises(ConfigError):
        evolve.EliteSelection().do(pop, -1, np.random.default_rng(0), ACC)


def test_tournament_favours_the_fitter():
    pop = population([{"accuracy": a} for a in (0.1, 0.2, 0.9)])
    won = evolve.TournamentSelection(2).do(pop, 300, np.random.default_rng(0), ACC)
    counts = np.bincount([c.id for c in won], minlength=3)
    assert counts[2] > counts[1] > counts[0] == 0  # the worst never wins a pair


def test_tournament_is_reproducible():
    pop = population([{"accuracy": a} for a in np.linspace(0, 1, 7)])

    def pick():
        selection = evolve.TournamentSelection(3)
        return [c.id for c in selection.do(pop, 9, np.random.default_rng(4), ACC)]

    assert pick() == pick()


def test_nsga2_keeps_fronts_then_extremes():
    pop = population(
        [
            {"accuracy": 0.9, "flops": 100.0},  # front 0, extreme
            {"accuracy": 0.8, "flops": 50.0},  # front 0, middle
            {"accuracy": 0.7, "flops": 10.0},  # front 0, extreme
            {"accuracy": 0.6, "flops": 60.0},  # dominated by 1
            {"accuracy": 0.85, "flops": 80.0},  # front 0, middle
        ]
    )
    kept = evolve.NSGA2Selection().do(pop, 3, np.random.default_rng(0), PARETO)
    assert {c.id for c in kept} <= {0, 1, 2, 4} and {0, 2} <= {c.id for c in kept}
    weighted = evolve.ObjectiveSet(["accuracy", "flops"], weights=[1.0, 0.0])
    assert [c.id for c in evolve.NSGA2Selection().do(pop, 1, None, weighted)] in ([0], [2])
    assert [c.id for c in evolve.EliteSelection().do(pop, 2, None, weighted)] == [0, 4]


def test_aging_keeps_the_youngest_and_the_elite():
    pop = population([{"accuracy": a} for a in (0.99, 0.5, 0.4, 0.3, 0.2)])
    kept = evolve.AgingSelection().do(pop, 2, np.random.default_rng(0), ACC)
    assert [c.id for c in kept] == [4, 3]
    kept = evolve.AgingSelection(n_elite=1).do(pop, 2, np.random.default_rng(0), ACC)
    assert [c.id for c in kept] == [0, 4]


@pytest.mark.parametrize(
    "make", [lambda: evolve.TournamentSelection(0), lambda: evolve.AgingSelection(-1)]
)
def test_bad_selection_settings(make):
    with pytest.raises(ConfigError):
        make()
