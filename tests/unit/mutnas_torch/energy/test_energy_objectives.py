"""Objective helpers: estimated on this machine, measured with a meter, model untouched."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from mutnas_torch.energy import (
    AnalyticPredictor,
    EnergyMeter,
    EstimatedMeter,
    energy_per_inference_j,
    fallback,
    latency_ms,
    training_energy_j,
)


class ConstantPowerMeter(EnergyMeter):
    source = "fake"

    def _begin(self):
        return None

    def _end(self, token, elapsed_s):
        return 40.0 * elapsed_s, None, None


def _net(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10),
    )  # fmt: skip


X = torch.randn(4, 3, 16, 16)


@pytest.fixture
def no_counters(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)

    def unavailable():
        raise fallback.MeterUnavailableError("no RAPL here")

    monkeypatch.setattr(fallback, "RaplMeter", unavailable)


def test_objectives_are_estimated_without_counters(no_counters):
    small, big = _net(8), _net(64)
    e_small = energy_per_inference_j(small, X)
    e_big = energy_per_inference_j(big, X)
    assert e_small.source == e_big.source == "estimated"
    assert 0 < e_small.value < e_big.value
    train = training_energy_j(small, X, n_samples=1000)
    assert train.source == "estimated"
    assert 1.5 * 1000 * e_small.value < train.value < 4 * 1000 * e_small.value


def test_estimated_meter_means_predicting_not_running():
    class Exploding(nn.Module):
        def forward(self, x):
            if x.device.type != "meta":
                raise AssertionError("the model must not run for an estimate")
            return x * 2

    value, source = energy_per_inference_j(Exploding(), X, meter=EstimatedMeter("cpu"))
    assert source == "estimated" and value > 0


def test_measured_objectives_leave_the_model_untouched():
    model = _net(8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meter = ConstantPowerMeter()
    value, source = energy_per_inference_j(model, X, meter=meter, min_window_s=0.01, repeats=1)
    assert source == "fake" and value > 0
    value, source = training_energy_j(model, X, meter=meter, min_window_s=0.01, repeats=1)
    assert source == "fake" and value > 0
    assert model.training and all(m.training for m in model.modules())
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_latency_measured_and_estimated():
    model = _net(8)
    measured = latency_ms(model, X, repeats=2, min_time_s=0.005)
    assert measured.source == "measured" and measured.value > 0
    estimated = latency_ms(model, X, predictor=AnalyticPredictor("cpu"))
    assert estimated.source == "estimated" and estimated.value > 0
    moved = latency_ms(model, X, device="cpu", repeats=1, min_time_s=0.001)
    assert moved.source == "measured"


def test_timed_estimates_use_a_measured_latency():
    model = _net(8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    predictor = AnalyticPredictor("cpu")
    inference = energy_per_inference_j(model, X, predictor=predictor, timed=True)
    training = training_energy_j(model, X, predictor=predictor, timed=True)
    assert inference.source == training.source == "estimated"
    assert inference.value > 0 and training.value > 0
    idle_floor = predictor.device.idle_w * 1e-6 / X.shape[0]  # at least a microsecond
    assert inference.value > idle_floor
    assert model.training
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key


def test_predictor_argument_overrides_the_meter_search():
    value, source = energy_per_inference_j(_net(8), X, predictor=AnalyticPredictor("h100"))
    assert source == "estimated" and value > 0
