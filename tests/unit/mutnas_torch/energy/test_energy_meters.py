"""Meters: RAPL on a fake sysfs tree, NVML with a fake pynvml, Zeus, the estimated fallback."""

from __future__ import annotations

import functools
import os
import sys
import time
import types
from pathlib import Path

import pytest

from mutnas_torch.energy import (
    EnergyError,
    EstimatedMeter,
    Measurement,
    MeterUnavailableError,
    NvmlMeter,
    RaplMeter,
    ZeusMeter,
    auto_meter,
    fallback,
    nvml_device_id,
)
from mutnas_torch.energy import rapl as rapl_module

# ---------------------------------------------------------------- Measurement, windows


def test_measurement_splits_idle_and_dynamic_energy():
    m = Measurement(time_s=2.0, gpu_j=300.0, cpu_j=50.0, dram_j=10.0, idle_power_w=100.0)
    assert m.total_j == 360.0 and m.idle_j == 200.0 and m.dynamic_j == 160.0
    assert m.power_w == 180.0
    assert Measurement(time_s=1.0, cpu_j=5.0).dynamic_j is None


def test_result_of_an_open_window_raises():
    window = EstimatedMeter("cpu").window()
    with window, pytest.raises(EnergyError, match="still open"):
        _ = window.result
    assert window.result.source == "estimated"


# ---------------------------------------------------------------- RAPL


def _zone(root: Path, name: str, label: str, energy: int, max_range: int = 1000) -> Path:
    zone = root / name
    zone.mkdir()
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


@pytest.fixture
def sysfs(tmp_path: Path) -> dict[str, Path]:
    return {
        "package": _zone(tmp_path, "intel-rapl:0", "package-0", 100),
        "core": _zone(tmp_path, "intel-rapl:0:0", "core", 10),
        "dram": _zone(tmp_path, "intel-rapl:0:1", "dram", 500),
        "psys": _zone(tmp_path, "intel-rapl:1", "psys", 0),
        "mmio": _zone(tmp_path, "intel-rapl-mmio:0", "package-0", 0),
        "root": tmp_path,
    }


def test_rapl_sums_package_and_dram_never_nested_zones(sysfs):
    meter = RaplMeter(sysfs["root"])
    with meter.window() as w:
        (sysfs["package"] / "energy_uj").write_text("400\n")  # +300 uJ
        (sysfs["core"] / "energy_uj").write_text("900\n")  # inside the package: ignored
        (sysfs["psys"] / "energy_uj").write_text("900\n")  # whole SoC: ignored
        (sysfs["dram"] / "energy_uj").write_text("550\n")  # +50 uJ
    assert w.result.source == "rapl"
    assert w.result.cpu_j == pytest.approx(300e-6)
    assert w.result.dram_j == pytest.approx(50e-6)
    assert w.result.gpu_j is None


def test_rapl_handles_wrap_around(sysfs):
    (sysfs["package"] / "energy_uj").write_text("900\n")
    meter = RaplMeter(sysfs["root"])
    with meter.window() as w:
        (sysfs["package"] / "energy_uj").write_text("50\n")  # wrapped at 1000
    assert w.result.cpu_j == pytest.approx(150e-6)


def test_rapl_counter_accumulates_several_wraps(sysfs):
    counter = rapl_module._RaplCounter(sysfs["package"])  # starts at 100
    for value, total in [(900, 800), (200, 1100), (150, 2050)]:
        (sysfs["package"] / "energy_uj").write_text(f"{value}\n")
        assert counter.update() == total


def test_rapl_polls_long_windows(sysfs):
    meter = RaplMeter(sysfs["root"], poll_s=0.01)
    with meter.window() as w:
        for value in (600, 100, 700, 200):  # two wraps, each seen by the poller
            staged = sysfs["root"] / "staged"
            staged.write_text(f"{value}\n")
            os.replace(staged, sysfs["package"] / "energy_uj")  # atomic, like sysfs reads
            time.sleep(0.2)
    assert w.result.cpu_j == pytest.approx(2100e-6)


def test_rapl_without_zones_is_unavailable(tmp_path):
    with pytest.raises(MeterUnavailableError, match="no RAPL package zone"):
        RaplMeter(tmp_path)
    with pytest.raises(MeterUnavailableError, match="no RAPL package zone"):
        RaplMeter(tmp_path / "missing")


def test_rapl_permission_error_names_the_fix(sysfs, monkeypatch):
    def denied(directory):
        raise PermissionError(13, "Permission denied", str(directory))

    monkeypatch.setattr(rapl_module, "_RaplCounter", denied)
    with pytest.raises(MeterUnavailableError, match="root-only"):
        RaplMeter(sysfs["root"])


def test_rapl_unreadable_counter_is_unavailable(sysfs):
    (sysfs["package"] / "energy_uj").write_text("garbage\n")
    with pytest.raises(MeterUnavailableError, match="unreadable"):
        RaplMeter(sysfs["root"])


# ---------------------------------------------------------------- NVML


class _NVMLError(Exception):
    pass


def _fake_pynvml(*, energy: bool = True, power: bool = True) -> types.ModuleType:
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = _NVMLError
    nvml.opened: list[object] = []
    nvml.energy_mj = {0: 1000, 1: 2000, 2: 3000, 3: 4000}
    uuids = {0: "GPU-aaaa-0", 1: "GPU-bbbb-1", 2: "GPU-cccc-2", 3: "GPU-dddd-3"}
    nvml.nvmlInit = lambda: None
    nvml.nvmlShutdown = lambda: None
    nvml.nvmlDeviceGetCount = lambda: 4

    def by_index(index):
        nvml.opened.append(index)
        return index

    def total_energy(handle):
        if not energy:
            raise _NVMLError("Not Supported")
        nvml.energy_mj[handle] += 500  # each read: +0.5 J
        return nvml.energy_mj[handle]

    def power_mw(handle):
        if not power:
            raise _NVMLError("Not Supported")
        return 200_000

    nvml.nvmlDeviceGetHandleByIndex = by_index
    nvml.nvmlDeviceGetUUID = lambda handle: uuids[handle].encode()
    nvml.nvmlDeviceGetTotalEnergyConsumption = total_energy
    nvml.nvmlDeviceGetPowerUsage = power_mw
    return nvml


def test_nvml_device_id_follows_cuda_visible_devices():
    assert nvml_device_id(0, {}) == 0
    assert nvml_device_id(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == 3
    assert nvml_device_id(0, {"CUDA_VISIBLE_DEVICES": "GPU-dddd"}) == "GPU-dddd"
    with pytest.raises(MeterUnavailableError, match="lists 2 device"):
        nvml_device_id(2, {"CUDA_VISIBLE_DEVICES": "2,3"})


def test_nvml_meter_reads_the_mapped_device_counter(monkeypatch):
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    meter = NvmlMeter(1)
    assert fake.opened == [3] and meter.mode == "counter"
    with meter.window() as w:
        pass
    assert w.result.source == "nvml" and w.result.gpu_j == pytest.approx(0.5)


def test_nvml_meter_maps_uuids(monkeypatch):
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-cccc")
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    meter = NvmlMeter(0)
    assert meter._handle == 2


def test_nvml_meter_polls_power_without_an_energy_counter(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy=False))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    meter = NvmlMeter(0, poll_interval_s=0.005)
    assert meter.mode == "polling"
    with meter.window() as w:
        time.sleep(0.1)
    assert w.result.gpu_j == pytest.approx(200.0 * w.result.time_s, rel=1e-9)


def test_nvml_meter_without_energy_or_power_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_pynvml(energy=False, power=False))
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(MeterUnavailableError, match="neither energy nor power"):
        NvmlMeter(0)


def test_nvml_meter_without_pynvml_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(MeterUnavailableError, match="nvidia-ml-py"):
        NvmlMeter(0)


def test_nvml_init_failure_is_unavailable(monkeypatch):
    fake = _fake_pynvml()

    def fail():
        raise _NVMLError("Driver Not Loaded")

    fake.nvmlInit = fail
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with pytest.raises(MeterUnavailableError, match="Driver Not Loaded"):
        NvmlMeter(0)


# ---------------------------------------------------------------- Zeus


def test_zeus_meter_sums_domains(monkeypatch):
    class Monitor:
        def __init__(self, gpu_indices=None, cpu_indices=None):
            self.windows = {}

        def begin_window(self, name, sync_execution=True):
            self.windows[name] = True

        def end_window(self, name, sync_execution=True):
            del self.windows[name]
            return types.SimpleNamespace(
                gpu_energy={0: 2.0, 1: 3.0}, cpu_energy={0: 1.0}, dram_energy=None
            )

    monkeypatch.setitem(sys.modules, "zeus", types.ModuleType("zeus"))
    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = Monitor
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    with ZeusMeter().window() as w:
        pass
    assert (w.result.gpu_j, w.result.cpu_j, w.result.dram_j) == (5.0, 1.0, None)
    assert w.result.source == "zeus"


def test_zeus_missing_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    with pytest.raises(MeterUnavailableError, match="pip install zeus"):
        ZeusMeter()


def test_zeus_without_devices_is_unavailable(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("no GPU")

    monitor = types.ModuleType("zeus.monitor")
    monitor.ZeusMonitor = broken
    monkeypatch.setitem(sys.modules, "zeus", types.ModuleType("zeus"))
    monkeypatch.setitem(sys.modules, "zeus.monitor", monitor)
    with pytest.raises(MeterUnavailableError, match="no GPU"):
        ZeusMeter()


# ---------------------------------------------------------------- fallback


def test_auto_meter_degrades_to_estimated_on_this_machine(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setitem(sys.modules, "zeus.monitor", None)
    monkeypatch.setattr(fallback, "RaplMeter", functools.partial(RaplMeter, "/nonexistent"))
    caplog.set_level("INFO", logger="mutnas_torch.energy.fallback")
    for device in ("cpu", "cuda:0"):
        meter = auto_meter(device)
        assert isinstance(meter, EstimatedMeter) and meter.source == "estimated"
        assert "zeus" in meter.reason
    assert "rapl unavailable" in caplog.text and "nvml unavailable" in caplog.text
    with meter.window() as w:
        pass
    assert w.result.source == "estimated" and w.result.gpu_j is not None


def test_auto_meter_uses_a_readable_rapl(sysfs, monkeypatch):
    monkeypatch.setattr(fallback, "RaplMeter", functools.partial(RaplMeter, sysfs["root"]))
    assert auto_meter("cpu").source == "rapl"


def test_estimated_meter_uses_cpu_load_and_costs():
    from mutnas_torch.energy import AnalyticPredictor, Costs

    meter = EstimatedMeter("cpu", predictor=AnalyticPredictor("cpu"))
    assert meter.idle_power_w() == pytest.approx(6.5)
    with meter.window() as idle:
        time.sleep(0.05)
    assert idle.result.cpu_j == pytest.approx(6.5 * idle.result.time_s, rel=0.2)
    costs = Costs(flops=10**9, bytes_read=10**6, bytes_written=10**6, launches=10)
    busy = EstimatedMeter("cpu", predictor=AnalyticPredictor("cpu"), costs=costs)
    with busy.window() as w:
        time.sleep(0.02)
    prediction = AnalyticPredictor("cpu").predict(costs)
    power = prediction.energy_j / prediction.time_s
    assert w.result.cpu_j == pytest.approx(power * w.result.time_s)
