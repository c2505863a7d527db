"""Structural mutations: insert and remove layers and branches, connect and disconnect."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mutnas as mn
import mutnas_torch as mt
from mutnas.testing import check_consistent


def vertices(mm: mt.MutableModel) -> dict[str, tuple[str, int, list[str]]]:
    return {v.name: (v.kind, v.nout, [u.name for u in v.inputs]) for v in mm.graph.vertices}


def close(a, b) -> bool:
    if isinstance(a, tuple):
        return all(close(p, q) for p, q in zip(a, b, strict=True))
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def refused(mm: mt.MutableModel, x, mutation, *args, error, match: str, **kwargs):
    """Assert the mutation raises ``error`` matching ``match`` and changes nothing."""
    graph, code, before = mm.graph.copy(), mm.module.code, mm(x)
    params = {k: v.clone() for k, v in mm.module.state_dict().items()}
    with pytest.raises(error, match=match) as info:
        mutation(*args, **kwargs)
    assert mm.graph == graph and mm.graph.sizes() == graph.sizes()
    assert mm.module.code == code
    assert {k: v.shape for k, v in mm.module.state_dict().items()} == {
        k: v.shape for k, v in params.items()
    }
    assert close(mm(x), before)
    check_consistent(mm.graph)
    return info.value


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))


class ConvNet(nn.Module):
    """stem -> bn -> relu -> residual block (c1, c2) -> down (stride 2) -> mean -> head."""

    def __init__(self, activation=F.relu) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c1 = nn.Conv2d(8, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 6, 3, stride=2)
        self.head = nn.Linear(6, 4)
        self.activation = activation

    def forward(self, x):
        h = self.activation(self.bn(self.stem(x)))
        h = h + self.c2(self.activation(self.c1(h)))
        h = self.activation(self.down(h))
        return self.head(h.mean((2, 3)))


X = torch.randn(2, 4)
IMAGE = torch.randn(2, 3, 8, 8)


def conv_net(activation=F.relu) -> mt.MutableModel:
    torch.manual_seed(0)
    return mt.mutable(ConvNet(activation).eval(), IMAGE)


# ---------------------------------------------------------------- insert_layer
@pytest.mark.parametrize(
    ("kind", "after", "module_type"),
    [
        ("linear", "0", nn.Linear),
        ("auto", "2", nn.Linear),
        ("norm", "0", nn.BatchNorm1d),
        ("relu", "0", nn.ReLU),
    ],
)
def test_insert_layer_into_an_mlp_is_exact(kind, after, module_type):
    mm = mt.mutable(mlp().eval(), X)
    before = mm(X)
    change = mm.insert_layer(after, kind)
    (name,) = change.added
    assert name == f"{after}_inserted"
    assert type(mm.module.get_submodule(name)) is module_type
    assert close(mm(X), before)
    mm.verify()
    mm.resize(after, 2)  # the new layer takes part in later mutations
    assert close(mm(X), before)
    mm.verify()


@pytest.mark.parametrize(
    ("kind", "options", "module_type"),
    [
        ("conv", {}, nn.Conv2d),
        ("conv", {"kernel_size": 3}, nn.Conv2d),
        ("auto", {"nout": 11}, nn.Conv2d),
        ("norm", {}, nn.BatchNorm2d),
        ("relu", {}, nn.ReLU),
    ],
)
def test_insert_layer_into_a_conv_net_is_exact(kind, options, module_type):
    mm = conv_net()
    before = mm(IMAGE)
    change = mm.insert_layer("c1", kind, **options)
    new = mm.module.get_submodule(change.added[0])
    assert type(new) is module_type
    assert close(mm(IMAGE), before)
    if "nout" in options:
        assert (new.in_channels, new.out_channels, mm.module.c2.in_channels) == (8, 11, 11)
    # placed after c1's activation: c1 -> relu -> new -> c2
    assert f"{change.added[0]}(relu_1)" in mm.module.code.replace("self.", "")
    mm.verify()


def test_insert_layer_refusals_are_clear_and_change_nothing():
    mm = conv_net()
    refused(
        mm,
        IMAGE,
        mm.insert_layer,
        "c1",
        "linear",
        error=mt.MutnasTorchError,
        match="a Linear layer needs channels in the last dimension",
    )
    refused(
        mm,
        IMAGE,
        mm.insert_layer,
        "c1",
        "bogus",
        error=mt.MutnasTorchError,
        match=r"unknown layer kind 'bogus'; use auto, linear, conv, norm or one of \['elu'",
    )
    refused(
        mm,
        IMAGE,
        mm.insert_layer,
        "x",
        error=mt.MutnasTorchError,
        match=r"vertex 'x' has no node of its own .* pick a layer from mm.layers\(None\)",
    )


# ---------------------------------------------------------------- insert_residual
def test_insert_residual_is_exact_with_gelu():
    mm = conv_net(F.gelu)
    before = mm(IMAGE)
    change = mm.insert_residual("c2", activation="gelu", hidden=5)
    assert change.added == ["c2_residual_add", "c2_residual_in", "c2_residual_out"]
    got = vertices(mm)
    assert got["c2_residual_in"] == ("absorb", 5, ["c2"])
    assert got["c2_residual_out"] == ("absorb", 8, ["c2_residual_in"])
    assert got["c2_residual_add"] == ("add", 8, ["c2", "c2_residual_out"])
    assert isinstance(mm.module.get_submodule("c2_residual_act"), nn.GELU)
    assert torch.equal(mm.module.get_submodule("c2_residual_out").weight, torch.zeros(8, 5, 1, 1))
    assert close(mm(IMAGE), before)
    mm.verify()
    mm.resize("stem", 3)  # the new add joins the residual stream's alignment group
    assert mm.graph["c2_residual_out"].nout == 11
    assert close(mm(IMAGE), before)


def test_insert_residual_twice_after_the_same_layer():
    mm = mt.mutable(mlp().eval(), X)
    before = mm(X)
    first = mm.insert_residual("0")
    second = mm.insert_residual("0")
    assert not set(first.added) & set(second.added)  # fresh names the second time
    assert close(mm(X), before)
    mm.verify()
    check_consistent(mm.graph)


def test_insert_residual_is_transactional(monkeypatch):
    mm = mt.mutable(mlp().eval(), X)

    def fail(*args, **kwargs):
        raise mn.GraphError("injected failure")

    monkeypatch.setattr(mm.graph, "connect", fail)  # after insert_after and two absorbs
    refused(mm, X, mm.insert_residual, "0", error=mn.GraphError, match="injected failure")
    assert not [name for name, _ in mm.module.named_children() if "residual" in name]


def test_insert_residual_in_an_mlp_trains():
    mm = mt.mutable(mlp(), X)
    mm.insert_residual("2", activation="silu")
    optimizer = torch.optim.SGD(mm.parameters(), lr=0.1)
    loss = mm(X).square().mean()
    loss.backward()
    optimizer.step()
    assert mm.module.get_submodule("2_residual_out").weight.abs().sum() > 0


# ---------------------------------------------------------------- remove_layer
def test_remove_layer_refuses_a_layer_that_changes_the_spatial_shape():
    mm = conv_net()
    refused(
        mm,
        IMAGE,
        mm.remove_layer,
        "down",
        error=mt.MutnasTorchError,
        match=r"cannot remove 'down': it changes the tensor shape \(2, 8, 8, 8\) -> "
        r"\(2, 6, 3, 3\) beyond its channels, so its consumers would break",
    )


def test_remove_layer_of_a_shape_preserving_layer():
    mm = conv_net()
    shape = mm(IMAGE).shape
    change = mm.remove_layer("c1")
    assert change.removed == ["c1"] and "c1" not in mm.graph
    assert not hasattr(mm.module, "c1")
    assert vertices(mm)["c2"] == ("absorb", 8, ["bn"])
    assert mm(IMAGE).shape == shape
    mm.verify()


def test_remove_layer_after_a_flatten_refuses():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 16, 5),
        nn.ReLU(),
        nn.Linear(5, 2),
    )
    x = torch.randn(2, 3, 4, 4)
    mm = mt.mutable(net, x)
    refused(
        mm,
        x,
        mm.remove_layer,
        "2",
        error=mt.MutnasTorchError,
        match=r"cannot remove '2': each of its input features is one of 16 per channel of '0'",
    )
    assert mm(x).shape == (2, 2)
    mm.verify()


def test_insert_then_remove_layer_round_trips():
    mm = mt.mutable(mlp().eval(), X)
    before, code = mm(X), mm.module.code
    change = mm.insert_layer("0", "linear")
    mm.remove_layer(change.added[0])
    assert mm.module.code == code and close(mm(X), before)
    mm.verify()


def test_remove_layer_keeps_the_output_shape():
    mm = mt.mutable(mlp(), X)
    try:
        mm.remove_layer("4")
    except mn.MutnasError:
        return  # refusing is fine
    assert mm(X).shape == (2, 3)


# ---------------------------------------------------------------- remove_branch
def test_remove_branch_deletes_the_residual_branch():
    mm = conv_net()
    net = ConvNet().eval()
    net.load_state_dict({k: v for k, v in mm.module.state_dict().items()})
    mm.remove_branch("add")
    assert "c1" not in mm.graph and "c2" not in mm.graph and "add" not in mm.graph
    assert not hasattr(mm.module, "c1") and not hasattr(mm.module, "c2")
    assert vertices(mm)["down"] == ("absorb", 6, ["bn"])
    h = F.relu(net.bn(net.stem(IMAGE)))
    expected = net.head(F.relu(net.down(h)).mean((2, 3)))
    assert close(mm(IMAGE), expected)
    mm.verify()
    mm.resize("stem", -3)
    mm.verify()


def test_remove_branch_refuses_a_vertex_that_is_not_an_add():
    mm = conv_net()
    refused(
        mm,
        IMAGE,
        mm.remove_branch,
        "c1",
        error=mt.MutnasTorchError,
        match="'c1' is not an add with at least two inputs",
    )


# ---------------------------------------------------------------- connect / disconnect
class Merges(nn.Module):
    """An add (a + c) and a concat ([add, d]); `early` is a stride-2 conv computed first."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.early = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.d = nn.Conv2d(8, 5, 1)
        self.e = nn.Conv2d(13, 4, 1)
        self.f = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        a = torch.relu(self.a(x))
        early = self.early(a)
        b = torch.relu(self.b(a))
        h = a + self.c(b)
        cat = torch.cat([h, self.d(h)], 1)
        return self.e(cat), self.f(early)


def merges() -> mt.MutableModel:
    torch.manual_seed(0)
    return mt.mutable(Merges().eval(), IMAGE)


def test_connect_into_an_add_and_disconnect_round_trip():
    mm = merges()
    before, code = mm(IMAGE), mm.module.code
    mm.connect("b", "add")
    assert vertices(mm)["add"] == ("add", 8, ["a", "c", "b"])
    assert "torch.add(add, relu_1)" in mm.module.code
    assert not close(mm(IMAGE), before)  # b's activations are now added to the stream
    mm.verify()
    mm.disconnect("b", "add")
    assert vertices(mm)["add"] == ("add", 8, ["a", "c"])
    assert close(mm(IMAGE), before)
    assert mm.module.code != code  # rebuilt as torch.add, same function
    mm.verify()


def test_connect_into_a_concat_is_exact_and_disconnect_round_trips():
    mm = merges()
    before, code = mm(IMAGE), mm.module.code
    change = mm.connect("a", "cat")
    assert change.outputs["cat"].tolist() == list(range(13)) + [-1] * 8
    assert vertices(mm)["cat"] == ("concat", 21, ["add", "d", "a"])
    assert mm.module.e.in_channels == 21
    assert torch.equal(mm.module.e.weight[:, 13:], torch.zeros(4, 8, 1, 1))
    assert close(mm(IMAGE), before)  # the consumer's new columns are zero
    mm.verify()
    mm.disconnect("a", "cat")
    assert vertices(mm)["cat"] == ("concat", 13, ["add", "d"])
    assert mm.module.e.in_channels == 13
    assert close(mm(IMAGE), before) and mm.module.code == code
    mm.verify()


def test_connect_refuses_mismatched_spatial_shapes():
    mm = merges()
    for dst in ("add", "cat"):
        refused(
            mm,
            IMAGE,
            mm.connect,
            "early",
            dst,
            error=mt.MutnasTorchError,
            match=rf"cannot connect 'early' \(2, 8, 4, 4\) -> '{dst}' \(2, \d+, 8, 8\): the "
            r"shapes differ outside the channel dimension",
        )


def test_connect_refuses_a_source_that_runs_later_or_a_target_that_is_no_merge():
    mm = merges()
    refused(
        mm,
        IMAGE,
        mm.connect,
        "e",
        "add",
        error=mt.MutnasTorchError,
        match="cannot connect 'e' -> 'add': 'e' runs after 'add'",
    )
    refused(
        mm,
        IMAGE,
        mm.connect,
        "b",
        "c",
        error=mn.GraphError,
        match="can only connect into add or concat vertices; 'c' is absorb",
    )


def test_disconnect_refuses_a_missing_edge_or_the_last_input():
    mm = merges()
    refused(
        mm,
        IMAGE,
        mm.disconnect,
        "b",
        "add",
        error=mn.GraphError,
        match="there is no edge 'b' -> 'add'",
    )
    refused(
        mm,
        IMAGE,
        mm.disconnect,
        "b",
        "c",
        error=mn.GraphError,
        match="cannot disconnect the only input of 'c'",
    )


def stale_names(mm: mt.MutableModel) -> list[str]:
    """Nodes whose channel reference names a vertex the graph no longer has."""
    return [
        node
        for node, ref in mm.refs.items()
        if isinstance(ref, mt.analyze.Ref) and ref.vertex not in mm.graph
    ] + [lit.node for lit in mm.literals if lit.vertex not in mm.graph]


class ViewHead(nn.Module):
    """conv -> bn -> relu -> view with a literal feature count -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 64, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        return self.head(h.reshape(-1, 4 * 64))


def test_remove_layer_hands_its_channels_to_its_input():
    """Regression: the relu and the reshape literal still named the removed BatchNorm, so
    later mutations failed with ``KeyError: no vertex named 'bn'``."""
    torch.manual_seed(0)
    mm = mt.mutable(ViewHead().eval(), IMAGE)
    assert {lit.vertex for lit in mm.literals} == {"bn"}
    mm.remove_layer("bn")
    assert stale_names(mm) == []
    assert mm.refs["relu"].vertex == "conv"
    assert {lit.vertex for lit in mm.literals} == {"conv"}
    mm.resize("conv", 2)  # follows through the reshape literal: 6 * 64 features
    assert mm.module.head.in_features == 6 * 64 and mm(IMAGE).shape == (2, 2)
    mm.verify()


def test_disconnect_to_one_operand_hands_the_add_channels_on():
    mm = merges()
    mm.disconnect("c", "add")  # the add of one operand is removed from the graph
    assert "add" not in mm.graph and stale_names(mm) == []
    mm.resize("a", 3)
    assert mm.module.e.in_channels == 16
    mm.verify()
