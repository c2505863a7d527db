"""Neuron utilities: magnitude, BatchNorm scale, random, activation x gradient (Taylor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import mutnas_torch as mt
from mutnas_torch.utility import bn_scale, magnitude, random_utility, utility_function


def linear_model() -> mt.MutableModel:
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.5], [-3.0, 4.0]]))
    return mt.mutable(net, torch.randn(1, 2))


class ConvBn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 2)
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))))


def conv_model() -> mt.MutableModel:
    torch.manual_seed(0)
    model = ConvBn()
    with torch.no_grad():
        model.bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
    return mt.mutable(model, torch.randn(1, 2, 4, 4))


# ---------------------------------------------------------------- magnitude
def test_l1_and_l2_norms_of_each_output_neurons_weights():
    mm = linear_model()
    v = mm.graph["0"]
    assert magnitude(mm, 1)(v).tolist() == [2.0, 0.5, 7.0]
    assert np.allclose(magnitude(mm, 2)(v), [np.sqrt(2.0), 0.5, 5.0])
    assert utility_function(mm, "l1")(v).tolist() == [2.0, 0.5, 7.0]
    assert np.allclose(utility_function(mm, "l2")(v), [np.sqrt(2.0), 0.5, 5.0])


def test_magnitude_of_a_conv_sums_over_inputs_and_kernel():
    mm = conv_model()
    weight = mm.module.conv.weight.detach().double()
    assert np.allclose(magnitude(mm)(mm.graph["conv"]), weight.abs().sum((1, 2, 3)).numpy())
    assert magnitude(mm)(mm.graph["bn"]) is None  # not a weighted layer
    assert magnitude(mm)(mm.graph["x"]) is None


def test_l1_utility_decides_which_neurons_a_prune_keeps():
    mm = linear_model()
    change = mm.resize("0", -1, utility="l1")
    assert change.outputs["0"].tolist() == [0, 2]


# ---------------------------------------------------------------- BatchNorm scale
def test_bn_scale_is_the_absolute_gamma_of_norm_layers_only():
    mm = conv_model()
    assert bn_scale(mm)(mm.graph["bn"]).tolist() == [0.5, 2.0, 1.0]
    assert bn_scale(mm)(mm.graph["conv"]) is None
    change = mm.resize("conv", -1, utility="bn")
    assert change.outputs["conv"].tolist() == [1, 2]


# ---------------------------------------------------------------- random
def test_random_utility_is_seeded_and_only_for_layers_that_own_neurons():
    mm = conv_model()
    first, again = random_utility(3), random_utility(3)
    values = first(mm.graph["conv"])
    assert values.shape == (3,) and np.all((values >= 0) & (values < 1))
    assert np.array_equal(again(mm.graph["conv"]), values)
    assert np.array_equal(first(mm.graph["conv"]), values)  # stable per vertex
    assert not np.array_equal(random_utility(4)(mm.graph["conv"]), values)
    assert first(mm.graph["bn"]) is None  # transparent vertices own no neurons
    mm.resize("conv", 2)
    assert first(mm.graph["conv"]).shape == (5,)  # redrawn when the size changed


def test_random_utility_by_name():
    mm = conv_model()
    values = utility_function(mm, "random")(mm.graph["conv"])
    assert values.shape == (3,)
    mm.prune(0.5, utility="random")
    assert mm.graph["conv"].nout == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown utility 'nope'; use 'l1', 'l2', 'bn', 'random' or 'taylor'"),
        ("taylor", "utility 'taylor' needs mm.taylor = TaylorUtility(mm) and a backward pass"),
    ],
)
def test_utility_names_that_cannot_work_raise(name, message):
    mm = conv_model()
    graph = mm.graph.copy()
    with pytest.raises(ValueError) as info:
        mm.prune(0.5, utility=name)
    assert str(info.value) == message
    assert mm.graph == graph


# ---------------------------------------------------------------- Taylor
def _expected_taylor(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """mean over the batch of |a * dL/da| for the first layer's output a (L = sum of outputs)."""
    a = net[0](x)
    a.retain_grad()
    net[2](torch.relu(a)).sum().backward()
    return (a * a.grad).abs().mean(0).detach()


def test_taylor_accumulates_activation_times_gradient_with_an_ema():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    mm = mt.mutable(net, torch.randn(2, 3))
    taylor = mt.TaylorUtility(mm, momentum=0.75)
    x1, x2 = torch.randn(8, 3), torch.randn(8, 3)
    assert taylor(mm.graph["0"]) is None  # nothing measured yet

    mm(x1).sum().backward()
    first = _expected_taylor(net, x1)
    assert np.allclose(taylor(mm.graph["0"]), first.double().numpy(), rtol=1e-6)

    mm(x2).sum().backward()
    second = _expected_taylor(net, x2)
    expected = 0.75 * first + 0.25 * second
    assert np.allclose(taylor(mm.graph["0"]), expected.double().numpy(), rtol=1e-5)
    assert not taylor.values["0"].requires_grad


def test_taylor_averages_conv_scores_over_batch_and_space():
    mm = conv_model()
    taylor = mt.TaylorUtility(mm)
    x = torch.randn(4, 2, 4, 4)
    conv = mm.module.conv
    outputs = {}
    handle = conv.register_forward_hook(lambda m, i, o: outputs.setdefault("a", o))
    mm(x).square().sum().backward()
    handle.remove()
    a = outputs["a"]
    # recompute dL/da for the recorded activation
    (grad,) = torch.autograd.grad(mm.module.head(torch.relu(mm.module.bn(a))).square().sum(), a)
    expected = (a * grad).abs().mean((0, 2, 3)).detach().double().numpy()
    assert np.allclose(taylor(mm.graph["conv"]), expected, rtol=1e-5)
    assert taylor(mm.graph["bn"]).shape == (3,)
    assert taylor(mm.graph["head"]).shape == (2,)


def test_taylor_detach_stops_measuring_and_reset_forgets():
    torch.manual_seed(0)
    mm = mt.mutable(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    taylor = mt.TaylorUtility(mm)
    mm(torch.randn(8, 3)).sum().backward()
    measured = taylor(mm.graph["0"]).copy()
    taylor.detach()
    mm(torch.randn(8, 3)).sum().backward()
    assert np.array_equal(taylor(mm.graph["0"]), measured)
    assert all(not m._forward_hooks for m in mm.module.modules())
    taylor.reset()
    assert taylor(mm.graph["0"]) is None and taylor.values == {}


def test_taylor_ignores_forward_passes_without_gradients_and_stale_sizes():
    torch.manual_seed(0)
    mm = mt.mutable(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    taylor = mt.TaylorUtility(mm)
    with torch.no_grad():
        mm(torch.randn(8, 3))
    assert taylor.values == {}
    mm(torch.randn(8, 3)).sum().backward()
    mm.resize("0", 2)
    assert taylor(mm.graph["0"]) is None  # measured for 4 neurons, the layer now has 6


def test_taylor_by_name_drives_a_prune():
    torch.manual_seed(0)
    mm = mt.mutable(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(2, 3))
    mm.taylor = mt.TaylorUtility(mm)
    mm(torch.randn(16, 3)).sum().backward()
    scores = mm.taylor(mm.graph["0"])
    change = mm.prune(0.5, utility="taylor")
    assert change.outputs["0"].tolist() == sorted(np.argsort(-scores)[:2].tolist())
