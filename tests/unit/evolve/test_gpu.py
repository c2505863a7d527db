"""The search on a CUDA device: candidates train there one at a time and live on the CPU."""

from __future__ import annotations

import pytest
import torch
from evolve_helpers import signals

import evolve
from evolve.data import load_dataset

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]
TIME_KEYS = {"seconds", "elapsed_s", "train_seconds"}
SETTINGS = {
    "population": 3,
    "generations": 2,
    "seed": 1,
    "device": "cuda",
    "progress": False,
    "training": evolve.TrainingConfig(steps=8, cull_fraction=0.34),
}


def stripped(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def test_cuda_search_with_culling_keeps_models_on_the_cpu():
    result = evolve.fit(signals(), **SETTINGS)
    assert result.n_generations == 2 and any(r["status"] == "culled" for r in result.candidates)
    assert all(r["status"] != "failed" for r in result.candidates)
    assert {p.device.type for c in result.pareto for p in c.model.parameters()} == {"cpu"}


def test_cuda_search_is_reproducible():
    data = load_dataset("mnist1d", limit=1000, seed=0)  # convs whose cuDNN kernels vary
    settings = {**SETTINGS, "training": evolve.TrainingConfig(steps=30, cull_fraction=0.34)}
    a, b = evolve.fit(data, **settings), evolve.fit(data, **settings)
    assert stripped(a.candidates) == stripped(b.candidates)
