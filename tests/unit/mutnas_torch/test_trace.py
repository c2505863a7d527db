"""Tracing: errors that name the failure and the fix, the leaf registry, recorded shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mutnas_torch as mt
from mutnas_torch.trace import LEAF_MODULES, node_shape, propagate_shapes, trace


class DataDependent(nn.Module):
    """Branches on a tensor value: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class Outer(nn.Module):
    """A traceable model with an untraceable block nested inside a Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Linear(4, 4)
        self.block = nn.Sequential(DataDependent())
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.block(self.pre(x)))


@pytest.fixture
def registry():
    """Undo registrations in the global leaf registry after the test."""
    before = set(LEAF_MODULES)
    yield LEAF_MODULES
    LEAF_MODULES.intersection_update(before)


# ---------------------------------------------------------------- errors
def test_data_dependent_control_flow_raises_trace_error_with_the_fix():
    with pytest.raises(mt.TraceError) as info:
        mt.mutable(DataDependent(), torch.randn(2, 4))
    message = str(info.value)
    assert "could not trace DataDependent" in message
    assert "control flow" in message
    assert "mutnas_torch.register_leaf" in message and "leaf_modules=[...]" in message
    assert "torch.export" in message
    assert isinstance(info.value, mt.MutnasTorchError)
    assert info.value.__cause__ is not None  # the torch.fx error is chained, not swallowed


def test_python_loop_over_a_traced_value_raises_trace_error():
    class Loop(nn.Module):
        def forward(self, x):
            for _ in range(x.shape[0]):
                x = x + 1
            return x

    with pytest.raises(mt.TraceError, match=r"could not trace Loop: TypeError: .*leaf"):
        mt.mutable(Loop(), torch.randn(2, 4))


def test_trace_error_names_the_nested_module_that_failed():
    with pytest.raises(mt.TraceError) as info:
        mt.mutable(Outer(), torch.randn(2, 4))
    assert "'block.0'" in str(info.value) and "DataDependent" in str(info.value)


def test_example_inputs_that_do_not_fit_name_the_failing_node():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    with pytest.raises(mt.TraceError) as info:
        mt.mutable(net, torch.randn(2, 5))
    message = str(info.value)
    assert message.startswith("the traced graph failed at node '_0' (module '0')")
    assert "Check that example_inputs match the model" in message
    causes = []
    err: BaseException | None = info.value
    while err is not None:
        causes.append(str(err))
        err = err.__cause__
    assert any("mat1 and mat2 shapes cannot be multiplied" in c for c in causes)


# ---------------------------------------------------------------- leaves
def test_leaf_modules_argument_keeps_an_untraceable_block_opaque():
    model = Outer().eval()
    x = torch.randn(3, 4)
    mm = mt.mutable(model, x, leaf_modules=[DataDependent])
    targets = [n.target for n in mm.module.graph.nodes if n.op == "call_module"]
    assert targets == ["pre", "block.0", "head"]
    assert torch.equal(mm(x), model(x))
    # the leaf has no rule: the channels flowing into it are pinned, the ones after are fixed
    assert "pre" in mm.layers() and "head" in mm.layers()
    assert any("'block.0'" in why and "DataDependent" in why for why in mm.pinned.values())
    assert mm.graph["head"].inputs[0].fixed


def test_register_leaf_is_a_decorator_that_the_tracer_honours(registry):
    @mt.register_leaf
    class Doubler(nn.Module):
        def forward(self, x):
            return x * 2

    assert Doubler in registry
    net = nn.Sequential(nn.Linear(4, 4), Doubler(), nn.Linear(4, 2))
    gm = trace(net, torch.randn(1, 4))
    assert [n.op for n in gm.graph.nodes if n.target == "1"] == ["call_module"]


def test_torch_nn_modules_are_leaves_and_containers_are_entered():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Flatten())
    gm = trace(net, torch.randn(1, 1, 5, 5))
    assert [n.target for n in gm.graph.nodes if n.op == "call_module"] == ["0.0", "0.1", "1"]


# ---------------------------------------------------------------- shapes
class ShapeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 2)

    def forward(self, x):
        h = self.conv(x)
        return self.fc(h.view(x.size(0), -1))


def test_every_tensor_node_records_its_shape():
    gm = trace(ShapeNet(), torch.randn(2, 3, 4, 4))
    shapes = {n.name: node_shape(n) for n in gm.graph.nodes if n.op != "output"}
    assert shapes["x"] == (2, 3, 4, 4)
    assert shapes["conv"] == (2, 5, 4, 4)
    assert shapes["view"] == (2, 80)
    assert shapes["fc"] == (2, 2)
    assert shapes["size"] is None  # an int, not a tensor
    meta = next(n for n in gm.graph.nodes if n.name == "conv").meta["tensor_meta"]
    assert meta.dtype == torch.float32


def test_trace_accepts_a_tuple_of_inputs_and_reproduces_eager_output():
    model = ShapeNet().eval()
    x = torch.randn(2, 3, 4, 4)
    gm = trace(model, (x,))
    assert torch.equal(gm(x), model(x))


def test_shape_propagation_runs_in_eval_mode_and_restores_training():
    net = nn.Sequential(nn.BatchNorm1d(3))
    gm = trace(net, torch.randn(4, 3))
    assert gm.meta["mutnas_training"] is True and gm.training
    before = gm.get_submodule("0").running_mean.clone()
    propagate_shapes(gm, (torch.randn(4, 3) + 5.0,))
    assert gm.training
    assert torch.equal(gm.get_submodule("0").running_mean, before)  # no statistics update


def test_mutable_traces_a_copy_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    mm = mt.mutable(model, torch.randn(2, 4))
    mm.resize("0", 3)
    assert model[0].out_features == 6 and model[0].weight.shape == (6, 4)
    assert mm.module.get_submodule("0").weight.shape == (9, 4)
