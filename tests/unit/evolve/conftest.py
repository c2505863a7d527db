"""Shared fixtures of the evolve tests: tiny data, tiny problems, one thread."""

from __future__ import annotations

import pytest
import torch
from evolve_helpers import make_problem, signals

import evolve
from evolve.data import as_splits


@pytest.fixture(autouse=True)
def one_thread():
    """The machine is shared: keep every test on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def signal_splits():
    """48 signals of shape (1, 16), two classes: 40 train, 8 valid."""
    return as_splits(signals(), valid_fraction=1 / 6)


@pytest.fixture
def tiny_training():
    """A few steps per evaluation."""
    return evolve.TrainingConfig(steps=3, eval_batch_size=64)


@pytest.fixture
def problem(signal_splits):
    return make_problem(signal_splits)
