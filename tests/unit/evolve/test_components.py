"""Components described as JSON and rebuilt (what resume relies on)."""

from __future__ import annotations

import json

import pytest

import evolve
from evolve.components import build, describe
from evolve.defaults import default_crossovers, default_mutation
from evolve.errors import ConfigError


def test_default_components_round_trip_through_json():
    algorithm = evolve.GeneticAlgorithm(
        pop_size=3,
        search_space=evolve.SearchSpace(widths=(4, 8)),
        hparams=evolve.Hyperparams(lr=0.003),
        mutation=default_mutation(evolve.SearchSpace()),
        crossover=default_crossovers(),
        selection=evolve.TournamentSelection(3),
        survival=evolve.AgingSelection(n_elite=1),
        termination=evolve.AnyTermination(
            [evolve.MaxGenerationsTermination(3), evolve.TimeTermination(9.5)]
        ),
    )
    spec = json.loads(json.dumps(describe(algorithm)))
    again = build(spec)
    assert describe(again) == spec
    assert again.search_space == algorithm.search_space and again.hparams.lr == 0.003
    assert [type(m).__name__ for m in again.mutation.mutations][:2] == [
        "ResizeMutation",
        "AddLayerMutation",
    ]


def test_objectives_round_trip():
    spec = describe(evolve.FlopsObjective(max_value=1000))
    assert build(spec).max_value == 1000 and isinstance(build(spec), evolve.FlopsObjective)


class Outsider(evolve.Mutation):
    def _do(self, child, rng):
        return None


def test_foreign_classes_need_to_be_named():
    spec = describe(Outsider(prob=0.5))
    with pytest.raises(ConfigError, match="not part of evolve"):
        build(spec)
    assert build(spec, extra=[Outsider]).prob == 0.5


def test_components_must_store_their_parameters():
    class Forgetful(evolve.Selection):
        def __init__(self, size=2):
            self.k = size

    with pytest.raises(ConfigError, match="does not store its parameter"):
        describe(Forgetful())
