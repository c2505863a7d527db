"""Calibration pipeline on CPU: a synthetic meter stands in for a real counter."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from mutnas_torch.energy import (
    AnalyticPredictor,
    CalibrationError,
    Costs,
    EnergyMeter,
    EstimatedMeter,
    calibrate,
    calibrate_main,
    leave_one_out,
    reference_networks,
    rmspe,
    run_calibration,
)


class ConstantPowerMeter(EnergyMeter):
    source = "fake"

    def _begin(self):
        return None

    def _end(self, token, elapsed_s):
        return 50.0 * elapsed_s, None, None


FAST = {"batch_size": 1, "min_window_s": 0.01, "repeats": 1}


def test_reference_networks_build_and_run():
    names = set()
    for net in reference_networks():
        out = net.build().eval()(torch.zeros(net.input_shape(1)))
        assert out.shape == (1, 10)
        names.add(net.name)
    assert 15 <= len(names) == len(reference_networks()) <= 20


def test_leave_one_out_of_the_latency_informed_model():
    costs = [Costs(f, b, 0, 10) for f, b in [(1e9, 4e6), (3e9, 1e6), (2e9, 9e6), (7e9, 2e6),
                                             (5e9, 6e6)]]  # fmt: skip
    seconds = [0.010, 0.004, 0.020, 0.008, 0.013]  # efficiency that costs cannot see
    energy = [300.0 * t + 1e-9 * c.flops for c, t in zip(costs, seconds, strict=True)]
    assert leave_one_out(costs, energy, time_s=seconds).rmspe == pytest.approx(0.0, abs=1e-6)
    assert leave_one_out(costs, energy).rmspe > 0.05


def test_rmspe_and_leave_one_out_on_exact_data():
    assert rmspe([2.0, 2.0], [1.0, 4.0]) == pytest.approx(np.sqrt((1 + 0.25) / 2))
    costs = [Costs(f, b, 0, n) for f, b, n in [(1e9, 4e6, 3), (3e9, 1e6, 9), (2e9, 9e6, 4),
                                               (7e9, 2e6, 7), (5e9, 6e6, 2)]]  # fmt: skip
    energy = [1e-9 * c.flops + 2e-7 * c.bytes_read + 0.01 * c.launches for c in costs]
    result = leave_one_out(costs, energy)
    assert result.rmspe == pytest.approx(0.0, abs=1e-6)
    assert result.spearman == pytest.approx(1.0)


def test_run_calibration_fits_saves_and_reports(tmp_path):
    path = tmp_path / "predictor.json"
    report = run_calibration(
        "cpu", meter=ConstantPowerMeter(), networks=reference_networks()[:3], out_path=path,
        rng=np.random.default_rng(0), **FAST,
    )  # fmt: skip
    assert report.source == "fake" and report.path == path
    assert set(report.predictor.coef_) == {"inference", "training"}
    loaded = AnalyticPredictor.load(path)
    assert loaded.coef_ == report.predictor.coef_
    assert set(report.predictor.coef_["training"]) == {"energy", "time", "energy_timed"}
    data = report.to_dict()
    json.dumps(data)
    assert len(data["networks"]) == 3 and data["training_loo_timed_rmspe"] is not None
    assert all(r.training_latency_s > 0 and r.inference_latency_s > 0 for r in report.records)
    table = report.to_markdown()
    assert "plain_w16_d2_k3_r32" in table and "LOO RMSPE" in table


def test_calibration_refuses_estimated_energy():
    with pytest.raises(CalibrationError, match="no energy counter is readable"):
        calibrate("cpu", meter=EstimatedMeter("cpu"), networks=reference_networks()[:3])


def test_calibration_needs_three_networks():
    with pytest.raises(CalibrationError, match="at least 3 networks"):
        run_calibration("cpu", meter=ConstantPowerMeter(), networks=reference_networks()[:2])


def test_estimated_pipeline_runs_but_saves_nothing(tmp_path):
    report = run_calibration(
        "cpu", meter=EstimatedMeter("cpu"), networks=reference_networks()[:3],
        out_path=tmp_path / "x.json", training=False, allow_estimated=True, **FAST,
    )  # fmt: skip
    assert report.source == "estimated" and report.path is None and report.training is None
    assert not (tmp_path / "x.json").exists()


def test_calibrate_main_exits_cleanly_without_a_counter(monkeypatch):
    import mutnas_torch.energy.calibration as module

    monkeypatch.setattr(module, "auto_meter", lambda device: EstimatedMeter("cpu", reason="r"))
    out = io.StringIO()
    assert calibrate_main(["--device", "cpu", "--networks", "3"], stdout=out) == 1
    assert "no energy counter is readable" in out.getvalue()


def test_calibrate_main_writes_predictor_and_report(tmp_path, monkeypatch):
    import mutnas_torch.energy.calibration as module

    monkeypatch.setattr(module, "auto_meter", lambda device: ConstantPowerMeter())
    out = io.StringIO()
    argv = ["--device", "cpu", "--networks", "3", "--batch-size", "1", "--min-window-s", "0.01",
            "--repeats", "1", "--no-training", "--out", str(tmp_path / "p.json"),
            "--report", str(tmp_path / "r.json")]  # fmt: skip
    assert calibrate_main(argv, stdout=out) == 0
    assert (tmp_path / "p.json").is_file()
    assert json.loads((tmp_path / "r.json").read_text())["source"] == "fake"
    assert "LOO RMSPE" in out.getvalue()
