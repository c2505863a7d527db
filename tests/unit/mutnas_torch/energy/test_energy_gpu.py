"""GPU checks: NVML energy is read and used by the objectives (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch

from mutnas_torch.energy import (
    NvmlMeter,
    auto_meter,
    count_costs,
    energy_per_inference_j,
    measure,
    reference_networks,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.fixture(scope="module")
def meter():
    import pynvml  # noqa: F401  (with CUDA a missing nvidia-ml-py fails: it is in [test])

    meter = NvmlMeter(0)
    yield meter
    meter.close()


def test_nvml_measures_a_matmul_loop(meter):
    a = torch.randn(4096, 4096, device="cuda")
    result = measure(lambda: a @ a, meter, min_window_s=1.0, repeats=2, idle_s=0.5)
    assert result.source == "nvml" and result.gpu_j > 0
    assert result.n_calls * result.time_s >= 1.0
    assert result.idle_power_w is not None and result.dynamic_j > 0


def test_auto_meter_picks_nvml_and_objectives_are_measured(meter):
    assert auto_meter("cuda").source == "nvml"
    net = reference_networks()[3]
    model = net.build().cuda()
    x = torch.randn(net.input_shape(64), device="cuda")
    value, source = energy_per_inference_j(model, x, meter=meter, min_window_s=1.0, repeats=2)
    assert source == "nvml" and value > 0


def test_counting_a_cuda_model_stays_on_meta():
    model = reference_networks()[0].build().cuda()
    before = torch.cuda.memory_allocated()
    costs = count_costs(model, torch.zeros(8, 3, 32, 32, device="cuda"), cache=False)
    assert costs.flops > 0 and torch.cuda.memory_allocated() == before
