"""The search as a whole: determinism, resume, ask/tell, deduplication."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from evolve_helpers import make_problem, signals

import evolve
from evolve.errors import ConfigError

TIME_KEYS = {"seconds", "elapsed_s", "train_seconds", "run_id"}  # the run id: per run
SETTINGS = {
    "population": 3,
    "progress": False,
    "training": evolve.TrainingConfig(steps=4, cull_fraction=0.34),
    "seed": 11,
}


def stripped(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def outputs(result):
    x = signals(n=8, seed=3)[0]
    return [c.model(x) for c in result.pareto]


def test_same_seed_same_history():
    a = evolve.fit(signals(), generations=3, **SETTINGS)
    b = evolve.fit(signals(), generations=3, **SETTINGS)
    assert stripped(a.history) == stripped(b.history)
    assert stripped(a.candidates) == stripped(b.candidates)
    assert all(torch.equal(x, y) for x, y in zip(outputs(a), outputs(b), strict=True))
    c = evolve.fit(signals(), generations=3, **{**SETTINGS, "seed": 12})
    assert stripped(c.candidates) != stripped(a.candidates)


class Crash(evolve.Callback):
    """Dies in the middle of generation ``at`` (after some candidates were logged)."""

    def __init__(self, at: int):
        self.at = at

    def on_candidate_end(self, algorithm, candidate):
        if algorithm.generation == self.at and candidate.id % 2:
            raise KeyboardInterrupt("simulated crash")


def test_resume_after_a_crash_continues_exactly(tmp_path):
    whole = evolve.fit(signals(), generations=3, run_dir=tmp_path / "whole", **SETTINGS)
    with pytest.raises(KeyboardInterrupt):
        evolve.fit(
            signals(), generations=3, run_dir=tmp_path / "cut", callbacks=[Crash(2)], **SETTINGS
        )
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["generation"] == 2
    resumed = evolve.resume(tmp_path / "cut", signals(), progress=False)
    assert stripped(resumed.history) == stripped(whole.history)
    assert stripped(resumed.candidates) == stripped(whole.candidates)
    log = (tmp_path / "cut" / "candidates.jsonl").read_text().splitlines()
    assert stripped(json.loads(line) for line in log) == stripped(whole.candidates)
    assert all(torch.equal(x, y) for x, y in zip(outputs(resumed), outputs(whole), strict=True))


def test_resume_extends_a_finished_run_and_checks_the_data(tmp_path):
    evolve.fit(signals(), generations=2, run_dir=tmp_path, **SETTINGS)
    longer = evolve.resume(
        tmp_path, signals(), progress=False, termination=evolve.MaxGenerationsTermination(3)
    )
    assert longer.n_generations == 3
    with pytest.raises(ConfigError, match="pass it again"):
        evolve.resume(tmp_path)
    with pytest.raises(ConfigError, match="the data differ"):
        evolve.resume(tmp_path, signals(seed=1))
    with pytest.raises(ConfigError, match="does not exist"):
        evolve.resume(tmp_path / "nothing")


def test_ask_tell_loop_with_scores_set_by_hand(signal_splits):
    problem = make_problem(signal_splits, objectives=("accuracy", "parameters"))
    algorithm = evolve.GeneticAlgorithm(
        pop_size=4, termination=evolve.MaxEvaluationsTermination(12), crossover=()
    ).setup(problem, seed=0, progress=False)
    rng = np.random.default_rng(0)
    while algorithm.has_next():
        batch = algorithm.ask()
        fingerprints = [c.fingerprint() for c in batch]
        population = {c.fingerprint() for c in algorithm.population}
        assert len(set(fingerprints)) == len(batch) and not population & set(fingerprints)
        for c in batch:  # a custom "evaluation": random accuracy, no training
            c.scores.update(accuracy=float(rng.random()), parameters=float(c.model.n_parameters()))
            c.status = "ok"
        algorithm.tell(batch)
    result = algorithm.result()
    assert algorithm.n_evaluations >= 12 and result.n_generations == len(algorithm.history)
    assert 0 < result.history[-1]["hypervolume"] <= 1
    hv = [r["hypervolume"] for r in result.history]
    assert hv == sorted(hv)  # the archive never loses ground


class _Populations(evolve.Callback):
    """Records the population and every successful candidate after each generation."""

    def __init__(self):
        self.populations, self.ok = [], []

    def on_generation_end(self, algorithm):
        self.populations.append([c.id for c in algorithm.population])
        self.ok.append(sorted(r["id"] for r in algorithm.records if r["status"] == "ok"))


def test_aging_evicts_the_oldest():
    """Regularized evolution: after every generation the population is exactly the
    youngest successful candidates, whatever their scores (no elite kept)."""
    seen = _Populations()
    result = evolve.fit(
        signals(),
        generations=4,
        survival=evolve.AgingSelection(),
        selection=evolve.TournamentSelection(3),
        n_offspring=2,
        callbacks=[seen],
        **SETTINGS,
    )
    assert result.n_generations == 4 and len(seen.populations) == 4
    for population, ok in zip(seen.populations, seen.ok, strict=True):
        youngest = ok[-SETTINGS["population"] :]
        assert sorted(population) == youngest, (population, ok)
    assert min(seen.populations[-1]) > max(seen.populations[0])  # the first ones aged out
