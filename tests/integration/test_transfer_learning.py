"""Pruning a trained CNN: activation x gradient (Taylor) keeps more accuracy than chance.

A small CNN is trained on scikit-learn's 8x8 digits for a few epochs (seconds on a CPU).
From the same trained weights, half of every layer is pruned once by first-order Taylor
utility (accumulated over a few training batches) and several times by random utility;
no fine-tuning follows. Taylor pruning must lose clearly less test accuracy than the
average random prune.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mutnas_torch as mt
from mutnas_torch.utility import random_utility

datasets = pytest.importorskip("sklearn.datasets")

N_TRAIN = 1400
BATCH = 64
EPOCHS = 4
TAYLOR_BATCHES = 8
RANDOM_SEEDS = range(5)
MARGIN = 0.15  # Taylor must lose at least 15 points less accuracy than random on average


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32 * 4 * 4, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.max_pool2d(F.relu(self.bn2(self.conv2(h))), 2)
        return self.out(F.relu(self.fc(h.flatten(1))))


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = datasets.load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def train(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model


@pytest.fixture(scope="module")
def trained():
    # one thread: deterministic, and far faster than two threads on a shared machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x_train, y_train, x_test, y_test = digits()
        yield train(x_train, y_train), (x_train, y_train, x_test, y_test)
    finally:
        torch.set_num_threads(threads)


def test_taylor_pruning_loses_less_accuracy_than_random_pruning(trained, record_property):
    model, (x_train, y_train, x_test, y_test) = trained
    mm = mt.mutable(model, x_train[:2])
    base = accuracy(mm, x_test, y_test)
    assert base > 0.9, f"the CNN did not train: test accuracy {base:.3f}"

    taylor = mt.TaylorUtility(mm)
    mm.eval()  # measure the function we evaluate; BatchNorm statistics stay as trained
    for start in range(0, TAYLOR_BATCHES * BATCH, BATCH):
        mm.zero_grad()
        F.cross_entropy(
            mm(x_train[start : start + BATCH]), y_train[start : start + BATCH]
        ).backward()
    taylor.detach()
    mm.zero_grad(set_to_none=True)

    pruned = copy.deepcopy(mm)
    pruned.prune(0.5, utility=taylor)
    assert {n: pruned.graph[n].nout for n in pruned.layers()} == {
        "conv1": 8,
        "conv2": 16,
        "fc": 32,
        "out": 10,
    }
    taylor_drop = base - accuracy(pruned, x_test, y_test)

    random_drops = []
    for seed in RANDOM_SEEDS:
        control = copy.deepcopy(mm)
        control.prune(0.5, utility=random_utility(seed))
        random_drops.append(base - accuracy(control, x_test, y_test))
    mean_random = float(np.mean(random_drops))

    report = (
        f"base accuracy {base:.3f}; drop after a 50 % prune: Taylor {taylor_drop:.3f}, "
        f"random {mean_random:.3f} (mean of {len(random_drops)}: "
        f"{', '.join(f'{d:.3f}' for d in random_drops)})"
    )
    record_property("accuracy_drops", report)
    assert taylor_drop + MARGIN < mean_random, report
    assert taylor_drop < min(random_drops), report


def test_taylor_scores_cover_every_prunable_layer(trained):
    model, (x_train, y_train, _, _) = trained
    mm = mt.mutable(model, x_train[:2])
    taylor = mt.TaylorUtility(mm)
    mm.eval()
    F.cross_entropy(mm(x_train[:BATCH]), y_train[:BATCH]).backward()
    taylor.detach()
    for name in ("conv1", "bn1", "conv2", "bn2", "fc", "out"):
        scores = taylor(mm.graph[name])
        assert scores is not None and scores.shape == (mm.graph[name].nout,), name
        assert np.all(scores >= 0) and scores.max() > 0, name
