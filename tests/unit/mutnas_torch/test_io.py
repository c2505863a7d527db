"""Model files without pickle: round trips, the allow-list, corrupt files, mutnas-free output."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from torch import fx, nn
from torchvision.models.convnext import LayerNorm2d
from torchvision.ops import MLP, Conv2dNormActivation, Permute, SqueezeExcitation, StochasticDepth

import mutnas_torch as mt
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io import VERSION, load, save
from mutnas_torch.trace import trace

CALLED: list[str] = []  # canaries below record here if anything from a file ever runs them


def canary(x):
    CALLED.append("canary function")
    return x


class Canary(nn.Module):
    def __new__(cls, *args, **kwargs):
        CALLED.append("canary module")
        return super().__new__(cls)

    def forward(self, x):
        return x


class Swish(nn.Module):
    """A user-defined leaf layer with a plain attribute."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


def scaled(x, factor):
    return x * factor


fx.wrap("scaled")


class Small(nn.Module):
    """call_module, call_function, call_method and getattr nodes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x):
        return torch.relu(self.fc(x)).view(x.shape[0], 2, -1)


class Scaled(Small):
    """Calls a function the user wrapped with ``torch.fx.wrap``."""

    def forward(self, x):
        return scaled(super().forward(x), 2.0)


def round_trip(model, tmp_path: Path, **kwargs):
    save(model, tmp_path / "model")
    return load(tmp_path / "model", **kwargs)


def assert_same_state(mm: mt.MutableModel, loaded: mt.MutableModel) -> None:
    assert isinstance(loaded, mt.MutableModel)
    assert loaded.graph == mm.graph
    assert loaded.bindings == mm.bindings
    assert loaded.literals == mm.literals
    assert loaded.pinned == mm.pinned
    assert loaded.refs == mm.refs
    assert [(x.shape, x.dtype) for x in loaded.example_inputs] == [
        (x.shape, x.dtype) for x in mm.example_inputs
    ]
    assert [(c.kind, c.nout_after) for c in loaded.history] == [
        (c.kind, c.nout_after) for c in mm.history
    ]
    assert loaded.module.code == mm.module.code
    assert loaded.training == mm.training and loaded.growth == mm.growth
    assert [m.training for m in loaded.module.modules()] == [
        m.training for m in mm.module.modules()
    ]


def assert_same_output(a, b, x) -> None:
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def edited(tmp_path: Path, model, change) -> Path:
    """Save ``model``, then let ``change`` edit the JSON document in place."""
    folder = save(model, tmp_path / "edited")
    doc = json.loads((folder / "model.json").read_text())
    change(doc)
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def node(doc: dict, op: str) -> dict:
    return next(n for n in doc["graph"] if n["op"] == op)


# ---------------------------------------------------------------- round trips
def test_mlp_round_trip(tmp_path):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(3, 4)
    mm = mt.mutable(net, x, growth="net2net")
    mm.resize("0", 3)
    mm.resize("0", -5)
    loaded = round_trip(mm, tmp_path)
    assert_same_state(mm, loaded)
    assert_same_output(mm, loaded, x)
    saved, copies = mm.history[0].copies, loaded.history[0].copies  # Net2Net copy maps
    assert type(copies) is type(saved) and copies["0"].tolist() == saved["0"].tolist()


def test_conv_bn_round_trip_keeps_buffers_and_modes(tmp_path):
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3, groups=4)
    )
    x = torch.randn(2, 3, 12, 12)
    net(x)  # move the running statistics away from their defaults
    mm = mt.mutable(net, x)
    mm.module.get_submodule("1").eval()  # one module in eval mode, the rest training
    loaded = round_trip(mm, tmp_path)
    assert_same_state(mm, loaded)
    bn = loaded.module.get_submodule("1")
    assert not bn.training and loaded.module.training
    assert torch.equal(bn.running_var, mm.module.get_submodule("1").running_var)
    assert int(bn.num_batches_tracked) == 1
    assert_same_output(mm.eval(), loaded.eval(), x)


@pytest.mark.parametrize(
    "name",
    [
        "resnet18",
        "mobilenet_v3_small",
        "regnet_x_400mf",  # module names with hyphens (block1-0)
        pytest.param("vit_b_16", marks=pytest.mark.slow),
        pytest.param("swin_t", marks=pytest.mark.slow),  # window attention tables
        pytest.param("maxvit_t", marks=pytest.mark.slow),  # grid attention tables, 224 px
    ],
)
def test_torchvision_round_trip(tmp_path, name):
    torch.manual_seed(0)
    kwargs = {"image_size": 32} if name == "vit_b_16" else {}
    net = torchvision.models.get_model(name, **kwargs).eval()
    size = 224 if name == "maxvit_t" else 32
    x = torch.randn(1, 3, size, size)
    mm = mt.mutable(net, x)
    mm.eval()
    loaded = round_trip(mm, tmp_path)
    assert_same_state(mm, loaded)
    assert_same_output(mm, loaded, x)


def test_mutated_model_round_trips_and_mutates_like_its_twin(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    mm = mt.mutable(torchvision.models.resnet18().eval(), x)
    mm.eval()
    mm.prune(0.25)
    mm.insert_layer("layer1.0.conv2")
    mm.connect("layer1.0.bn1", "add_1")
    loaded = round_trip(mm, tmp_path)
    assert_same_state(mm, loaded)
    assert_same_output(mm, loaded, x)
    for model in (mm, loaded):
        model.prune(0.2)
        model.insert_layer("layer2.0.conv1", kind="norm")
        model.remove_layer("layer1_0_conv2_inserted")
    assert_same_state(mm, loaded)
    assert_same_output(mm, loaded, x)
    loaded.verify()


def test_graph_module_from_to_module_round_trip(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    mm = mt.mutable(torchvision.models.mobilenet_v3_small().eval(), x)
    mm.prune(0.5)
    gm = mm.to_module().eval()
    loaded = round_trip(gm, tmp_path)
    assert type(loaded) is not mt.MutableModel and isinstance(loaded, fx.GraphModule)
    assert loaded.code == gm.code
    assert_same_output(gm, loaded, x)
    for module in [*gm.modules(), *loaded.modules()]:
        assert not type(module).__module__.startswith("mutnas"), type(module)


def test_to_module_output_references_no_mutnas_class():
    gm = mt.mutable(nn.Sequential(nn.Linear(4, 2)), torch.randn(1, 4)).to_module()
    assert gm._tracer_cls is None and gm.graph._tracer_cls is None
    assert b"mutnas_torch.trace" not in pickle.dumps(gm)


def test_loaded_graph_module_runs_without_mutnas(tmp_path):
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 2)), torch.randn(2, 4))
    folder = save(mm.to_module(), tmp_path / "plain")
    script = textwrap.dedent(
        f"""
        import copy, sys, torch
        from mutnas_torch.io import load
        gm = load({str(folder)!r})
        x = torch.randn(2, 4)
        expected = gm(x)
        for name in [n for n in sys.modules if n.split(".")[0] in ("mutnas", "mutnas_torch")]:
            del sys.modules[name]
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("mutnas", "mutnas_torch"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        gm.recompile()
        twin = copy.deepcopy(gm)
        assert torch.equal(twin(x), expected) and torch.equal(gm(x), expected)
        names = [type(m).__module__ for m in gm.modules()] + [gm.forward.__module__ or ""]
        assert not [n for n in names if n.startswith("mutnas")], names
        assert gm._tracer_cls is None
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_graph_arguments_keep_their_types(tmp_path):
    class Ops(nn.Module):
        def forward(self, x):
            y = x[..., 1:3]
            y = y.to(torch.float64).to(dtype=torch.float32, device=torch.device("cpu"))
            y = y.contiguous(memory_format=torch.contiguous_format)
            y = torch.clamp(y, min=-math.inf, max=math.inf) + x.new_full((1,), math.nan)
            z = torch.cat([y.nan_to_num(0.5), y], dim=-1)
            return z.reshape(x.shape[0], -1), (y, [z.sum(dim=(0, 1))])

    gm = fx.symbolic_trace(Ops())
    loaded = round_trip(gm, tmp_path)
    assert loaded.code == gm.code
    x = torch.randn(2, 4)
    expected, got = gm(x), loaded(x)
    assert [type(v) for v in (got, got[1], got[1][1])] == [tuple, tuple, list]
    torch.testing.assert_close(got, expected, equal_nan=True, rtol=0, atol=0)
    for old, new in zip(gm.graph.nodes, loaded.graph.nodes, strict=True):
        assert repr((new.name, new.target, new.args, new.kwargs)) == repr(
            (old.name, old.target, old.args, old.kwargs)
        )
        assert fx.node.map_aggregate(new.args, type) == fx.node.map_aggregate(old.args, type)


def test_shared_aliased_and_non_contiguous_tensors(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.b.weight = self.a.weight  # tied parameter
            self.shared = nn.ReLU()

        def forward(self, x):
            return self.b(self.shared(self.a(x))) + torch.ones(4)  # a tensor constant

    model = fx.symbolic_trace(Tied())
    model.twice = model.shared  # fx keeps one name per module; give it a second one
    model.register_buffer("t", torch.randn(4, 3).t())  # non-contiguous
    model.register_buffer("view", model.t[1:3])  # shares memory with t
    model.register_buffer("scratch", torch.ones(4), persistent=False)
    loaded = round_trip(model, tmp_path)
    assert loaded.get_submodule("a").weight is loaded.get_submodule("b").weight
    assert loaded.get_submodule("shared") is loaded.get_submodule("twice")
    for name in ("t", "view", "scratch", "_tensor_constant0"):
        assert torch.equal(getattr(loaded, name), getattr(model, name))
    assert "scratch" not in loaded.state_dict() and "t" in loaded.state_dict()
    assert_same_output(model, loaded, torch.randn(2, 4))


def test_containers_keep_their_types(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small().eval()
    gm = fx.symbolic_trace(net)
    gm.features = net.features  # the real containers instead of fx's bare modules
    gm.extra = nn.ModuleDict({"blocks": nn.ModuleList([nn.Sequential(nn.Linear(2, 2))])})
    loaded = round_trip(gm, tmp_path)
    types = [(n, type(m)) for n, m in gm.named_modules() if n]  # the root's class is per object
    assert [(n, type(m)) for n, m in loaded.named_modules() if n] == types
    kinds = {t.__name__ for _, t in types}
    assert {"Conv2dNormActivation", "InvertedResidual", "SqueezeExcitation"} <= kinds
    assert {"Sequential", "ModuleDict", "ModuleList"} <= kinds
    assert loaded.features[1].block[0].out_channels == net.features[1].block[0].out_channels
    assert_same_output(gm, loaded, torch.randn(1, 3, 32, 32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_load_onto_a_gpu(tmp_path):
    torch.manual_seed(0)
    gm = fx.symbolic_trace(torchvision.models.resnet18().eval())
    x = torch.randn(2, 3, 32, 32)
    loaded = load(save(gm, tmp_path / "model"), device="cuda")
    assert {p.device.type for p in [*loaded.parameters(), *loaded.buffers()]} == {"cuda"}
    with torch.no_grad():
        expected = gm.cuda()(x.cuda())
        torch.testing.assert_close(loaded(x.cuda()), expected)


LAYERS = [
    (nn.Linear(4, 3), (2, 4)),
    (nn.Conv1d(3, 4, 3, padding=1, dilation=1), (1, 3, 8)),
    (nn.Conv2d(3, 4, (3, 1), stride=2, padding="valid", bias=False), (1, 3, 8, 8)),
    (nn.Conv3d(2, 4, 3, padding_mode="reflect", padding=1), (1, 2, 6, 6, 6)),
    (nn.ConvTranspose1d(3, 4, 3, stride=2, output_padding=1), (1, 3, 8)),
    (nn.ConvTranspose2d(4, 4, 3, groups=2), (1, 4, 6, 6)),
    (nn.ConvTranspose3d(2, 2, 2), (1, 2, 4, 4, 4)),
    (nn.BatchNorm1d(3), (4, 3)),
    (nn.BatchNorm2d(3, momentum=None), (2, 3, 4, 4)),
    (nn.BatchNorm3d(2, affine=False), (2, 2, 3, 3, 3)),
    (nn.InstanceNorm2d(3, affine=True, track_running_stats=True), (2, 3, 4, 4)),
    (nn.LayerNorm((3, 4), eps=1e-3), (2, 3, 4)),
    (nn.GroupNorm(2, 4), (2, 4, 3, 3)),
    (nn.PReLU(3), (2, 3, 4)),
    (nn.Embedding(10, 4, padding_idx=0), None),
    (nn.MultiheadAttention(8, 2, batch_first=True), (2, 5, 8)),
    (nn.LSTM(4, 6, num_layers=2, batch_first=True), (2, 5, 4)),
    *[
        (layer, (2, 3, 8, 8))
        for layer in (
            nn.ReLU(),
            nn.ReLU6(),
            nn.LeakyReLU(0.2),
            nn.ELU(alpha=0.5),
            nn.SELU(),
            nn.CELU(),
            nn.GELU(approximate="tanh"),
            nn.SiLU(),
            nn.Mish(),
            nn.Hardswish(),
            nn.Hardsigmoid(),
            nn.Hardtanh(-2.0, 2.0),
            nn.Sigmoid(),
            nn.Tanh(),
            nn.Softplus(beta=2.0),
            nn.Softsign(),
            nn.Tanhshrink(),
            nn.LogSigmoid(),
            nn.Threshold(0.1, 20.0),
            nn.Dropout(0.3),
            nn.Dropout2d(),
            nn.AlphaDropout(0.1),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.AvgPool2d(2, count_include_pad=False),
            nn.AdaptiveAvgPool2d((2, 1)),
            nn.AdaptiveMaxPool2d(1),
            nn.LPPool2d(2, 2),
            nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
            nn.UpsamplingNearest2d(scale_factor=2),
            nn.ZeroPad2d((1, 2, 0, 1)),
            nn.ReflectionPad2d(1),
            nn.ReplicationPad2d(2),
            nn.ConstantPad2d(1, -math.inf),
            nn.Flatten(1, -1),
            nn.Unflatten(1, (1, 3)),
            nn.Identity(),
            nn.Softmax(dim=1),
            nn.LogSoftmax(dim=-1),
            nn.Softmax2d(),
            nn.LocalResponseNorm(2),
            Conv2dNormActivation(3, 4, 3, activation_layer=nn.Hardswish),
            SqueezeExcitation(3, 2),
            StochasticDepth(0.2, "row"),
            Permute([0, 2, 3, 1]),
            LayerNorm2d(3),
        )
    ],
    (MLP(4, [8, 4], dropout=0.1), (2, 4)),
]


class Wrap(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        if isinstance(self.layer, nn.MultiheadAttention):
            return self.layer(x, x, x)[0]
        out = self.layer(x)
        return out[0] if isinstance(self.layer, nn.LSTM) else out


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=lambda v: type(v).__name__)
def test_layer_types_round_trip(tmp_path, layer, shape):
    torch.manual_seed(0)
    x = torch.randint(0, 10, (2, 5)) if shape is None else torch.randn(shape)
    gm = trace(Wrap(layer).eval(), x, leaf_modules=[type(layer)])
    loaded = round_trip(gm, tmp_path)
    original, rebuilt = gm.get_submodule("layer"), loaded.get_submodule("layer")
    assert type(rebuilt) is type(original)
    internals = set(nn.Module().__dict__) | {"_flat_weights", "_flat_weight_refs"}
    plain = [{k: v for k, v in vars(m).items() if k not in internals} for m in (original, rebuilt)]
    assert repr(plain[0]) == repr(plain[1])
    assert [n for n, _ in rebuilt.named_modules()] == [n for n, _ in original.named_modules()]
    assert_same_output(gm, loaded, x)


def test_user_leaf_and_wrapped_function_load_only_when_passed(tmp_path):
    x = torch.randn(2, 4)
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 4), Swish(0.5)), x, leaf_modules=[Swish])
    folder = save(mm, tmp_path / "leaf")
    name = f"{Swish.__module__}.Swish"
    with pytest.raises(MutnasTorchError, match=rf"refusing module type '{name}'.*modules="):
        load(folder)
    loaded = load(folder, modules={name: Swish})
    assert loaded.module.get_submodule("1").beta == 0.5
    assert_same_output(mm, loaded, x)

    gm = fx.symbolic_trace(Scaled())
    folder = save(gm, tmp_path / "wrapped")
    with pytest.raises(MutnasTorchError, match=r"refusing function '.*scaled'.*functions="):
        load(folder)
    loaded = load(folder, functions={f"{scaled.__module__}.scaled": scaled})
    assert_same_output(gm, loaded, x)


# ---------------------------------------------------------------- refusals
def test_refuses_os_system_as_call_function_and_runs_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "system", lambda *args: calls.append(args))
    gm = fx.symbolic_trace(Small())

    def evil(doc):
        target = node(doc, "call_function")
        target["target"] = "os.system"
        target["args"] = ["echo pwned"]

    with pytest.raises(MutnasTorchError, match=r"refusing function 'os.system'.*functions="):
        load(edited(tmp_path, gm, evil))
    assert calls == []


def test_refuses_subprocess_popen_as_module_type(tmp_path):
    gm = fx.symbolic_trace(Small())

    def evil(doc):
        doc["modules"][1]["type"] = "subprocess.Popen"
        doc["modules"][1]["state"] = {"args": ["echo", "pwned"]}

    with pytest.raises(MutnasTorchError, match=r"refusing module type 'subprocess.Popen'"):
        load(edited(tmp_path, gm, evil))


@pytest.mark.parametrize(
    ("where", "name", "match"),
    [
        ("function", f"{__name__}.canary", "refusing function"),
        ("function", "torch.load", "refusing function 'torch.load'"),
        ("function", "torch.from_file", "refusing function"),
        ("function", "torch.hub.load", "refusing function"),
        ("function", "builtins.eval", "refusing function"),
        ("function", "operator.methodcaller", "refusing function"),
        ("function", "torchvision.models.get_model", "refusing function"),
        ("function", "torch.nn.functional.__builtins__", "refusing function"),
        ("module", f"{__name__}.Canary", "refusing module type"),
        ("module", "torch.nn.modules.linear.torch.fx.GraphModule", "refusing module type"),
        ("module", "torch.nn.functional.relu", "refusing module type"),
        ("module", "torch.nn.Linear", "refusing module type"),  # an alias, not where it lives
        ("module", "torch.nn.parallel.DataParallel", "refusing module type"),
        ("method", "numpy", "refusing tensor method 'numpy'"),
        ("method", "__reduce_ex__", "refusing tensor method"),
        ("attribute", "__class__", "refusing tensor attribute '__class__'"),
    ],
)
def test_refuses_names_off_the_allow_list(tmp_path, where, name, match):
    CALLED.clear()
    gm = fx.symbolic_trace(Small())

    def evil(doc):
        if where == "function":
            node(doc, "call_function")["target"] = name
        elif where == "module":
            doc["modules"][1]["type"] = name
        elif where == "method":
            node(doc, "call_method")["target"] = name
        else:
            getattr_node = next(n for n in doc["graph"] if n["target"] == "builtins.getattr")
            getattr_node["args"][1] = name

    with pytest.raises(MutnasTorchError, match=match):
        load(edited(tmp_path, gm, evil))
    assert CALLED == []


def test_refuses_forbidden_module_attributes(tmp_path):
    gm = fx.symbolic_trace(Small())

    def evil(doc):
        doc["modules"][1]["state"]["_forward_hooks"] = {"dict": []}

    with pytest.raises(
        MutnasTorchError, match=r"'_forward_hooks', which is nn\.Module bookkeeping"
    ):
        load(edited(tmp_path, gm, evil))


def test_refuses_future_format_version(tmp_path):
    gm = fx.symbolic_trace(Small())
    folder = edited(tmp_path, gm, lambda doc: doc.update(version=VERSION + 1))
    with pytest.raises(MutnasTorchError, match="newer than this mutnas_torch reads"):
        load(folder)


def _set(path: str, value):
    """An edit setting ``doc[k1][k2]...`` (``graph.relu`` names a node) to ``value``."""

    def change(doc):
        *keys, last = path.split(".")
        obj = doc
        for key in keys:
            obj = next(n for n in obj if n["name"] == key) if key == "relu" else _at(obj, key)
        obj[int(last) if last.isdigit() else last] = value

    return change


def _delete(path: str):
    def change(doc):
        *keys, last = path.split(".")
        obj = doc
        for key in keys:
            obj = _at(obj, key)
        del obj[last]

    return change


def _at(obj, key: str):
    return obj[int(key)] if key.isdigit() else obj[key]


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (_delete("graph"), r"is corrupt: missing fields \['graph'\]"),
        (_set("version", "2"), "format version '2'"),
        (_set("class_name", "A B"), "malformed class name"),
        (_set("save_id", "0"), "save_id '0' is not 32 hexadecimal digits"),
        (_set("save_id", "0" * 32), "different saves"),
        (_set("modules.1.name", "x.y"), "has no parent"),
        (_set("modules.1.parameters.weight.tensor", "gone"), "tensor 'gone' is missing"),
        (_delete("modules.1.parameters.bias"), "holds tensors no module uses"),
        (_set("graph.0", 5), "malformed graph node"),
        (_set("graph.1.name", "x"), "name is taken"),
        (_set("graph.1.op", "call_anything"), "unknown op 'call_anything'"),
        (_set("graph.1.target", "a..b"), "malformed call_module target"),
        (_set("graph.1.target", 'fc"), print("x'), "malformed call_module target"),  # in code
        (_set("modules.1.name", 'fc"); print("x'), "has a malformed name"),
        (_set("graph.1.target", "zz"), "call_module target 'zz' is not a module"),
        (_set("graph.relu.kwargs", {"not a name": 1}), "malformed keyword arguments"),
        (_set("graph.relu.args", [{"node": "later"}]), "unknown node 'later'"),
        (_set("graph.relu.args", [{"bogus": 1}]), "unknown value tag 'bogus'"),
        (_set("graph.relu.args", [{"a": 1, "b": 2}]), "malformed value"),
        (_set("graph.relu.args", [{"dtype": "os"}]), "malformed 'dtype' value"),
    ],
)
def test_corrupt_json_gives_clear_errors(tmp_path, damage, match):
    with pytest.raises(MutnasTorchError, match=match):
        load(edited(tmp_path, fx.symbolic_trace(Small()), damage))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: (f / "model.json").unlink(), "model.json is missing"),
        (lambda f: (f / "model.json").write_text("{"), "not valid JSON"),
        (lambda f: (f / "model.json").write_text("[1]"), "not a mutnas_torch model file"),
        (lambda f: (f / "model.safetensors").unlink(), "missing, unreadable or corrupt"),
        (lambda f: (f / "model.safetensors").write_bytes(b"\x08" * 20), "corrupt"),
    ],
)
def test_corrupt_or_missing_files_give_clear_errors(tmp_path, damage, match):
    folder = save(fx.symbolic_trace(Small()), tmp_path / "model")
    damage(folder)
    with pytest.raises(MutnasTorchError, match=match):
        load(folder)


def test_refuses_forbidden_mutable_model_attributes(tmp_path):
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 2)), torch.randn(1, 4))
    damage = _set("mutable.attributes.forward", {"function": "torch.relu"})
    with pytest.raises(MutnasTorchError, match="forbidden MutableModel attribute 'forward'"):
        load(edited(tmp_path, mm, damage))


def test_save_errors_name_what_cannot_be_saved(tmp_path):
    with pytest.raises(MutnasTorchError, match="trace it first"):
        save(nn.Linear(2, 2), tmp_path / "plain")

    swish = Swish()
    swish.note = object()  # not plain data
    gm = trace(Wrap(swish), torch.randn(2, 2), leaf_modules=[Swish])
    with pytest.raises(MutnasTorchError, match=r"module 'layer' attribute 'note'.*object"):
        save(gm, tmp_path / "object")

    class Local(nn.Identity):
        pass

    gm = trace(Wrap(Local()), torch.randn(2, 2), leaf_modules=[Local])
    with pytest.raises(MutnasTorchError, match=r"module type .*Local: it has no importable"):
        save(gm, tmp_path / "local")

    graph = fx.Graph()
    graph.output(graph.call_function(lambda x: x, (graph.placeholder("x"),)))
    with pytest.raises(MutnasTorchError, match="cannot save function <function"):
        save(fx.GraphModule(nn.Module(), graph), tmp_path / "lambda")

    gm = fx.symbolic_trace(Wrap(nn.Linear(2, 2, device="meta")))
    with pytest.raises(MutnasTorchError, match=r"cannot save tensor 'layer\.weight'.*meta"):
        save(gm, tmp_path / "meta")

    class Keyed(nn.Module):
        def forward(self, d):
            return d["a"] + 1

    gm = fx.symbolic_trace(Keyed(), concrete_args={"d": {"a": fx.PH}})
    with pytest.raises(MutnasTorchError, match="custom code generation"):
        save(gm, tmp_path / "pytree")


def test_missing_directory_and_bad_allow_list_arguments(tmp_path):
    with pytest.raises(MutnasTorchError, match="no model file at"):
        load(tmp_path / "nothing")
    folder = save(fx.symbolic_trace(Small()), tmp_path / "model")
    with pytest.raises(MutnasTorchError, match=r"modules\['x'\] is .* not an nn.Module class"):
        load(folder, modules={"x": len})


def test_load_accepts_either_file_path(tmp_path):
    gm = fx.symbolic_trace(Small())
    folder = save(gm, tmp_path / "model")
    assert_same_output(gm, load(folder / "model.safetensors"), torch.randn(2, 4))


# ---------------------------------------------------------------- data, not behaviour
@pytest.mark.parametrize("layer", [nn.TransformerEncoderLayer, nn.TransformerDecoderLayer])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_transformer_layers_keep_their_functional_activation(tmp_path, layer, activation):
    torch.manual_seed(0)
    module = layer(8, 2, 16, dropout=0.0, activation=activation, batch_first=True).eval()
    assert vars(module)["activation"] is getattr(torch.nn.functional, activation)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = module

        def forward(self, x):
            return (
                self.layer(x, x)
                if isinstance(module, nn.TransformerDecoderLayer)
                else self.layer(x)
            )

    x = torch.randn(2, 5, 8)
    gm = trace(Net().eval(), x, leaf_modules=[layer])
    loaded = round_trip(gm, tmp_path)
    assert vars(loaded.get_submodule("layer"))["activation"] is vars(module)["activation"]
    assert_same_output(gm, loaded, x)


def test_transformer_activation_takes_only_a_functional_function(tmp_path):
    module = nn.TransformerEncoderLayer(8, 2, 16)
    module.activation = canary
    gm = trace(Wrap(module), torch.randn(2, 3, 8), leaf_modules=[nn.TransformerEncoderLayer])
    with pytest.raises(
        MutnasTorchError, match=r"attribute 'activation': only a torch\.nn\.functional"
    ):
        save(gm, tmp_path / "canary")
    module.activation = torch.nn.functional.silu  # any functional activation is fine
    assert round_trip(gm, tmp_path).get_submodule("layer").activation is torch.nn.functional.silu

    damage = _set("modules.1.state.activation", {"function": "builtins.getattr"})
    with pytest.raises(
        MutnasTorchError, match=r"only a torch\.nn\.functional function may go here"
    ):
        load(edited(tmp_path, gm, damage))
    damage = _set("modules.1.state.in_features", {"function": "torch.nn.functional.relu"})
    with pytest.raises(MutnasTorchError, match="'in_features': holds a function"):
        load(edited(tmp_path, fx.symbolic_trace(Small()), damage))


def test_save_refuses_what_load_would_refuse(tmp_path):
    for attr, value, match in [
        ("note", torch.relu, "attribute 'note': cannot save <built-in .*data only"),
        ("kind", nn.Linear, "attribute 'kind': cannot save <class .*data only"),
        ("extra_repr", "shadowing", "attribute 'extra_repr': cannot save it: the name names"),
        ("forward", lambda x: x, "attribute 'forward': cannot save it: the name names"),
    ]:
        swish = Swish()
        setattr(swish, attr, value)
        gm = trace(Wrap(swish), torch.randn(2, 2), leaf_modules=[Swish])
        with pytest.raises(MutnasTorchError, match=match):
            save(gm, tmp_path / attr)
        assert not (tmp_path / attr / "model.json").exists()


def test_version_1_files_load_with_a_warning_that_nothing_is_verified(tmp_path, caplog):
    gm = fx.symbolic_trace(Small())

    def version_1(doc):
        doc["version"] = 1
        del doc["tensors"]

    with caplog.at_level("WARNING", logger="mutnas_torch.io"):
        loaded = load(edited(tmp_path, gm, version_1))
    assert "format version 1 has no tensor checksums" in caplog.text
    assert_same_output(gm, loaded, torch.randn(2, 4))
    damage = _set("version", 1)  # a version 1 file has no checksums to give
    with pytest.raises(MutnasTorchError, match=r"unknown fields \['tensors'\]"):
        load(edited(tmp_path, gm, damage))


@pytest.mark.parametrize(
    ("layer", "shape", "attribute", "value", "match"),
    [
        (nn.Linear(4, 3), (2, 4), "in_features", True, "in_features is True, not a size"),
        (nn.Conv2d(3, 4, 3), (1, 3, 8, 8), "out_channels", 5, r"'layer\.weight' has shape"),
        (nn.Conv2d(3, 4, 3), (1, 3, 8, 8), "kernel_size", {"tuple": [5, 5]}, "has shape"),
        (nn.Conv2d(4, 4, 3), (1, 4, 8, 8), "groups", 3, "groups = 3 does not divide 4"),
        (nn.ConvTranspose2d(4, 4, 3, groups=2), (1, 4, 6, 6), "in_channels", 6, "has shape"),
        (nn.BatchNorm2d(3), (2, 3, 4, 4), "num_features", 4, r"'layer\.weight' has shape"),
        (nn.GroupNorm(2, 4), (2, 4, 3, 3), "num_channels", 6, "has shape"),
        (nn.LayerNorm((3, 4)), (2, 3, 4), "normalized_shape", {"tuple": [3, 5]}, "has shape"),
        (nn.Embedding(10, 4), None, "embedding_dim", 5, "has shape"),
        (nn.PReLU(3), (2, 3, 4), "num_parameters", 4, "has shape"),
        (nn.MultiheadAttention(8, 2), (2, 5, 8), "embed_dim", 16, "head_dim is not"),
        (nn.MultiheadAttention(8, 2), (2, 5, 8), "kdim", 4, "_qkv_same_embed_dim"),
        (nn.LSTM(4, 6, num_layers=2), (2, 5, 4), "hidden_size", 7, "has shape"),
        (nn.LSTM(4, 6, num_layers=2), (2, 5, 4), "num_layers", 10**9, "parameters for"),
        (nn.LSTM(4, 6), (2, 5, 4), "_flat_weights_names", ["forward"] * 4, "do not list"),
        (nn.GRU(3, 4), (2, 5, 3), "mode", "LSTM", "has shape"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else None,
)
def test_tensor_shapes_must_match_the_layers_attributes(
    tmp_path, layer, shape, attribute, value, match
):
    x = torch.randint(0, 10, (2, 5)) if shape is None else torch.randn(shape)
    gm = trace(Wrap(layer), x, leaf_modules=[type(layer)])
    damage = _set(f"modules.1.state.{attribute}", value)
    with pytest.raises(
        MutnasTorchError, match=rf"module 'layer' \({type(layer).__name__}\).*{match}"
    ):
        load(edited(tmp_path, gm, damage))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format": NaN}', "NaN is not a JSON number"),
        ('{"format": 1e999}', "out of range"),
        ('{"format": 1, "format": 2}', "duplicate key 'format'"),
    ],
)
def test_json_is_read_strictly(tmp_path, text, match):
    folder = save(fx.symbolic_trace(Small()), tmp_path / "model")
    (folder / "model.json").write_text(text)
    with pytest.raises(MutnasTorchError, match=match):
        load(folder)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (
            "mutable.bindings.0.record.1.extra",
            {"dict": [["f", {"function": "torch.relu"}]]},
            "holds a function",
        ),
        (
            "mutable.bindings.0.record.1.outputs.0.record.1.target",
            "0.forward",
            "is not an axis of a tensor",
        ),
        ("mutable.bindings.0.record.1.outputs.0.record.1.axis", "0", "field 'axis' holds str"),
        ("mutable.bindings.0.record.1.outputs.0.record.1.axis", True, "field 'axis' holds bool"),
        ("mutable.bindings.0.record.0", "Popen", "unknown or malformed record"),
        ("mutable.bindings.0.record.1.module", "gone", "not a Binding of a module of the model"),
        ("mutable.example_inputs.0.tensor.shape", [-1, 4], "is not a list of sizes"),
        ("mutable.example_inputs.0.tensor.shape", [True, 4], "is not a list of sizes"),
        ("mutable.example_inputs.0.tensor.dtype", {"function": "torch.zeros"}, "holds a function"),
        ("mutable.attributes.training", "yes", "attribute 'training' is not a"),
        ("mutable.history", [{"array": ["object", [1]]}], "malformed array"),
        ("mutable.pinned", {"dict": []}, "pins are malformed"),
        ("meta.hook", {"function": "torch.relu"}, "meta 'hook': holds a function"),
    ],
)
def test_mutable_model_state_is_typed_data(tmp_path, path, value, match):
    mm = mt.mutable(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), torch.randn(2, 4))

    def damage(doc):
        *keys, last = path.split(".")
        obj = doc
        for key in keys:
            obj = (
                next(iter(obj.values())) if key == "0" and isinstance(obj, dict) else _at(obj, key)
            )
        obj[int(last) if last.isdigit() else last] = value

    with pytest.raises(MutnasTorchError, match=match) as info:
        load(edited(tmp_path, mm, damage))
    assert "\n" not in str(info.value)
