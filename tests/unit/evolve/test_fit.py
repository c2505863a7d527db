"""The one-liner: arguments arrive, bad ones are refused, results make sense."""

from __future__ import annotations

import json

import pytest
import torch
from evolve_helpers import signals

import evolve
from evolve.data import as_splits
from evolve.errors import ConfigError

TINY = {
    "population": 3,
    "generations": 2,
    "progress": False,
    "training": evolve.TrainingConfig(steps=3),
}


class Recorder(evolve.Callback):
    def __init__(self):
        self.events = []

    def on_search_start(self, algorithm):
        self.events.append("start")

    def on_generation_end(self, algorithm):
        self.events.append(f"gen{algorithm.generation}")

    def on_candidate_end(self, algorithm, candidate):
        self.events.append(candidate.id)

    def on_search_end(self, algorithm):
        self.events.append("end")


def test_callbacks_and_run_dir_arrive(tmp_path):
    recorder = Recorder()
    result = evolve.fit(signals(), run_dir=tmp_path / "run", callbacks=[recorder], **TINY)
    assert recorder.events[0] == "start" and recorder.events[-1] == "end"
    assert [e for e in recorder.events if str(e).startswith("gen")] == ["gen1", "gen2"]
    logged = [e for e in recorder.events if isinstance(e, int)]
    assert sorted(logged) == [r["id"] for r in result.candidates] == sorted(set(logged))
    run = tmp_path / "run"
    for name in ("config.json", "state.json", "candidates.jsonl", "history.png", "pareto.png"):
        assert (run / name).is_file(), name
    lines = (run / "candidates.jsonl").read_text().splitlines()
    assert len(lines) == len(result.candidates)
    record = json.loads(lines[-1])
    assert {"id", "parents", "mutations", "sizes", "scores", "train_seconds", "reason"} <= set(
        record
    )
    state = json.loads((run / "state.json").read_text())
    assert state["generation"] == 2
    assert sorted(p.name for p in (run / "models").iterdir()) == sorted(
        str(i) for i in {r["id"] for r in state["population"] + state["archive"]}
    )
    config = json.loads((run / "config.json").read_text())
    assert config["seed"] == 0 and config["algorithm"]["params"]["pop_size"] == 3


@pytest.mark.parametrize("given", ["arrays", "splits"])
def test_config_records_the_validation_share_only_when_fit_made_the_split(tmp_path, given):
    data = signals() if given == "arrays" else as_splits(signals(), valid_fraction=0.3)
    evolve.fit(data, valid_fraction=0.25, run_dir=tmp_path, **{**TINY, "generations": 1})
    recorded = json.loads((tmp_path / "config.json").read_text())["data"]
    assert recorded["valid_fraction"] == (0.25 if given == "arrays" else None)
    assert recorded["n_valid"] == len(as_splits(data, valid_fraction=0.25).valid)
    result = evolve.resume(
        tmp_path, data, termination=evolve.MaxGenerationsTermination(2), progress=False
    )
    assert result.n_generations == 2


def test_result_holds_trained_modules_and_their_scores():
    result = evolve.fit(signals(), **TINY)
    assert result.n_generations == 2 and result.best in result.pareto
    x = torch.zeros(2, 1, 16)
    for c in result.pareto:
        assert isinstance(c.model, torch.nn.Module) and c.model(x).shape == (2, 2)
        assert set(c.scores) == {"accuracy", "flops"}
    accuracies = [c.scores["accuracy"] for c in result.pareto]
    assert accuracies == sorted(accuracies, reverse=True)
    assert "accuracy" in result.summary() and result.history[-1]["front_size"] == len(result.pareto)


def test_unknown_keyword_is_refused_with_a_suggestion():
    with pytest.raises(
        ConfigError, match=r"unknown keyword argument 'callback'; did you mean callbacks=\?"
    ):
        evolve.fit(signals(), callback=[Recorder()], **TINY)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"population": 0}, "pop_size \\(population\\) must be an integer >= 1"),
        ({"population": -4}, "must be an integer >= 1"),
        ({"generations": 0}, "generations must be an integer >= 1"),
        ({"objectives": ["accuracy", "speed"]}, "unknown objective 'speed'"),
        ({"objectives": ["flops"]}, "no objective measures the classification task"),
        ({"device": "tpu"}, "is not a torch device"),
        ({"seed": -1}, "seed must be an integer"),
        ({"growth": "random"}, "growth must be"),
        ({"mutation": "resize"}, "mutation must be a Mutation"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        evolve.fit(signals(), **{**TINY, **kwargs})


def test_existing_run_dir_is_not_overwritten(tmp_path):
    evolve.fit(signals(), run_dir=tmp_path, **{**TINY, "generations": 1})
    with pytest.raises(ConfigError, match=r"already holds a run; continue it with evolve\.resume"):
        evolve.fit(signals(), run_dir=tmp_path, **TINY)


def test_start_from_an_existing_model():
    net = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 2),
    )
    result = evolve.fit(signals(), model=net, **TINY)
    initial = [r for r in result.candidates if r["generation"] == 0]
    assert all(r["mutations"][0] == "seed model" for r in initial)
    assert initial[0]["mutations"] == ["seed model"] and all(
        len(r["mutations"]) > 1 for r in initial[1:]
    )


def test_regression_and_weighted_mode():
    x, _ = signals()
    y = x.mean(dim=(1, 2))
    result = evolve.fit((x, y), weights=[1.0, -1e-6], **TINY)
    assert result.objectives == ("r2", "flops")
    assert result.best is max(
        [*result.pareto, result.best], key=lambda c: c.scores["r2"] - 1e-6 * c.scores["flops"]
    )


def test_named_dataset_and_mlp_space():
    result = evolve.fit(
        "digits",
        objectives=["accuracy", "parameters"],
        search_space=evolve.SearchSpace(widths=(8,)),
        **{**TINY, "generations": 1},
    )
    for c in result.pareto:  # scores describe the returned models, trained above chance
        assert c.scores["parameters"] == c.model.n_parameters()
        assert c.scores["accuracy"] > 0.2, c.scores  # 10 classes: chance is 0.1


def test_constraints_on_trained_metrics_shape_the_front():
    strict = evolve.AccuracyObjective(min_value=2.0)  # nothing can meet it
    result = evolve.fit(signals(), objectives=[strict, "flops"], **TINY)
    assert result.n_generations == 2 and result.pareto == [] and result.best is None
    assert all(
        r["reason"].startswith("infeasible") for r in result.candidates if r["status"] == "ok"
    )
