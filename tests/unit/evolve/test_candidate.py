"""Candidates: fingerprints, seeds, records, search-space models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from evolve_helpers import conv_model

import evolve
import mutnas_torch as mt
from evolve.candidate import Candidate, architecture_fingerprint, candidate_seed
from evolve.errors import ConfigError


def test_fingerprint_ignores_names_and_weights_but_not_sizes_or_hparams():
    a = conv_model(seed=0)
    b = conv_model(seed=0)
    with torch.no_grad():
        for p in b.parameters():
            p.normal_()  # other weights, same architecture
    assert architecture_fingerprint(a.module) == architecture_fingerprint(b.module)
    renamed = mt.mutable(torch.nn.Sequential(torch.nn.Linear(3, 4)), torch.zeros(1, 3))
    named = torch.nn.Sequential()
    named.add_module("dense", torch.nn.Linear(3, 4))
    assert architecture_fingerprint(renamed.module) == architecture_fingerprint(
        mt.mutable(named, torch.zeros(1, 3)).module
    )
    b.resize(b.layers()[0], 1)
    assert architecture_fingerprint(a.module) != architecture_fingerprint(b.module)
    ca, cb = Candidate(0, a), Candidate(1, a, evolve.Hyperparams(lr=0.5))
    assert ca.fingerprint() != cb.fingerprint()


def test_candidate_seeds_depend_on_seed_and_id_only():
    seeds = {candidate_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150 and all(0 <= s < 2**63 for s in seeds)


def test_record_round_trip():
    c = Candidate(
        4,
        conv_model(),
        evolve.Hyperparams(batch_size=32),
        parents=(1, 2),
        mutations=["resize 0 6 -> 7"],
        generation=3,
        status="ok",
        scores={"accuracy": 0.75},
        train_steps=12,
        train_seconds=0.5,
    )
    record = c.record()
    assert set(record["sizes"]) == set(c.model.layers()) and record["n_parameters"] > 0
    again = Candidate.from_record(record, c.model)
    assert again.record() == record


def test_spawn_copies_the_model():
    parent = Candidate(0, conv_model())
    child = parent.spawn()
    assert child.parents == (0,) and child.model is not parent.model and child.status == "pending"
    with torch.no_grad():
        next(child.model.parameters()).add_(1.0)
    assert not torch.equal(next(child.model.parameters()), next(parent.model.parameters()))


@pytest.mark.parametrize("shape", [(7,), (1, 40), (3, 12, 12)])
def test_search_space_builds_runnable_models(shape):
    space = evolve.SearchSpace()
    for seed in range(3):
        net = space.build(shape, 4, np.random.default_rng(seed))
        assert net(torch.zeros(2, *shape)).shape == (2, 4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: evolve.SearchSpace(min_depth=3, max_depth=2),
        lambda: evolve.SearchSpace(widths=(300,)),
        lambda: evolve.SearchSpace(activations=("swish",)),
        lambda: evolve.SearchSpace(layer_kinds=("lstm",)),
        lambda: evolve.SearchSpace(kernel_sizes=()),
        lambda: evolve.SearchSpace().build((1, 2, 3, 4), 2, np.random.default_rng(0)),
    ],
)
def test_bad_search_spaces(make):
    with pytest.raises(ConfigError):
        make()
