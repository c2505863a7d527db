"""Every variation operator: a child is always a valid, runnable model (or a clean
refusal), its parent is untouched, and the function-preserving ones keep the outputs."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from evolve_helpers import conv_model, image_model, mlp_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import evolve
import mutnas as mn
import mutnas_torch as mt
from evolve.candidate import Candidate
from evolve.errors import CandidateFailedError, ConfigError
from evolve.operators import fx_edits
from evolve.operators.fx_mutations import resize_kernel

SHAPES = {"conv1d": (3, 1, 16), "mlp": (3, 5), "conv2d": (3, 2, 8, 8)}
BUILDERS = {"conv1d": conv_model, "mlp": mlp_model, "conv2d": image_model}


@functools.cache
def _base(kind: str, residual: bool, seed: int):
    mm = BUILDERS[kind](seed=seed)
    if residual:
        mm.insert_residual(mm.layers()[0])
    return mm


def parent_of(kind: str, residual: bool, seed: int) -> Candidate:
    return Candidate(0, copy.deepcopy(_base(kind, residual, seed)))


ALL_KINDS = ("block", "conv", "linear", "norm", "pool", "relu", "gelu")
OPERATORS = [
    evolve.ResizeMutation(),
    evolve.AddLayerMutation(ALL_KINDS),
    evolve.RemoveLayerMutation(),
    evolve.AddEdgeMutation(),
    evolve.RemoveEdgeMutation(),
    evolve.KernelSizeMutation(),
    evolve.ActivationMutation(),
    evolve.LearningRateMutation(),
    evolve.BatchSizeMutation(),
    evolve.OptimizerMutation(),
]
EXACT = [
    evolve.ResizeMutation(grow_prob=1.0),
    evolve.AddLayerMutation(("block", "conv", "linear", "norm", "relu"), exact_only=True),
    evolve.AddEdgeMutation(connect_prob=0.0),
    evolve.KernelSizeMutation((9, 11)),
]
# What each operator writes first in ``child.mutations`` when it applies.
VERBS = {
    "ResizeMutation": ("resize ",),
    "AddLayerMutation": ("add ",),
    "RemoveLayerMutation": ("remove ",),
    "AddEdgeMutation": ("add residual", "connect "),
    "RemoveEdgeMutation": ("disconnect ",),
    "KernelSizeMutation": ("kernel ",),
    "ActivationMutation": ("activation ",),
    "LearningRateMutation": ("lr ",),
    "BatchSizeMutation": ("batch_size ",),
    "OptimizerMutation": ("optimizer ",),
}
PROPERTY = settings(
    max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
models = st.tuples(st.sampled_from(sorted(BUILDERS)), st.booleans(), st.integers(0, 1))


def _outputs(model, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(SHAPES[kind], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return x, model.eval()(x)


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda o: type(o).__name__)
@PROPERTY
@given(model=models, seed=st.integers(0, 2**31))
def test_child_is_a_valid_runnable_model(operator, model, seed):
    kind, residual, model_seed = model
    parent = parent_of(kind, residual, model_seed)
    _, before = _outputs(parent.model, kind)
    try:
        child = operator.do(parent, np.random.default_rng(seed))
    except CandidateFailedError as err:
        assert "refused" in err.reason
    else:
        assert child.parents == (0,) and child.model is not parent.model
        child.model.verify()
        _, after = _outputs(child.model, kind)
        assert after.shape == before.shape and torch.isfinite(after).all()
        if child.mutations:
            assert child.mutations[0].startswith(VERBS[type(operator).__name__]), child.mutations
            assert child.fingerprint() != parent.fingerprint()
    assert torch.equal(_outputs(parent.model, kind)[1], before)  # the parent is untouched


def _applies_to(operator, kind: str, residual: bool) -> bool:
    """Whether the parent has anything the operator could change."""
    name = type(operator).__name__
    if name == "RemoveEdgeMutation":
        return residual  # only the residual variants have an add to disconnect
    if name == "KernelSizeMutation":
        return kind != "mlp"
    return True


@pytest.mark.parametrize("operator", OPERATORS + EXACT, ids=lambda o: type(o).__name__)
def test_operators_apply_on_most_parents(operator):
    """A refusal is a clean outcome, but an operator that always refuses must fail here:
    over every parent it applies to, at least 80 % of the draws change the child, and the
    child records what was done."""
    applied, draws = 0, 0
    for kind in sorted(BUILDERS):
        for residual in (False, True):
            if not _applies_to(operator, kind, residual):
                continue
            for seed in range(3):
                parent = parent_of(kind, residual, seed % 2)
                draws += 1
                try:
                    child = operator.do(parent, np.random.default_rng(seed))
                except CandidateFailedError:
                    continue
                if child.mutations:
                    assert child.mutations[0].startswith(VERBS[type(operator).__name__])
                    assert child.fingerprint() != parent.fingerprint()
                    applied += 1
    assert applied >= 0.8 * draws, f"{type(operator).__name__} applied {applied} of {draws}"


@pytest.mark.parametrize("operator", EXACT, ids=lambda o: type(o).__name__)
@PROPERTY
@given(model=models, seed=st.integers(0, 2**31))
def test_function_preserving_operators_keep_outputs(operator, model, seed):
    kind, residual, model_seed = model
    parent = parent_of(kind, residual, model_seed)
    _, before = _outputs(parent.model, kind)
    child = operator.do(parent, np.random.default_rng(seed))
    if _applies_to(operator, kind, residual):  # else there is nothing to preserve
        assert child.mutations, f"{type(operator).__name__} did nothing"
        assert child.mutations[0].startswith(VERBS[type(operator).__name__]), child.mutations
        assert child.fingerprint() != parent.fingerprint()
    _, after = _outputs(child.model, kind)
    assert torch.allclose(after, before, atol=1e-5), child.mutations


@pytest.mark.parametrize("operator", OPERATORS, ids=lambda o: type(o).__name__)
def test_probability_zero_copies_without_change(operator):
    parent = parent_of("conv1d", False, 0)
    operator = copy.copy(operator)
    operator.prob = 0.0
    child = operator.do(parent, np.random.default_rng(0))
    assert child.mutations == [] and child.fingerprint() == parent.fingerprint()


def test_same_rng_gives_the_same_child():
    op = evolve.ChooseMutation(OPERATORS[:7], n=2)
    a = op.do(parent_of("conv1d", True, 0), np.random.default_rng(5))
    b = op.do(parent_of("conv1d", True, 0), np.random.default_rng(5))
    assert a.mutations == b.mutations and a.fingerprint() == b.fingerprint()
    x = torch.randn(2, 1, 16)
    assert torch.equal(a.model(x), b.model(x))


class _Refusing(evolve.Mutation):
    def _do(self, child, rng):
        raise mn.SizeError("no feasible sizes", ["conv"])


class _Breaking(evolve.Mutation):
    def _do(self, child, rng):
        conv = child.model.module.get_submodule("0")
        conv.weight = torch.nn.Parameter(torch.zeros(3, 1, 5))  # channels no longer match
        return "break"


def test_refused_mutation_raises_candidate_failed():
    with pytest.raises(CandidateFailedError, match="_Refusing refused: no feasible sizes"):
        _Refusing().do(parent_of("conv1d", False, 0), np.random.default_rng(0))


def test_mutation_that_breaks_the_model_is_caught_by_verify():
    with pytest.raises(CandidateFailedError, match="_Breaking"):
        _Breaking().do(parent_of("conv1d", False, 0), np.random.default_rng(0))


def test_pool_insertion_halves_downstream_length():
    parent = parent_of("conv1d", False, 0)
    child = evolve.AddLayerMutation(("pool",)).do(parent, np.random.default_rng(0))
    assert child.mutations[0].startswith("add pool")
    pools = [m for m in child.model.modules() if isinstance(m, torch.nn.MaxPool1d)]
    assert len(pools) == 1
    assert evolve.objectives.count_flops(child.model, torch.zeros(1, 1, 16)) < (
        evolve.objectives.count_flops(parent.model, torch.zeros(1, 1, 16))
    )


class _SkipOverPoint(torch.nn.Module):
    """stem -> a -> b, then b + stem: pooling after a or b would break the add."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv1d(1, 4, 3, padding=1)
        self.a = torch.nn.Conv1d(4, 4, 3, padding=1)
        self.b = torch.nn.Conv1d(4, 4, 3, padding=1)
        self.c = torch.nn.Conv1d(4, 4, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool1d(2)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = self.b(torch.relu(self.a(h))) + h
        return self.head(self.pool(self.c(h)).flatten(1))


def test_pool_is_only_offered_where_every_path_reaches_the_adaptive_pool():
    """Regression: a pool inside a residual block made the add fail (20 vs 10), a refused
    candidate in every MNIST-1D search."""
    mm = mt.mutable(_SkipOverPoint(), torch.zeros(1, 1, 16))
    fits = {
        name: fx_edits.can_insert("pool", fx_edits.layer_output(mm, name))
        for name in ("stem", "a", "b", "c")
    }
    # c's output point is after the adaptive pool (channels pass through it): nothing to gain
    assert fits == {"stem": True, "a": False, "b": False, "c": False}
    parent = Candidate(0, mm)
    for seed in range(4):  # never refused: only the stem is offered
        child = evolve.AddLayerMutation(("pool",)).do(parent, np.random.default_rng(seed))
        assert child.mutations[0] == "add pool after stem"
        assert child.model(torch.zeros(3, 1, 16)).shape == (3, 2)


def test_remove_layer_removes_activation_modules_too():
    parent = parent_of("mlp", False, 0)
    op = evolve.RemoveLayerMutation()
    removed = {op.do(parent, np.random.default_rng(s)).mutations[0] for s in range(12)}
    assert any(name.startswith("remove act") for name in removed), removed


def test_resize_kernel_shrinks_by_cropping_the_centre():
    conv = torch.nn.Conv1d(1, 1, 5, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(5.0).view(1, 1, 5))
    resize_kernel(conv, 3)
    assert conv.weight.flatten().tolist() == [1.0, 2.0, 3.0] and conv.padding == (1,)


def test_kernel_mutation_skips_convs_it_cannot_change():
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3, padding="same"), torch.nn.ReLU())
    import mutnas_torch as mt

    parent = Candidate(0, mt.mutable(net, torch.zeros(1, 1, 8)))
    child = evolve.KernelSizeMutation().do(parent, np.random.default_rng(0))
    assert child.mutations == []


def test_choose_mutation_passes_the_turn_when_nothing_applies():
    parent = parent_of("mlp", False, 0)  # no add vertex: RemoveEdge has nothing to do
    op = evolve.ChooseMutation([evolve.RemoveEdgeMutation(), evolve.LearningRateMutation()])
    assert op.do(parent, np.random.default_rng(0)).mutations[0].startswith("lr ")


@pytest.mark.parametrize(
    "make",
    [
        lambda: evolve.ResizeMutation(min_fraction=0.0),
        lambda: evolve.ResizeMutation(min_width=5, max_width=4),
        lambda: evolve.AddLayerMutation(("conv", "lstm")),
        lambda: evolve.AddLayerMutation(kernel_sizes=(2,)),
        lambda: evolve.AddLayerMutation(activation="swish"),
        lambda: evolve.AddEdgeMutation(activation="swish"),
        lambda: evolve.KernelSizeMutation((3,)),
        lambda: evolve.ActivationMutation(("relu", "swish")),
        lambda: evolve.LearningRateMutation(min_lr=1.0, max_lr=0.1),
        lambda: evolve.BatchSizeMutation((32,)),
        lambda: evolve.OptimizerMutation(("adam", "lion")),
        lambda: evolve.ChooseMutation([]),
        lambda: evolve.ChooseMutation([evolve.LearningRateMutation()], weights=[-1.0]),
        lambda: evolve.ChooseMutation([evolve.LearningRateMutation()], n=0),
        lambda: evolve.SequenceMutation(["lr"]),
        lambda: evolve.ResizeMutation(prob=1.5),
        lambda: evolve.SegmentCrossover(prob=-0.1),
    ],
)
def test_bad_operator_settings_raise_config_error(make):
    with pytest.raises(ConfigError):
        make()


# ---------------------------------------------------------------- crossover
@PROPERTY
@given(
    kind=st.sampled_from(sorted(BUILDERS)),
    a=st.tuples(st.booleans(), st.integers(0, 1)),
    b=st.tuples(st.booleans(), st.integers(0, 1)),
    seed=st.integers(0, 2**31),
)
def test_segment_crossover_child_is_valid(kind, a, b, seed):
    pa = parent_of(kind, *a)
    pb = parent_of(kind, *b)
    pb.id = 1
    _, before = _outputs(pa.model, kind)
    try:
        child = evolve.SegmentCrossover(prob=1.0).do(pa, pb, np.random.default_rng(seed))
    except CandidateFailedError as err:
        assert "refused" in err.reason
        return
    child.model.verify()
    _, out = _outputs(child.model, kind)
    assert out.shape == before.shape and torch.isfinite(out).all()
    assert child.parents == ((0, 1) if child.mutations else (0,))
    assert torch.equal(_outputs(pa.model, kind)[1], before)


def test_segment_crossover_joins_head_and_tail_with_their_weights():
    pa, pb = parent_of("conv1d", False, 0), parent_of("conv1d", False, 1)
    pb.id = 1
    child = evolve.SegmentCrossover(prob=1.0).do(pa, pb, np.random.default_rng(3))
    assert child.mutations[0].startswith("crossover 0[..")
    names = {type(m).__name__ for m in child.model.modules()}
    assert {"Conv1d", "Linear", "AdaptiveAvgPool1d"} <= names


def test_crossover_between_incompatible_graphs_does_nothing():
    pa, pb = parent_of("conv1d", False, 0), parent_of("mlp", False, 0)
    pb.id = 1
    child = evolve.SegmentCrossover(prob=1.0).do(pa, pb, np.random.default_rng(0))
    assert child.mutations == [] and child.parents == (0,)


def test_hyperparam_crossover_mixes_fields():
    a = Candidate(0, None, evolve.Hyperparams("adam", 0.01, 64))
    b = Candidate(1, None, evolve.Hyperparams("sgd", 0.1, 16, 1e-4))
    children = [
        evolve.HyperparamCrossover(prob=1.0).do(a, b, np.random.default_rng(s)).hparams
        for s in range(20)
    ]
    for field in ("optimizer", "lr", "batch_size", "weight_decay"):
        assert {getattr(h, field) for h in children} == {
            getattr(a.hparams, field),
            getattr(b.hparams, field),
        }
