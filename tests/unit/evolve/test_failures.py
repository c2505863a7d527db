"""Failure injection: NaN loss, out of memory, refused mutations, time budget — the
search marks the candidate failed with a reason, logs it, and completes."""

from __future__ import annotations

import json

import pytest
import torch
from evolve_helpers import signals

import evolve
import mutnas as mn
from evolve.training import TrainSession

TINY = {"population": 3, "generations": 3, "progress": False, "seed": 2}


def reasons(run_dir):
    lines = (run_dir / "candidates.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


class NanLearningRate(evolve.Mutation):
    touches_model = False

    def _do(self, child, rng):
        child.hparams = evolve.Hyperparams("sgd", lr=1e12)
        return "lr -> 1e12"


class AlwaysRefused(evolve.Mutation):
    def _do(self, child, rng):
        raise mn.SizeError("infeasible sizes for the request", ["0"])


def test_nan_loss(tmp_path):
    result = evolve.fit(
        signals(),
        mutation=NanLearningRate(),
        crossover=(),
        run_dir=tmp_path,
        training=evolve.TrainingConfig(steps=5, check_every=1),
        **TINY,
    )
    assert result.n_generations == 3
    failed = [r for r in reasons(tmp_path) if r["status"] == "failed"]
    assert failed and all("loss became" in r["reason"] for r in failed)
    assert all(r["generation"] > 0 for r in failed) and result.best.scores["accuracy"] >= 0


def test_simulated_out_of_memory(tmp_path, monkeypatch):
    original = TrainSession._run

    def flaky(self, until):
        if self.candidate.id in (1, 4):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, until)

    monkeypatch.setattr(TrainSession, "_run", flaky)
    result = evolve.fit(
        signals(), run_dir=tmp_path, training=evolve.TrainingConfig(steps=3), **TINY
    )
    assert result.n_generations == 3
    failed = {r["id"]: r["reason"] for r in reasons(tmp_path) if r["status"] == "failed"}
    assert set(failed) >= {1, 4} and all("out of memory" in failed[i] for i in (1, 4))


def test_refused_mutation(tmp_path):
    mutation = evolve.ChooseMutation(
        [AlwaysRefused(), evolve.LearningRateMutation()], weights=[3, 1]
    )
    result = evolve.fit(
        signals(),
        mutation=mutation,
        crossover=(),
        run_dir=tmp_path,
        training=evolve.TrainingConfig(steps=3),
        **TINY,
    )
    assert result.n_generations == 3
    refused = [r for r in reasons(tmp_path) if r["status"] == "failed"]
    assert refused and all(
        r["reason"].startswith("AlwaysRefused refused: infeasible sizes") for r in refused
    )
    assert sum(h["n_refused"] for h in result.history) == len(refused)


def test_time_budget(tmp_path):
    training = evolve.TrainingConfig(steps=10**6, max_seconds=0.2)
    with pytest.raises(
        evolve.EvolveError, match=r"every initial candidate failed: time budget of 0\.2 s"
    ):
        evolve.fit(signals(), run_dir=tmp_path, training=training, **TINY)
    assert all("time budget" in r["reason"] for r in reasons(tmp_path))
