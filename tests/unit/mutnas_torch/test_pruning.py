"""Whole-model pruning: a fraction of every layer, or down to a FLOP budget."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import mutnas_torch as mt
from mutnas.advanced import frozen_vertices


class Net(nn.Module):
    """conv-bn-relu, a residual pair, max pool, flatten into an MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.b = nn.Conv2d(8, 12, 3, padding=1)
        self.c = nn.Conv2d(12, 12, 3, padding=1)
        self.fc = nn.Linear(12 * 4 * 4, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x):
        h = F.relu(self.bn(self.a(x)))
        h = F.relu(self.b(h))
        h = F.relu(h + self.c(h))
        h = F.max_pool2d(h, 2)
        return self.out(F.relu(self.fc(h.flatten(1))))


X = torch.randn(2, 3, 8, 8)


def net() -> mt.MutableModel:
    torch.manual_seed(0)
    return mt.mutable(Net().eval(), X)


def flops(module: nn.Module) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(X)
    return counter.get_total_flops()


def sizes(mm: mt.MutableModel) -> dict[str, int]:
    return {name: mm.graph[name].nout for name in mm.layers()}


# ---------------------------------------------------------------- fraction
def test_half_prune_halves_every_mutable_layer():
    mm = net()
    assert sizes(mm) == {"a": 8, "b": 12, "c": 12, "fc": 10, "out": 3}
    mm.prune(0.5)
    assert sizes(mm) == {"a": 4, "b": 6, "c": 6, "fc": 5, "out": 3}  # `out` feeds the output
    assert mm.module.bn.num_features == 4 and mm.module.fc.in_features == 6 * 16
    assert mm(X).shape == (2, 3)
    mm.verify()


def test_prune_keeps_the_neurons_with_the_highest_utility():
    mm = net()
    scores = {"fc": [float(i % 3) + i / 100 for i in range(10)]}
    change = mm.prune(0.5, utility=lambda v: scores.get(v.name))
    assert change.outputs["fc"].tolist() == [2, 4, 5, 7, 8]


def test_prune_never_empties_a_layer():
    torch.manual_seed(0)
    mm = mt.mutable(nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2)), torch.randn(1, 3))
    mm.prune(0.9)
    assert mm.graph["0"].nout == 1


def test_zero_fraction_changes_nothing():
    mm = net()
    change = mm.prune(0.0)
    assert not change and sizes(mm) == {"a": 8, "b": 12, "c": 12, "fc": 10, "out": 3}


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_invalid_fraction_raises_and_changes_nothing(fraction):
    mm = net()
    graph = mm.graph.copy()
    with pytest.raises(ValueError) as info:
        mm.prune(fraction)
    assert str(info.value) == f"fraction must be in [0, 1), got {fraction}"
    assert mm.graph == graph


@pytest.mark.parametrize("kwargs", [{}, {"fraction": 0.5, "flops": 1e5}])
def test_exactly_one_of_fraction_and_flops(kwargs):
    with pytest.raises(ValueError, match=r"^pass exactly one of fraction= or flops=$"):
        net().prune(**kwargs)


# ---------------------------------------------------------------- frozen layers
class PartlyFrozen(nn.Module):
    """`b` feeds an op without a rule (cumsum over channels): it must stay as it is."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 6, 1)
        self.c = nn.Conv2d(6, 8, 1)
        self.d = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.d(F.relu(self.c(torch.cumsum(self.b(F.relu(self.a(x))), 1))))


def test_frozen_layers_are_untouched():
    torch.manual_seed(0)
    mm = mt.mutable(PartlyFrozen(), X)
    assert frozen_vertices(mm.graph) & set(mm.layers()) == {"b", "d"}
    b_weight, b_bias = mm.module.b.weight.clone(), mm.module.b.bias.clone()
    d_weight = mm.module.d.weight.clone()
    change = mm.prune(0.5)
    assert {n: mm.graph[n].nout for n in "abcd"} == {"a": 4, "b": 6, "c": 4, "d": 2}
    # b keeps all its output channels in order; only its input columns follow `a`
    kept = change.outputs["a"].tolist()
    assert torch.equal(mm.module.b.weight, b_weight[:, kept])
    assert torch.equal(mm.module.b.bias, b_bias)
    assert mm.module.d.weight.shape == (2, 4, 1, 1) and mm.module.d.out_channels == 2
    assert torch.equal(mm.module.d.weight, d_weight[:, change.outputs["c"].tolist()])
    assert mm(X).shape == (2, 2, 8, 8)
    mm.verify()


# ---------------------------------------------------------------- FLOP budget
def test_flop_budget_prune_ends_within_the_budget():
    mm = net()
    full = flops(mm.module)
    budget = 0.4 * full
    mm.prune(flops=budget)
    after = flops(mm.module)
    assert after <= budget
    assert after > 0.75 * budget  # bisection: not much more than needed
    assert all(mm.graph[n].nout < 12 for n in ("b", "c"))
    mm.verify()


def test_a_budget_already_met_changes_nothing():
    mm = net()
    change = mm.prune(flops=flops(mm.module) + 1)
    assert not change and sizes(mm)["a"] == 8


def test_an_unreachable_budget_raises_and_changes_nothing():
    mm = net()
    graph = mm.graph.copy()
    with pytest.raises(mt.MutnasTorchError) as info:
        mm.prune(flops=10)
    assert str(info.value).startswith("even a 95 % prune leaves ")
    assert str(info.value).endswith(" FLOPs > budget 10; the frozen layers alone may exceed it")
    assert mm.graph == graph and mm.module.a.out_channels == 8
