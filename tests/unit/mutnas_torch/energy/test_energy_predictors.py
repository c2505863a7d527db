"""Analytic predictor: defaults, NNLS fit, JSON persistence, device specs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mutnas_torch.energy import (
    DEVICE_SPECS,
    AnalyticPredictor,
    CalibrationError,
    Costs,
    default_predictor_path,
    device_spec,
    load_predictor,
)


def _synthetic(rng: np.random.Generator, n: int, *, training: bool = False) -> list[Costs]:
    return [
        Costs(
            flops=int(rng.uniform(1e8, 1e11)),
            bytes_read=int(rng.uniform(1e6, 1e9)),
            bytes_written=int(rng.uniform(1e6, 1e9)),
            launches=int(rng.integers(10, 500)),
            training=training,
        )
        for _ in range(n)
    ]


TRUE = np.array([3e-12, 2e-10, 1e-5, 0.05])  # J/FLOP, J/byte, J/launch, J


def _energy(costs: list[Costs], coef: np.ndarray = TRUE) -> list[float]:
    return [float(np.dot([c.flops, c.bytes_moved, c.launches, 1.0], coef)) for c in costs]


@pytest.mark.parametrize("relative", [True, False])
def test_nnls_recovers_known_coefficients(relative):
    costs = _synthetic(np.random.default_rng(0), 20)
    predictor = AnalyticPredictor("h100").fit(costs, _energy(costs), relative=relative)
    np.testing.assert_allclose(predictor.coef_["inference"]["energy"], TRUE, rtol=1e-6)
    assert predictor.calibrated


def test_nnls_recovers_time_coefficients_and_tolerates_noise():
    rng = np.random.default_rng(1)
    costs = _synthetic(rng, 30)
    time_coef = np.array([1e-13, 5e-13, 4e-6, 0.0])
    times = _energy(costs, time_coef)
    noisy = [e * rng.uniform(0.97, 1.03) for e in _energy(costs)]
    predictor = AnalyticPredictor("h100").fit(costs, noisy, time_s=times)
    np.testing.assert_allclose(predictor.coef_["inference"]["time"], time_coef, atol=1e-15)
    for c, e in zip(costs, _energy(costs), strict=True):
        assert predictor.predict_energy(c) == pytest.approx(e, rel=0.05)


def test_latency_informed_model_is_fitted_and_used_with_a_time():
    rng = np.random.default_rng(7)
    costs = _synthetic(rng, 20)
    seconds = [rng.uniform(1e-3, 1e-1) for _ in costs]
    energy = [250.0 * t + e for t, e in zip(seconds, _energy(costs), strict=True)]
    predictor = AnalyticPredictor("h100").fit(costs, energy, time_s=seconds)
    np.testing.assert_allclose(
        predictor.coef_["inference"]["energy_timed"], [250.0, *TRUE], rtol=1e-6
    )
    prediction = predictor.predict(costs[0], time_s=seconds[0])
    assert prediction.time_s == seconds[0]
    assert prediction.energy_j == pytest.approx(energy[0])
    assert predictor.predict_energy(costs[0], time_s=seconds[0]) == pytest.approx(energy[0])


def test_a_time_without_timed_coefficients_keeps_the_fitted_cost_model():
    costs = _synthetic(np.random.default_rng(8), 10)
    predictor = AnalyticPredictor("h100").fit(costs, _energy(costs))
    assert predictor.predict_energy(costs[0], time_s=1.0) == pytest.approx(_energy(costs)[0])
    default = AnalyticPredictor("h100")  # uncalibrated: idle power x time + dynamic work
    idle = DEVICE_SPECS["h100"].idle_w
    assert default.predict_energy(costs[0], time_s=1.0) > idle


def test_fit_never_returns_negative_coefficients():
    costs = _synthetic(np.random.default_rng(2), 20)
    energy = _energy(costs, np.array([3e-12, -1e-11, 0.0, 0.1]))
    energy = [max(e, 1e-3) for e in energy]
    coef = AnalyticPredictor("cpu").fit(costs, energy).coef_["inference"]["energy"]
    assert min(coef) >= 0.0


def test_features_subset_zeroes_the_others():
    costs = _synthetic(np.random.default_rng(3), 10)
    predictor = AnalyticPredictor("cpu").fit(costs, _energy(costs), features=["flops"])
    coef = predictor.coef_["inference"]["energy"]
    assert coef[0] > 0 and coef[1:] == [0.0, 0.0, 0.0]


def test_phases_are_fitted_and_used_separately():
    rng = np.random.default_rng(4)
    inference, training = _synthetic(rng, 10), _synthetic(rng, 10, training=True)
    predictor = AnalyticPredictor("h100").fit(inference, _energy(inference))
    predictor.fit(training, _energy(training, 3 * TRUE))
    assert predictor.predict_energy(training[0]) == pytest.approx(
        _energy(training[:1], 3 * TRUE)[0]
    )
    assert predictor.predict_energy(inference[0]) == pytest.approx(_energy(inference[:1])[0])


@pytest.mark.parametrize(
    ("costs", "energy", "kwargs", "match"),
    [
        ("two", [1.0], {}, "as many measurements"),
        ("one", [1.0], {}, "at least 2"),
        ("mixed", [1.0, 2.0], {}, "mixed"),
        ("two", [1.0, -2.0], {}, "positive"),
        ("two", [1.0, 2.0], {"features": ["watts"]}, "unknown features"),
    ],
)
def test_fit_rejects_bad_input(costs, energy, kwargs, match):
    a = Costs(10, 1, 1, 1)
    lists = {"two": [a, Costs(20, 2, 2, 2)], "one": [a], "mixed": [a, Costs(1, 1, 1, 1, True)]}
    with pytest.raises(CalibrationError, match=match):
        AnalyticPredictor("cpu").fit(lists[costs], energy, **kwargs)


def test_uncalibrated_defaults_rank_by_work():
    predictor = AnalyticPredictor("h100")
    small = Costs(10**9, 10**7, 10**7, 20)
    big = Costs(10**11, 10**8, 10**8, 40)
    assert predictor.predict_energy(big) > predictor.predict_energy(small) > 0
    assert predictor.predict_time(big) > predictor.predict_time(small) > 0
    assert not predictor.calibrated


def test_json_round_trip(tmp_path):
    costs = _synthetic(np.random.default_rng(5), 10)
    predictor = AnalyticPredictor("a100").fit(costs, _energy(costs), time_s=_energy(costs))
    path = predictor.save(tmp_path / "deep" / "a100.json")
    data = json.loads(path.read_text())  # plain JSON, no pickle
    assert data["spec"]["name"] == "NVIDIA A100 SXM"
    loaded = AnalyticPredictor.load(path)
    assert loaded.coef_ == predictor.coef_
    assert loaded.device == predictor.device
    assert loaded.predict(costs[0]) == predictor.predict(costs[0])
    assert "a100" in repr(loaded).lower() and "inference" in repr(loaded)


def test_load_rejects_foreign_or_broken_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": "something else"}')
    with pytest.raises(CalibrationError, match="not a mutnas predictor"):
        AnalyticPredictor.load(path)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        AnalyticPredictor.load(path)
    data = AnalyticPredictor("cpu").to_dict()
    data["features"] = ["flops"]
    with pytest.raises(CalibrationError, match="features"):
        AnalyticPredictor.from_dict(data)


def test_load_predictor_prefers_the_saved_calibration(tmp_path, monkeypatch):
    monkeypatch.setenv("MUTNAS_CACHE_DIR", str(tmp_path))
    path = default_predictor_path("cpu")
    assert path.parent == tmp_path / "energy"
    assert not load_predictor("cpu").calibrated
    costs = _synthetic(np.random.default_rng(6), 5)
    AnalyticPredictor("cpu").fit(costs, _energy(costs)).save(path)
    assert load_predictor("cpu").calibrated


def test_device_spec_lookup():
    assert device_spec("NVIDIA H200") is DEVICE_SPECS["h200"]
    assert device_spec("NVIDIA A100-SXM4-80GB") is DEVICE_SPECS["a100"]
    assert device_spec("NVIDIA GeForce RTX 4090") is DEVICE_SPECS["gpu"]
    assert device_spec("Intel(R) Xeon(R)") is DEVICE_SPECS["cpu"]
    assert device_spec(DEVICE_SPECS["h100"]) is DEVICE_SPECS["h100"]
