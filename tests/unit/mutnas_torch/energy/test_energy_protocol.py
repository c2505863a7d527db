"""The measurement protocol with a deterministic fake meter."""

from __future__ import annotations

import time

import pytest

from mutnas_torch.energy import EnergyMeter, measure


class ConstantPowerMeter(EnergyMeter):
    """Reports ``power_w`` times the window's length, and counts synchronisations."""

    source = "fake"

    def __init__(self, power_w: float = 100.0) -> None:
        super().__init__()
        self.power_w = power_w
        self.n_synchronize = 0

    def synchronize(self) -> None:
        self.n_synchronize += 1

    def _begin(self):
        return None

    def _end(self, token, elapsed_s):
        return self.power_w * elapsed_s, None, None


def test_measure_fills_windows_and_reports_per_call():
    meter = ConstantPowerMeter()
    calls = []

    def work():
        calls.append(1)
        time.sleep(0.002)

    result = measure(work, meter, min_window_s=0.05, repeats=2, warmup=2, idle_s=0.01)
    assert result.source == "fake" and result.n_calls >= 10
    assert result.time_s == pytest.approx(0.002, rel=0.5)
    assert result.gpu_j == pytest.approx(100.0 * result.time_s, rel=1e-6)
    assert result.n_calls * result.time_s >= 0.05
    assert result.idle_power_w == pytest.approx(100.0)
    assert result.dynamic_j == pytest.approx(0.0, abs=1e-9)
    assert 0.0 <= result.spread < 0.5
    assert len(calls) >= 2 + 2 * result.n_calls
    assert meter.n_synchronize >= 4


def test_measure_idle_is_cached_and_can_be_skipped():
    meter = ConstantPowerMeter()
    measure(lambda: None, meter, min_window_s=0.01, repeats=1, idle_s=0.01)
    meter.power_w = 5.0
    assert meter.idle_power_w() == pytest.approx(100.0)
    assert meter.idle_power_w(0.01, refresh=True) == pytest.approx(5.0)
    assert measure(lambda: None, meter, min_window_s=0.01, idle_s=0).idle_power_w is None


def test_slow_functions_get_one_call_per_window():
    result = measure(lambda: time.sleep(0.03), ConstantPowerMeter(), min_window_s=0.02,
                     repeats=1, warmup=0, idle_s=0)  # fmt: skip
    assert result.n_calls == 1


@pytest.mark.parametrize(
    "kwargs", [{"min_window_s": 0}, {"repeats": 0}, {"warmup": -1}, {"idle_s": -1.0}]
)
def test_measure_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="measure needs"):
        measure(lambda: None, ConstantPowerMeter(), **kwargs)
