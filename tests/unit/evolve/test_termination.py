"""Terminations and their progress."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import evolve
from evolve.errors import ConfigError


def state(**kw):
    base = {"generation": 0, "n_evaluations": 0, "elapsed_s": 0.0, "history": []}
    return SimpleNamespace(**{**base, **kw})


def test_generations_and_evaluations():
    t = evolve.MaxGenerationsTermination(4)
    assert t.progress(state(generation=2)) == 0.5 and not t.has_terminated(state(generation=3))
    assert t.has_terminated(state(generation=4))
    e = evolve.MaxEvaluationsTermination(10)
    assert e.progress(state(n_evaluations=25)) == 1.0


def test_time_is_predictive_by_default():
    history = [{"seconds": 30.0}]
    assert evolve.TimeTermination(100).has_terminated(state(elapsed_s=75.0, history=history))
    assert not evolve.TimeTermination(100, predictive=False).has_terminated(
        state(elapsed_s=75.0, history=history)
    )


def test_plateau_counts_generations_without_improvement():
    rising = [{"fitness": f} for f in (0.1, 0.2, 0.3)]
    flat = [{"fitness": f} for f in (0.1, 0.5, 0.5, 0.50001)]
    t = evolve.PlateauTermination(2, metric="fitness")
    assert t.progress(state(history=rising)) == 0.0
    assert t.has_terminated(state(history=flat))


def test_any_termination_reports_the_furthest():
    t = evolve.AnyTermination(
        [evolve.MaxGenerationsTermination(10), evolve.MaxEvaluationsTermination(4)]
    )
    s = state(generation=1, n_evaluations=2)
    assert t.progress(s) == 0.5 and not t.has_terminated(s)
    assert t.has_terminated(state(generation=1, n_evaluations=4))


@pytest.mark.parametrize(
    "make",
    [
        lambda: evolve.MaxGenerationsTermination(0),
        lambda: evolve.MaxEvaluationsTermination(-3),
        lambda: evolve.TimeTermination(0),
        lambda: evolve.PlateauTermination(2, metric="accuracy"),
        lambda: evolve.AnyTermination([]),
    ],
)
def test_bad_terminations(make):
    with pytest.raises(ConfigError):
        make()
