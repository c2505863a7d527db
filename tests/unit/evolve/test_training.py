"""Training one candidate, scoring it, and turning every failure into a reason."""

from __future__ import annotations

import pytest
import torch
from evolve_helpers import conv_model, make_problem

import evolve
from evolve.candidate import Candidate
from evolve.errors import CandidateFailedError
from evolve.training import TrainSession, predict, score_cheap, score_trained


def test_training_lowers_the_loss_and_scores(signal_splits):
    problem = make_problem(signal_splits, training=evolve.TrainingConfig(steps=40))
    c = Candidate(0, conv_model(), evolve.Hyperparams(lr=0.01, batch_size=8))
    x, y = problem.data("train")
    before = problem.loss(predict(c.model, x), y).item()
    session = TrainSession(c, problem, n_steps=40, seed=1)
    session.run(40)
    assert session.step == 40 and session.seconds > 0
    assert problem.loss(predict(c.model, x), y).item() < before
    scores = session.score()
    assert set(scores) == {"accuracy"} and 0.0 <= scores["accuracy"] <= 1.0
    assert set(score_cheap(c.model, problem)) == {"flops"}


def test_two_parts_equal_one_run(signal_splits):
    problem = make_problem(signal_splits, training=evolve.TrainingConfig(steps=10))
    a, b = Candidate(0, conv_model()), Candidate(1, conv_model())
    whole = TrainSession(a, problem, n_steps=10, seed=3)
    whole.run(10)
    parts = TrainSession(b, problem, n_steps=10, seed=3)
    parts.run(4)
    parts.pause()
    parts.run(10)
    x = problem.x_valid
    assert torch.equal(predict(a.model, x), predict(b.model, x))


def test_nan_loss_fails_with_the_step(signal_splits):
    problem = make_problem(signal_splits, training=evolve.TrainingConfig(steps=20, check_every=1))
    c = Candidate(0, conv_model(), evolve.Hyperparams("sgd", lr=1e12))
    with pytest.raises(CandidateFailedError, match=r"loss became (nan|inf) at step \d+/20"):
        TrainSession(c, problem, n_steps=20, seed=0).run(20)


def test_time_budget(signal_splits):
    problem = make_problem(
        signal_splits, training=evolve.TrainingConfig(steps=10**6, max_seconds=0.05)
    )
    c = Candidate(0, conv_model())
    with pytest.raises(CandidateFailedError, match=r"time budget of 0\.05 s exceeded"):
        TrainSession(c, problem, n_steps=10**6, seed=0).run(10**6)


def test_out_of_memory_becomes_a_reason(signal_splits, monkeypatch):
    problem = make_problem(signal_splits)
    c = Candidate(0, conv_model())

    def explode(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(c.model, "forward", explode)
    with pytest.raises(CandidateFailedError, match="out of memory on cpu at step 0"):
        TrainSession(c, problem, n_steps=3, seed=0).run(3)


def test_non_finite_score_fails():
    from evolve_helpers import signals

    from evolve.data import as_splits

    x, y = signals()
    problem = make_problem(as_splits((x, y.float()), task="regression"), objectives=("r2",))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1))
    with torch.no_grad():
        model[1].bias.fill_(float("nan"))
    with pytest.raises(CandidateFailedError, match="objective r2 is nan"):
        score_trained(model, problem)
