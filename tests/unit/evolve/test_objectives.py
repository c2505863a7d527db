"""Objectives: values, directions, bounds, repairs, the registry and the objective set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import evolve
import mutnas_torch as mt
from evolve.errors import ConfigError
from evolve.objectives import EvalContext, count_flops, get_objective


def mnist1d_reference_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 25, 5, 2, 1),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, 2, 1),
        nn.ReLU(),
        nn.Conv1d(25, 25, 3, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(125, 10),
    )


def test_flops_and_parameters_of_the_mnist1d_reference_cnn():
    net, x = mnist1d_reference_cnn(), torch.zeros(7, 1, 40)
    ctx = EvalContext(net, x)
    assert evolve.FlopsObjective().evaluate(ctx) == 63_500  # per sample: batch of 1
    assert evolve.ParametersObjective().evaluate(ctx) == 5_210
    assert count_flops(net, x) == 63_500


def test_task_metrics():
    outputs = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    ctx = EvalContext(
        nn.Identity(), torch.zeros(1), outputs=outputs, targets=torch.tensor([0, 1, 1, 1])
    )
    assert evolve.AccuracyObjective().evaluate(ctx) == 0.75
    y = torch.tensor([[1.0], [2.0], [3.0]])
    reg = EvalContext(nn.Identity(), torch.zeros(1), "regression", y.clone(), y)
    assert evolve.R2Objective().evaluate(reg) == pytest.approx(1.0)
    assert evolve.MSEObjective().evaluate(reg) == 0.0
    reg.outputs = torch.full((3, 1), 2.0)
    assert evolve.R2Objective().evaluate(reg) == pytest.approx(0.0)


def test_latency_and_energy_are_positive_costs():
    ctx = EvalContext(nn.Linear(8, 4), torch.zeros(1, 8))
    assert evolve.LatencyObjective().evaluate(ctx) > 0
    assert evolve.EnergyObjective().evaluate(ctx) > 0
    assert not evolve.EnergyObjective.needs_training and evolve.AccuracyObjective.needs_training


def test_bounds_and_repair_to_a_flop_budget():
    mm = mt.mutable(mnist1d_reference_cnn(), torch.zeros(1, 1, 40)).eval()
    budget = evolve.FlopsObjective(max_value=30_000)
    assert "flops 63,500 > max_value 30,000" in budget.violation(63_500)
    assert budget.repair(mm)
    assert count_flops(mm, torch.zeros(1, 1, 40)) <= 30_000
    assert not budget.repair(mm)
    params = evolve.ParametersObjective(max_value=2_000)
    assert params.repair(mm) and mm.n_parameters() <= 2_000
    assert evolve.AccuracyObjective(min_value=0.5).violation(0.4) == "accuracy 0.4 < min_value 0.5"


def test_registry_and_unknown_names(monkeypatch):
    monkeypatch.setattr(evolve.objectives, "OBJECTIVES", dict(evolve.objectives.OBJECTIVES))
    assert isinstance(get_objective("energy"), evolve.EnergyObjective)
    with pytest.raises(ConfigError, match="unknown objective 'acc'; use one of accuracy"):
        get_objective("acc")

    @evolve.register_objective("depth")
    class DepthObjective(evolve.Objective):
        direction, needs_training = "min", False

        def _evaluate(self, ctx):
            return len(list(ctx.model.modules()))

    assert get_objective("depth").evaluate(EvalContext(nn.Sequential(nn.ReLU()), None)) == 2


def test_objective_set_matrix_fitness_and_ranks():
    objs = evolve.ObjectiveSet(["accuracy", "flops"], weights={"accuracy": 1.0, "flops": 1e-3})
    scores = [{"accuracy": 0.9, "flops": 500.0}, {"accuracy": 0.8, "flops": 10.0}, {}]
    assert objs.mode == "weighted"
    assert objs.fitness(scores[0]) == pytest.approx(0.4) and objs.fitness({}) == -np.inf
    assert objs.ranks(scores).tolist() == [1, 0, 2]
    assert objs.ranks(scores, pareto=True).tolist()[2] == 2
    assert [o.name for o in objs.cheap()] == ["flops"]


@pytest.mark.parametrize(
    ("objectives", "weights", "match"),
    [
        ([], None, "objectives is empty"),
        (["accuracy", "accuracy"], None, "repeat a name"),
        (["accuracy", "flops"], [1.0], "one finite number per objective"),
        (["accuracy", "flops"], [0.0, 0.0], "not all zero"),
        (["accuracy"], {"flop": 1.0}, "unknown objectives"),
    ],
)
def test_objective_set_errors(objectives, weights, match):
    with pytest.raises(ConfigError, match=match):
        evolve.ObjectiveSet(objectives, weights)
