"""Helpers of the evolve tests: tiny learnable data and tiny mutable models."""

from __future__ import annotations

import numpy as np
import torch

import evolve
import mutnas_torch as mt


def signals(n: int = 48, length: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable 1-D task: the class is which half of the signal holds a bump."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = 0.3 * torch.randn(n, 1, length, generator=g)
    for i in range(n):
        start = 0 if y[i] == 0 else length // 2
        x[i, 0, start : start + length // 2] += 1.0
    return x, y


def make_problem(splits, objectives=("accuracy", "flops"), training=None, weights=None):
    return evolve.Problem(
        splits,
        evolve.ObjectiveSet(objectives, weights),
        training or evolve.TrainingConfig(steps=3),
        device="cpu",
    )


def conv_model(widths=(6, 8), seed: int = 0, length: int = 16):
    """A built-in-space 1-D conv net as a MutableModel (eval mode)."""
    torch.manual_seed(seed)
    space = evolve.SearchSpace(widths=widths, min_depth=len(widths), max_depth=len(widths))
    net = space.build((1, length), 2, np.random.default_rng(seed))
    return mt.mutable(net, torch.zeros(1, 1, length)).eval()


def mlp_model(widths=(6, 8), seed: int = 0, n_in: int = 5):
    torch.manual_seed(seed)
    space = evolve.SearchSpace(widths=widths, min_depth=len(widths), max_depth=len(widths))
    net = space.build((n_in,), 3, np.random.default_rng(seed))
    return mt.mutable(net, torch.zeros(1, n_in)).eval()


def image_model(seed: int = 0):
    torch.manual_seed(seed)
    space = evolve.SearchSpace(widths=(4, 6), min_depth=2, max_depth=2, pooled_size=2)
    net = space.build((2, 8, 8), 3, np.random.default_rng(seed))
    return mt.mutable(net, torch.zeros(1, 2, 8, 8)).eval()
