"""Frozen settings, their validation and their JSON round trip."""

from __future__ import annotations

import pytest
import torch

import evolve
from evolve.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: evolve.Hyperparams(optimizer="lion"), "optimizer must be one of"),
        (lambda: evolve.Hyperparams(lr=0), "lr must be a positive"),
        (lambda: evolve.Hyperparams(batch_size=2.5), "batch_size must be a positive integer"),
        (lambda: evolve.Hyperparams(weight_decay=-1), "weight_decay must be >= 0"),
        (lambda: evolve.TrainingConfig(epochs=0), "epochs must be"),
        (lambda: evolve.TrainingConfig(steps=0), "steps must be"),
        (lambda: evolve.TrainingConfig(schedule="step"), "schedule must be one of"),
        (lambda: evolve.TrainingConfig(cull_fraction=1.0), "cull_fraction"),
        (lambda: evolve.TrainingConfig(cull_at=0.0), "cull_at"),
        (lambda: evolve.TrainingConfig(label_smoothing=1.0), "label_smoothing"),
        (lambda: evolve.TrainingConfig(max_seconds=float("inf")), "max_seconds"),
        # booleans are not numbers, strings are not numbers (JSON from a run directory)
        (lambda: evolve.Hyperparams(batch_size=True), "batch_size must be a positive integer"),
        (lambda: evolve.Hyperparams(weight_decay=True), "weight_decay must be >= 0"),
        (lambda: evolve.TrainingConfig(epochs=True), "epochs must be"),
        (lambda: evolve.TrainingConfig(label_smoothing=False), "label_smoothing must be a number"),
        (lambda: evolve.TrainingConfig(cull_fraction="0.5"), "cull_fraction must be a number"),
        (lambda: evolve.TrainingConfig(deterministic="yes"), "deterministic must be true or"),
        (lambda: evolve.Hyperparams(optimizer=["adam"]), "optimizer must be one of"),
    ],
)
def test_bad_settings_say_how_to_fix_them(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_round_trip_and_unknown_fields():
    cfg = evolve.TrainingConfig(steps=7, cull_fraction=0.5)
    assert evolve.TrainingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="has no field"):
        evolve.Hyperparams.from_dict({"lr": 0.1, "momentum": 0.9})
    with pytest.raises(ConfigError, match="TrainingConfig must be a JSON object"):
        evolve.TrainingConfig.from_dict(["epochs", 3])


def test_budgets():
    cfg = evolve.TrainingConfig(epochs=1.5, initial_epochs=3)
    assert cfg.n_steps(100, 10) == 15 and cfg.n_steps(100, 10, initial=True) == 30
    assert cfg.n_steps(5, 64) == 2  # a batch larger than the data: one full batch per epoch
    assert evolve.TrainingConfig(steps=9).n_steps(100, 10) == 9
    assert evolve.TrainingConfig(cull_at=0.5).cull_step(2) == 1


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
def test_every_optimizer_builds(name):
    opt = evolve.Hyperparams(name, lr=0.05).make_optimizer(torch.nn.Linear(2, 2).parameters())
    assert opt.param_groups[0]["lr"] == 0.05
