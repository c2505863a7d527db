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
    again = build(spec, evolve.GeneticAlgorithm)
    assert describe(again) == spec
    assert again.search_space == algorithm.search_space and again.hparams.lr == 0.003
    assert [type(m).__name__ for m in again.mutation.mutations][:2] == [
        "ResizeMutation",
        "AddLayerMutation",
    ]


def test_objectives_round_trip():
    spec = describe(evolve.FlopsObjective(max_value=1000))
    again = build(spec, evolve.Objective)
    assert again.max_value == 1000 and isinstance(again, evolve.FlopsObjective)


class Outsider(evolve.Mutation):
    def _do(self, child, rng):
        return None


def test_foreign_classes_need_to_be_named():
    spec = describe(Outsider(prob=0.5))
    with pytest.raises(ConfigError, match="not part of evolve"):
        build(spec, evolve.Mutation)
    assert build(spec, evolve.Mutation, extra=[Outsider]).prob == 0.5
    with pytest.raises(ConfigError, match="not part of evolve"):  # extra, but not a Selection
        build(spec, evolve.Selection, extra=[Outsider])


def test_components_must_store_their_parameters():
    class Forgetful(evolve.Selection):
        def __init__(self, size=2):
            self.k = size

    with pytest.raises(ConfigError, match="does not store its parameter"):
        describe(Forgetful())


@pytest.mark.parametrize(
    ("spec", "role", "message"),
    [
        # a function of evolve, with a nested "component" that is not a class of a role
        (
            {"class": "evolve.checkpoint.remove_models", "params": {"ids": []}},
            evolve.Objective,
            "x: 'evolve.checkpoint.remove_models' is not an Objective class of evolve",
        ),
        (
            {"class": "evolve.checkpoint.Path", "params": {}},
            evolve.Termination,
            "x: 'evolve.checkpoint.Path' is not a Termination class of evolve",
        ),
        # a registered class of another role
        (
            describe(evolve.TournamentSelection(2)),
            evolve.Objective,
            "'evolve.selection.TournamentSelection' is not an Objective class",
        ),
        ({"class": "os.system", "params": {}}, evolve.Objective, "os.system is not part of"),
        ({"class": "evolve.objectives.FlopsObjective"}, evolve.Objective, "expected a component"),
        (
            {"class": "evolve.objectives.FlopsObjective", "params": {"budget": 1}},
            evolve.Objective,
            "FlopsObjective has no parameter 'budget'",
        ),
        (
            {"class": "evolve.objectives.FlopsObjective", "params": {"max_value": True}},
            evolve.Objective,
            "x.max_value: expected float or null, got True",
        ),
        (
            {"class": "evolve.objectives.FlopsObjective", "params": {"max_value": [1]}},
            evolve.Objective,
            "x.max_value: expected float or null",
        ),
        (
            {"class": "evolve.termination.MaxGenerationsTermination", "params": {"n_max": 0}},
            evolve.Termination,
            "MaxGenerationsTermination refused its parameters",
        ),
    ],
)
def test_only_registered_classes_of_the_role_are_built(spec, role, message):
    with pytest.raises(ConfigError, match=r"^x") as info:
        build(spec, role, where="x")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_nested_components_are_checked_against_their_place():
    termination = evolve.AnyTermination([evolve.MaxGenerationsTermination(3)])
    spec = describe(evolve.GeneticAlgorithm(termination=termination))
    inner = spec["params"]["termination"]["params"]["terminations"]
    inner.append(describe(evolve.TournamentSelection(2)))  # unannotated: the owner's role
    with pytest.raises(ConfigError, match=r"algorithm\.termination\.terminations\[1\]: "):
        build(spec, evolve.GeneticAlgorithm, where="algorithm")
    inner.pop()
    spec["params"]["selection"] = describe(evolve.MaxGenerationsTermination(2))
    with pytest.raises(ConfigError, match=r"algorithm\.selection: .* is not a Selection class"):
        build(spec, evolve.GeneticAlgorithm, where="algorithm")
    spec["params"]["selection"] = None
    spec["params"]["pop_size"] = {"class": "evolve.selection.TournamentSelection", "params": {}}
    with pytest.raises(ConfigError, match="pop_size: a component is not allowed here"):
        build(spec, evolve.GeneticAlgorithm, where="algorithm")


def test_deep_nesting_is_refused():
    spec = []
    for _ in range(40):
        spec = [spec]
    wrapped = {"class": "evolve.operators.mutation.SequenceMutation", "params": {"mutations": spec}}
    with pytest.raises(ConfigError, match="nested deeper than 32 levels"):
        build(wrapped, evolve.Mutation, where="x")
