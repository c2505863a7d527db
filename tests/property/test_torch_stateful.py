"""No sequence of mutations ever breaks a torch model.

Hypothesis builds small random models (MLPs and conv nets with BatchNorm/ReLU, residual
adds, concatenations, flatten or pooling into a Linear head) and applies random sequences
of mutations. After every step the model must run on a fixed input, keep its output shape,
have module attributes that describe its weights, and pass ``mm.verify()``. Steps that only
grow (and identity insertions) must keep the output; refused steps must change nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from torch import nn
from torch.nn.modules.conv import _ConvNd

import mutnas as mn
import mutnas_torch as mt
from mutnas.testing import check_consistent

SIDE = 4  # height and width of conv inputs
BLOCK_KINDS = ("layer", "residual", "concat")


# ---------------------------------------------------------------- random models
@dataclass(frozen=True)
class ModelSpec:
    """A small model: ``family`` "mlp" or "conv", blocks ``(kind, width)``, and a head."""

    family: str
    n_in: int
    blocks: tuple[tuple[str, int], ...]
    head: str  # "linear" (mlp), "flatten" or "pool" (conv)
    n_out: int
    seed: int


def _check_bound(name: str, value: int, lowest: int) -> None:
    if not isinstance(value, int) or value < lowest:
        raise ValueError(f"{name} must be an int >= {lowest}, got {value!r}")


def model_specs(*, max_blocks: int = 3, max_width: int = 6) -> st.SearchStrategy[ModelSpec]:
    """Specs of random MLPs and conv nets (validated eagerly, drawn lazily).

    Args:
        max_blocks: most blocks between input and head.
        max_width: largest layer width (channels or features).
    """
    _check_bound("max_blocks", max_blocks, 1)
    _check_bound("max_width", max_width, 2)
    return _model_specs(max_blocks=max_blocks, max_width=max_width)


@st.composite
def _model_specs(draw, *, max_blocks: int, max_width: int) -> ModelSpec:
    family = draw(st.sampled_from(["mlp", "conv"]))
    block = st.tuples(st.sampled_from(BLOCK_KINDS), st.integers(1, max_width))
    blocks = draw(st.lists(block, min_size=1, max_size=max_blocks))
    head = "linear" if family == "mlp" else draw(st.sampled_from(["flatten", "pool"]))
    return ModelSpec(
        family=family,
        n_in=draw(st.integers(1, 4)),
        blocks=tuple(blocks),
        head=head,
        n_out=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
    )


class SpecNet(nn.Module):
    """The model a :class:`ModelSpec` describes (traceable: the loop is over constants)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.kinds = tuple(kind for kind, _ in spec.blocks)
        self.conv = spec.family == "conv"
        self.blocks = nn.ModuleList()
        width = spec.n_in
        for kind, n in spec.blocks:
            block = nn.ModuleDict()
            if kind == "layer":
                block["layer"], block["norm"] = self._layer(width, n), self._norm(n)
                width = n
            elif kind == "residual":
                block["inner"], block["outer"] = self._layer(width, n), self._layer(n, width)
                block["norm"] = self._norm(width)
            else:
                block["side"] = self._layer(width, n, kernel=1)
                width += n
            self.blocks.append(block)
        features = width * SIDE * SIDE if spec.head == "flatten" else width
        self.flatten = spec.head == "flatten"
        self.head = nn.Linear(features, spec.n_out)

    def _layer(self, n_in: int, n_out: int, kernel: int = 3) -> nn.Module:
        if self.conv:
            return nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2)
        return nn.Linear(n_in, n_out)

    def _norm(self, n: int) -> nn.Module:
        return nn.BatchNorm2d(n) if self.conv else nn.Identity()

    def forward(self, x):
        h = x
        for kind, block in zip(self.kinds, self.blocks, strict=True):
            if kind == "layer":
                h = F.relu(block["norm"](block["layer"](h)))
            elif kind == "residual":
                h = h + block["norm"](block["outer"](F.relu(block["inner"](h))))
            else:
                h = torch.cat([h, F.relu(block["side"](h))], 1)
        if self.conv:
            h = h.flatten(1) if self.flatten else h.mean((2, 3))
        return self.head(h)


def build(spec: ModelSpec) -> tuple[nn.Module, torch.Tensor]:
    """The model (eval mode, BatchNorm statistics randomised) and a fixed input."""
    generator = torch.Generator().manual_seed(spec.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = SpecNet(spec).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
    shape = (2, spec.n_in, SIDE, SIDE) if spec.family == "conv" else (2, spec.n_in)
    return model, torch.randn(shape, generator=generator)


# ---------------------------------------------------------------- checks
def assert_attributes_match_weights(model: nn.Module) -> None:
    """Every layer's size attributes describe its parameters."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            assert m.weight.shape == (m.out_features, m.in_features), name
        elif isinstance(m, _ConvNd):
            assert m.in_channels % m.groups == 0 and m.out_channels % m.groups == 0, name
            assert m.weight.shape[:2] == (m.out_channels, m.in_channels // m.groups), name
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            assert m.weight.shape == m.running_mean.shape == m.running_var.shape == (n,), name
        else:
            continue
        bias = getattr(m, "bias", None)
        assert bias is None or bias.shape == m.weight.shape[:1], name


def _refs(value):
    """Every ``Ref`` inside a node's channel reference (tuple outputs nest them)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _refs(item)
    elif value is not None and hasattr(value, "vertex"):
        yield value


def assert_bookkeeping_names_live_vertices(mm) -> None:
    """Channel references of live nodes and code literals name vertices of the graph."""
    live = {n.name for n in mm.module.graph.nodes}
    for node, value in mm.refs.items():
        for ref in _refs(value) if node in live else ():
            assert ref.vertex in mm.graph, f"node {node!r} refers to deleted vertex {ref.vertex!r}"
    for literal in mm.literals:
        assert literal.vertex in mm.graph, f"literal in {literal.node!r}: {literal.vertex!r} gone"
    for vertex, binding in mm.bindings.items():
        assert vertex in mm.graph, f"binding of deleted vertex {vertex!r}"
        assert not binding.node or binding.node in live, f"{vertex!r} bound to a dead node"


def growth_only(before: dict[str, int], change: mn.Change) -> bool:
    """True when the change kept every existing neuron of every vertex."""
    for name, index in change.outputs.items():
        if name in before and sorted(index[index >= 0].tolist()) != list(range(before[name])):
            return False
    return True


@contextlib.contextmanager
def seeded(seed: int):
    """New neurons draw from torch's global generator: make each step reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


REFUSALS = (mn.SizeError, mn.GraphError, mt.MutnasTorchError)
ACTIVATIONS = ("relu", "gelu")


# ---------------------------------------------------------------- the machine
class MutationMachine(RuleBasedStateMachine):
    """Random mutation sequences on one random model."""

    @initialize(spec=model_specs())
    def build(self, spec: ModelSpec) -> None:
        model, self.x = build(spec)
        self.mm = mt.mutable(model, self.x)
        self.mm.eval()
        with torch.no_grad():
            self.shape = self.mm(self.x).shape
        event(f"family {spec.family}")

    # ------------------------------------------------------------ helpers
    def output(self) -> torch.Tensor:
        with torch.no_grad():
            return self.mm(self.x)

    def names(self, kind: str | None = "absorb") -> list[str]:
        return sorted(self.mm.layers(kind))

    def merges(self, min_inputs: int = 1) -> list[str]:
        return sorted(
            v.name
            for v in self.mm.graph.vertices
            if v.kind in (mn.ADD, mn.CONCAT)
            and len(v.inputs) >= min_inputs
            and v.name in self.mm.bindings
        )

    def attempt(self, label: str, mutation, *, exact: bool | None = None) -> None:
        """Run ``mutation``; refused: nothing changed; ``exact`` (None: growth-only)."""
        before, graph, sizes = self.output(), self.mm.graph.copy(), self.mm.graph.sizes()
        try:
            change = mutation()
        except REFUSALS as err:
            event(f"{label} refused: {type(err).__name__}")
            assert self.mm.graph == graph, f"{label} was refused ({err}) but changed the graph"
            assert torch.equal(self.output(), before), f"{label} refused but outputs changed"
            return
        event(f"{label} applied")
        if exact is None:
            exact = growth_only(sizes, change)
        if exact:
            after = self.output()
            assert after.shape == before.shape
            assert torch.allclose(after, before, rtol=1e-4, atol=1e-5), (
                f"{label} should keep the outputs: max diff {(after - before).abs().max()}"
            )

    # ------------------------------------------------------------ size mutations
    @rule(data=st.data(), delta=st.sampled_from([-3, -2, -1, 1, 2, 3]), seed=st.integers(0, 99))
    def resize(self, data, delta: int, seed: int) -> None:
        if not self.names():
            return
        target = data.draw(st.sampled_from(self.names()), label="target")
        with seeded(seed):
            self.attempt("resize", lambda: self.mm.resize(target, delta, relaxed=True))

    @rule(fraction=st.sampled_from([0.25, 0.5]))
    def prune(self, fraction: float) -> None:
        self.attempt("prune", lambda: self.mm.prune(fraction), exact=False)

    # ------------------------------------------------------------ structure
    @rule(data=st.data(), kind=st.sampled_from(["auto", "norm", "relu"]), seed=st.integers(0, 99))
    def insert_layer(self, data, kind: str, seed: int) -> None:
        if not self.names(None):
            return
        after = data.draw(st.sampled_from(self.names(None)), label="after")
        with seeded(seed):
            # an identity layer or BatchNorm is exact; an extra ReLU only after a ReLU
            self.attempt(
                f"insert_layer {kind}",
                lambda: self.mm.insert_layer(after, kind),
                exact=kind != "relu",
            )

    @rule(data=st.data(), activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 99))
    def insert_residual(self, data, activation: str, seed: int) -> None:
        if not self.names(None):
            return
        after = data.draw(st.sampled_from(self.names(None)), label="after")
        with seeded(seed):
            self.attempt(
                "insert_residual",
                lambda: self.mm.insert_residual(after, activation=activation),
                exact=True,
            )

    @rule(data=st.data())
    def remove_layer(self, data) -> None:
        # layers feeding a flatten's consumer or a fixed vertex are refused, never broken
        if self.names(None):
            name = data.draw(st.sampled_from(self.names(None)), label="layer")
            self.attempt("remove_layer", lambda: self.mm.remove_layer(name), exact=False)

    @rule(data=st.data())
    def remove_branch(self, data) -> None:
        adds = [n for n in self.merges(2) if self.mm.graph[n].kind == mn.ADD]
        if not adds:
            return
        add = data.draw(st.sampled_from(adds), label="add")
        branch = data.draw(st.integers(0, len(self.mm.graph[add].inputs) - 1), label="branch")
        self.attempt("remove_branch", lambda: self.mm.remove_branch(add, branch), exact=False)

    @rule(data=st.data())
    def connect(self, data) -> None:
        if not self.merges() or not self.names(None):
            return
        dst = data.draw(st.sampled_from(self.merges()), label="dst")
        src = data.draw(st.sampled_from(self.names(None)), label="src")
        is_concat = self.mm.graph[dst].kind == mn.CONCAT
        self.attempt(
            f"connect {self.mm.graph[dst].kind}", lambda: self.mm.connect(src, dst), exact=is_concat
        )

    @rule(data=st.data())
    def disconnect(self, data) -> None:
        if not self.merges(2):
            return
        dst = data.draw(st.sampled_from(self.merges(2)), label="dst")
        src = data.draw(st.sampled_from([u.name for u in self.mm.graph[dst].inputs]), label="src")
        self.attempt("disconnect", lambda: self.mm.disconnect(src, dst), exact=False)

    # ------------------------------------------------------------ invariants
    @invariant()
    def runs_with_the_same_output_shape(self) -> None:
        assert self.output().shape == self.shape

    @invariant()
    def attributes_match_weights(self) -> None:
        assert_attributes_match_weights(self.mm.module)

    @invariant()
    def bookkeeping_names_live_vertices(self) -> None:
        assert_bookkeeping_names_live_vertices(self.mm)

    @invariant()
    def shapes_agree_with_the_graph(self) -> None:
        check_consistent(self.mm.graph)
        self.mm.verify()


MutationMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestMutationMachine = MutationMachine.TestCase


# ---------------------------------------------------------------- the strategies themselves
def test_model_specs_validate_their_bounds_eagerly():
    with pytest.raises(ValueError, match=r"max_blocks must be an int >= 1, got 0"):
        model_specs(max_blocks=0)
    with pytest.raises(ValueError, match=r"max_width must be an int >= 2, got 1"):
        model_specs(max_width=1)


@settings(max_examples=20, deadline=None)
@given(spec=model_specs())
def test_every_drawn_model_traces_and_reproduces_its_output(spec):
    model, x = build(spec)
    mm = mt.mutable(model, x, strict=True)
    with torch.no_grad():
        assert torch.equal(mm(x), model(x))
    assert mm.pinned == {f"{mm.graph.outputs[0].inputs[0].name}~pinned": "graph output 'head'"}
