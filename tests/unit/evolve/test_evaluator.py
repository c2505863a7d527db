"""The evaluator: batches, culling, failures, and independence from evaluation order."""

from __future__ import annotations

import json

from evolve_helpers import conv_model, make_problem

import evolve
from evolve.candidate import Candidate


def batch(n=4, lr=0.01):
    return [
        Candidate(i, conv_model(widths=(4 + i, 6), seed=i), evolve.Hyperparams(lr=lr))
        for i in range(n)
    ]


def test_every_candidate_gets_an_outcome_and_one_notification(problem):
    seen = []
    cands = batch()
    evolve.SerialEvaluator().evaluate(cands, problem, seed=0, on_result=seen.append)
    assert [c.status for c in cands] == ["ok"] * 4 and sorted(c.id for c in seen) == [0, 1, 2, 3]
    assert all(set(c.scores) == {"accuracy", "flops"} and c.train_steps == 3 for c in cands)


def test_results_do_not_depend_on_evaluation_order(problem):
    forward, backward = batch(), batch()[::-1]
    evolve.SerialEvaluator().evaluate(forward, problem, seed=5)
    evolve.SerialEvaluator().evaluate(backward, problem, seed=5)
    assert {c.id: c.scores for c in forward} == {c.id: c.scores for c in backward}


def test_culling_stops_the_weakest_share_part_way(signal_splits):
    training = evolve.TrainingConfig(steps=8, cull_fraction=0.5, cull_at=0.25)
    problem = make_problem(signal_splits, training=training)
    cands = batch()
    evolve.SerialEvaluator().evaluate(cands, problem, seed=0)
    culled = [c for c in cands if c.status == "culled"]
    assert len(culled) == 2 and all(c.train_steps == 2 for c in culled)
    assert all("culled after 2 steps" in c.reason and "accuracy" in c.scores for c in culled)
    assert all(c.train_steps == 8 for c in cands if c.ok)


def test_a_failing_candidate_does_not_stop_the_others(signal_splits):
    problem = make_problem(signal_splits, training=evolve.TrainingConfig(steps=20, check_every=1))
    cands = batch(2)
    cands[1].hparams = evolve.Hyperparams("sgd", lr=1e12)
    evolve.SerialEvaluator().evaluate(cands, problem)
    assert cands[0].ok and cands[1].status == "failed" and "loss became" in cands[1].reason


def test_budget_violations_fail_before_training(signal_splits):
    problem = make_problem(
        signal_splits, objectives=("accuracy", evolve.FlopsObjective(max_value=10))
    )
    cands = batch(1)
    evolve.SerialEvaluator().evaluate(cands, problem)
    assert cands[0].status == "failed" and cands[0].train_steps == 0
    assert "> max_value 10" in cands[0].reason


def test_jobs_are_plain_json(problem):
    job = evolve.SerialEvaluator()._job(batch(1)[0], problem, seed=0, initial=True)
    assert json.loads(json.dumps(job.to_dict()))["hparams"]["optimizer"] == "adam"


def test_trained_bounds_keep_the_candidate_but_rank_it_last(signal_splits):
    objectives = (evolve.AccuracyObjective(min_value=1.5), "flops")
    problem = make_problem(signal_splits, objectives=objectives)
    cands = batch(2)
    evolve.SerialEvaluator().evaluate(cands, problem)
    assert all(c.ok and c.reason.startswith("infeasible: accuracy") for c in cands)
    feasible = Candidate(9, None, status="ok", scores={"accuracy": 1.6, "flops": 1e9})
    ranks = problem.objectives.ranks([c.scores for c in [*cands, feasible]])
    assert ranks[2] == 0
