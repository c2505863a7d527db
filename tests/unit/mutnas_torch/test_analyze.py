"""Analysis: which vertex each layer and op becomes, and where the channels go."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mutnas as mn
import mutnas_torch as mt
from mutnas.advanced import frozen_vertices
from mutnas.testing import check_consistent
from mutnas_torch.analyze import Ref


def vertices(mm: mt.MutableModel) -> dict[str, tuple[str, int, list[str]]]:
    """``{name: (kind, nout, input names)}`` for every vertex of the model's graph."""
    return {v.name: (v.kind, v.nout, [u.name for u in v.inputs]) for v in mm.graph.vertices}


def grows_exactly(mm: mt.MutableModel, layer: str, delta: int, x: torch.Tensor) -> bool:
    mm.eval()
    before = mm(x)
    mm.resize(layer, delta)
    mm.verify()
    return torch.allclose(mm(x), before, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- layers
class Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.g = nn.Conv2d(8, 12, 1, groups=4)
        self.bn = nn.BatchNorm2d(12)
        self.gn = nn.GroupNorm(3, 12)
        self.pr = nn.PReLU(12)
        self.up = nn.ConvTranspose2d(12, 6, 2, stride=2)
        self.head = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        h = self.pr(self.gn(self.bn(self.g(self.dw(self.a(x))))))
        return self.head(torch.relu(self.up(h)))


def test_linear_absorbs_with_weight_rows_and_columns_bound():
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)), torch.randn(2, 4))
    assert vertices(mm) == {
        "input_1": ("input", 4, []),
        "0": ("absorb", 6, ["input_1"]),
        "2": ("absorb", 2, ["0"]),
        "2~pinned": ("invariant", 2, ["2"]),
    }
    binding = mm.bindings["2"]
    assert binding.kind == "linear" and binding.module == "2"
    assert [(a.target, a.axis) for a in binding.outputs] == [("2.weight", 0), ("2.bias", 0)]
    assert [(a.target, a.axis) for a in binding.inputs[0]] == [("2.weight", 1)]
    assert mm.pinned == {"2~pinned": "graph output '_2'"}  # fx node name
    assert mm.layers() == ["0", "2"]


def test_conv_layer_kinds():
    mm = mt.mutable(Convs(), torch.randn(1, 3, 6, 6))
    got = vertices(mm)
    assert got["a"] == ("absorb", 8, ["x"])
    assert got["dw"] == ("invariant", 8, ["a"])  # depthwise: channel i only reads channel i
    assert got["g"] == ("absorb", 12, ["dw"]) and mm.graph["g"].groups == 4
    assert got["up"] == ("absorb", 6, ["pr"])  # transposed conv absorbs like a conv
    assert [mm.bindings[n].kind for n in ("a", "dw", "g", "up")] == [
        "conv",
        "depthwise",
        "grouped",
        "conv",
    ]
    # a transposed conv's weight is [in, out, k, k]: outputs on axis 1, inputs on axis 0
    assert mm.bindings["up"].outputs[0].axis == 1 and mm.bindings["up"].inputs[0][0].axis == 0
    check_consistent(mm.graph)


def test_norms_and_prelu_are_invariant_with_their_parameters():
    mm = mt.mutable(Convs(), torch.randn(1, 3, 6, 6))
    got = vertices(mm)
    assert got["bn"] == ("invariant", 12, ["g"])
    assert got["gn"] == ("invariant", 12, ["bn"]) and mm.graph["gn"].multiple_of == 3
    assert got["pr"] == ("invariant", 12, ["gn"])
    targets = {n: [a.target for a in mm.bindings[n].outputs] for n in ("bn", "gn", "pr")}
    assert targets == {
        "bn": ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
        "gn": ["gn.weight", "gn.bias"],
        "pr": ["pr.weight"],
    }
    inits = {a.target: a.init for a in mm.bindings["bn"].outputs}
    assert inits == {
        "bn.weight": "ones",
        "bn.bias": "zeros",
        "bn.running_mean": "zeros",
        "bn.running_var": "ones",
    }


def test_layernorm_over_channels_is_invariant_and_a_single_prelu_passes_through():
    net = nn.Sequential(nn.Linear(3, 6), nn.LayerNorm(6), nn.PReLU(), nn.Linear(6, 2))
    mm = mt.mutable(net, torch.randn(2, 3))
    got = vertices(mm)
    assert got["1"] == ("invariant", 6, ["0"])
    assert mm.bindings["1"].kind == "layernorm"
    assert got["3"] == ("absorb", 2, ["1"])  # PReLU() has one shared slope: no vertex
    assert "2" not in got


# ---------------------------------------------------------------- concatenation
class Cats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(3, 5, 1)
        self.c = nn.Conv2d(3, 4, 1)
        self.on_channels = nn.Conv2d(9, 2, 1)
        self.on_height = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        a = self.a(x)
        channels = torch.cat([a, self.b(x)], 1)
        height = torch.cat([a, self.c(x)], dim=2)
        return self.on_channels(channels), self.on_height(height)


def test_cat_on_the_channel_dim_is_a_concat_and_on_another_dim_aligns_its_inputs():
    x = torch.randn(1, 3, 6, 6)
    mm = mt.mutable(Cats(), x)
    got = vertices(mm)
    assert got["cat"] == ("concat", 9, ["a", "b"])
    assert got["cat_1~aligned"] == ("add", 4, ["a", "c"])
    assert got["on_height"] == ("absorb", 2, ["cat_1~aligned"])
    mm.resize("c", 2)  # the aligned cat drags `a` along, and with it the concat
    assert (mm.graph["a"].nout, mm.graph["cat"].nout) == (6, 11)
    assert mm.module.get_submodule("on_channels").in_channels == 11
    assert [t.shape for t in mm(x)] == [(1, 2, 6, 6), (1, 2, 12, 6)]


def test_class_token_cat_and_position_embedding_follow_the_channels():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(3, 8)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.pos = nn.Parameter(torch.randn(1, 5, 8))
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            cls = self.cls.expand(x.shape[0], -1, -1)
            tokens = torch.cat([cls, self.embed(x)], dim=1) + self.pos
            return self.head(tokens[:, 0])

    x = torch.randn(2, 4, 3)
    mm = mt.mutable(Tokens(), x)
    assert vertices(mm)["cat"] == ("invariant", 8, ["embed"])
    assert [a.target for a in mm.bindings["cat"].outputs] == ["cls"]
    assert [a.target for a in mm.bindings["add"].outputs] == ["pos"]
    assert grows_exactly(mm, "embed", 3, x)
    assert mm.module.cls.shape == (1, 1, 11) and mm.module.pos.shape == (1, 5, 11)


# ---------------------------------------------------------------- shape ops
class FlattenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3)
        self.fc = nn.Linear(5 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def test_flatten_after_conv_expands_each_channel_into_a_block_of_h_times_w_features():
    x = torch.randn(2, 3, 6, 6)
    mm = mt.mutable(FlattenNet(), x)
    assert mm.refs["flatten"] == Ref("conv", 1, outer=1, inner=16)
    (columns,) = mm.bindings["fc"].inputs[0]
    assert (columns.target, columns.axis, columns.outer, columns.inner) == ("fc.weight", 1, 1, 16)
    assert vertices(mm)["fc"] == ("absorb", 3, ["conv"])
    assert grows_exactly(mm, "conv", 2, x)
    assert mm.module.fc.in_features == 7 * 16


def test_permute_and_transpose_move_the_channel_dim():
    class ChannelsLast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 6)
            self.back = nn.Conv2d(6, 2, 1)

        def forward(self, x):
            h = self.fc(self.norm(self.conv(x).permute(0, 2, 3, 1)))
            return self.back(h.transpose(1, 3).transpose(2, 3))

    x = torch.randn(1, 3, 5, 5)
    mm = mt.mutable(ChannelsLast(), x)
    assert mm.refs["permute"] == Ref("conv", 3)
    assert mm.refs["transpose"] == Ref("fc", 1) and mm.refs["transpose_1"] == Ref("fc", 1)
    assert vertices(mm)["norm"] == ("invariant", 8, ["conv"])
    assert vertices(mm)["fc"] == ("absorb", 6, ["norm"])
    mm.resize({"conv": -3, "fc": 2})
    mm.verify()
    assert mm.module.norm.normalized_shape == (5,) and mm.module.back.in_channels == 8
    assert mm(x).shape == (1, 2, 5, 5)


class Reshapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.fc = nn.Linear(8 * 16, 5)

    def forward(self, x):
        h = self.conv(x).reshape(-1, 8, 16)
        return self.fc(h.view(x.shape[0], 128))


def test_reshape_literals_of_the_channel_count_are_recorded_and_rewritten():
    x = torch.randn(2, 3, 4, 4)
    mm = mt.mutable(Reshapes(), x)
    assert [(lit.node, lit.vertex, lit.inner) for lit in mm.literals] == [
        ("reshape", "conv", 1),
        ("view", "conv", 16),
    ]
    assert grows_exactly(mm, "conv", 2, x)
    assert "reshape(-1, 10, 16)" in mm.module.code and "view(getitem, 160)" in mm.module.code
    mm.resize("conv", -5)
    mm.verify()
    assert "reshape(-1, 5, 16)" in mm.module.code and mm(x).shape == (2, 5)


def test_a_reshape_that_splits_the_channels_pins_them():
    class Heads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 8)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.fc(x).view(-1, 2, 4))

    mm = mt.mutable(Heads(), torch.randn(2, 3))
    assert "fc" in frozen_vertices(mm.graph)
    assert any("splits the channel dimension" in why for why in mm.pinned.values())


# ---------------------------------------------------------------- elementwise
def test_squeeze_excitation_multiply_merges_the_gate_with_the_stream():
    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.reduce = nn.Conv2d(8, 2, 1)
            self.expand = nn.Conv2d(2, 8, 1)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            h = self.conv(x)
            s = h.mean((2, 3), keepdim=True)
            s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
            return self.head(h * s)

    x = torch.randn(2, 3, 5, 5)
    mm = mt.mutable(SE(), x)
    got = vertices(mm)
    assert got["reduce"] == ("absorb", 2, ["conv"])  # the spatial mean keeps the channels
    assert got["mul"] == ("add", 8, ["conv", "expand"])
    assert got["head"] == ("absorb", 4, ["mul"])
    assert grows_exactly(mm, "expand", 3, x)
    assert mm.graph["conv"].nout == 11 and mm.module.conv.out_channels == 11


class Broadcasts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.attention = nn.Conv2d(8, 1, 1)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = self.conv(x) * 2.0 + 1.0
        h = h * self.scale
        h = h * torch.sigmoid(self.attention(h))
        return self.head(h)


def test_broadcast_operands_scalars_parameters_and_single_channel_maps():
    x = torch.randn(2, 3, 5, 5)
    mm = mt.mutable(Broadcasts(), x)
    got = vertices(mm)
    # scalars add no vertex; a per-channel parameter is owned by an invariant vertex
    assert got["mul_1"] == ("invariant", 8, ["conv"])
    assert [(a.target, a.axis, a.init) for a in mm.bindings["mul_1"].outputs] == [
        ("scale", 0, "mean")
    ]
    # a one-channel map broadcast over the channels is pinned to one channel
    assert got["attention"] == ("absorb", 1, ["mul_1"])
    assert mm.pinned["attention~pinned"] == "mul_2: broadcast against channels of 'mul_1'"
    assert got["head"] == ("absorb", 4, ["mul_1"])
    assert grows_exactly(mm, "conv", 3, x)
    assert mm.module.scale.shape == (11, 1, 1)
    with pytest.raises(mn.SizeError):
        mm.resize("attention", 1)


def test_reductions_keep_or_drop_the_channel_dim():
    class Reduce(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            h = self.conv(x)
            pooled = h.mean(dim=(2, 3))
            energy = h.sum(1).amax((1, 2))
            return self.fc(pooled) + energy.unsqueeze(1)

    mm = mt.mutable(Reduce(), torch.randn(2, 3, 5, 5))
    assert mm.refs["mean"] == Ref("conv", 1)
    assert mm.refs["sum_1"] is None and mm.refs["amax"] is None
    assert vertices(mm)["fc"] == ("absorb", 4, ["conv"])


def test_growing_through_a_reduction_over_channels_is_exact_or_refused():
    class Centre(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            h = self.conv(x)
            return self.head(h - h.mean(1, keepdim=True))

    x = torch.randn(2, 3, 5, 5)
    mm = mt.mutable(Centre(), x)
    try:
        exact = grows_exactly(mm, "conv", 3, x)
    except mn.SizeError:
        exact = True  # refusing (channels pinned) is fine too
    assert exact


# ---------------------------------------------------------------- fail closed
class Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)
        self.shuffle = nn.Sequential(nn.PixelShuffle(2))
        self.c = nn.Conv2d(1, 2, 1)

    def forward(self, x):
        return self.c(self.shuffle(torch.cumsum(self.b(self.a(x)), 1)))


def test_unknown_ops_and_modules_pin_their_channels():
    x = torch.randn(1, 3, 4, 4)
    mm = mt.mutable(Unknown(), x)
    assert mm.pinned == {
        "b~pinned": "call_function _VariableFunctionsClass.cumsum at node 'cumsum': "
        "no rule for this op",
        "cumsum~const~pinned": "module 'shuffle.0': no rule for module type PixelShuffle",
        "c~pinned": "graph output 'c'",
    }
    frozen = frozen_vertices(mm.graph)
    assert {"b", "cumsum~const", "shuffle_0~const"} <= frozen and "a" not in frozen
    assert vertices(mm)["c"] == ("absorb", 2, ["shuffle_0~const"])
    with pytest.raises(mn.SizeError):
        mm.resize("b", 1)
    mm.resize("a", -2)  # what comes before is still mutable
    assert mm(x).shape == (1, 2, 8, 8)


@pytest.mark.parametrize(
    ("model", "path", "type_name"),
    [
        (Unknown(), "cumsum", "call_function _VariableFunctionsClass.cumsum"),
        (
            nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.PixelShuffle(2))),
            "1.0",
            "PixelShuffle",
        ),
        (
            nn.Sequential(nn.Conv2d(3, 4, 1), nn.ConvTranspose2d(4, 4, 2, groups=2)),
            "1",
            "ConvTranspose2d",
        ),
    ],
    ids=["function", "module", "grouped_transposed_conv"],
)
def test_strict_mode_raises_naming_the_module_path_and_type(model, path, type_name):
    with pytest.raises(mt.UnsupportedLayerError) as info:
        mt.mutable(model, torch.randn(1, 3, 4, 4), strict=True)
    assert (info.value.path, info.value.type_name) == (path, type_name)
    assert str(info.value).startswith(f"unsupported layer {path!r} of type {type_name}: ")
    assert "strict=False" in str(info.value)


def test_strict_mode_accepts_a_fully_understood_model():
    mm = mt.mutable(Convs(), torch.randn(1, 3, 6, 6), strict=True)
    assert mm.pinned == {"head~pinned": "graph output 'head'"}


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.shared = nn.Linear(6, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x):
        return self.out(self.shared(torch.relu(self.shared(self.a(x)))))


def test_a_reused_parametrised_module_is_frozen():
    x = torch.randn(2, 4)
    mm = mt.mutable(Shared(), x)
    reason = "module 'shared': the module is called more than once (shared weights)"
    assert mm.pinned["a~pinned"] == reason
    assert "shared" not in mm.bindings
    assert "a" in frozen_vertices(mm.graph)
    with pytest.raises(mn.SizeError):
        mm.resize("a", 2)
    mm.prune(0.5)
    assert mm.module.shared.weight.shape == (6, 6) and mm.module.a.out_features == 6


def test_strict_mode_refuses_a_reused_module():
    with pytest.raises(mt.UnsupportedLayerError, match="called more than once") as info:
        mt.mutable(Shared(), torch.randn(2, 4), strict=True)
    assert (info.value.path, info.value.type_name) == ("shared", "Linear")


def test_a_reused_parameter_free_module_is_fine():
    act = nn.ReLU()
    net = nn.Sequential(nn.Linear(4, 6), act, nn.Linear(6, 6), act, nn.Linear(6, 2))
    mm = mt.mutable(net, torch.randn(2, 4), strict=True)
    assert mm.layers() == ["0", "2", "4"]
