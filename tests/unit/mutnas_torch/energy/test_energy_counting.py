"""Cost counting on meta: FLOPs vs FlopCounterMode, the two known traps, bytes, hashing."""

from __future__ import annotations

import time

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from mutnas_torch.energy import (
    CostCountingError,
    architecture_hash,
    clear_cost_cache,
    corrected_flop_counter,
    count_costs,
    reference_networks,
)


def _flop_counter_mode(model: nn.Module, x: torch.Tensor, *, training: bool) -> int:
    with FlopCounterMode(display=False) as counter:
        if training:
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)
    return counter.get_total_flops()


class _Scale(nn.Module):
    """A parameter before the first conv, so the conv's input needs a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.scale


_ZOO = {
    "resnet18": torchvision.models.resnet18,
    "vgg11": torchvision.models.vgg11,
    **{
        net.name: net.build
        for i, net in enumerate(reference_networks())
        if i in (2, 10, 11, 12, 13, 16)
    },
}


@pytest.mark.parametrize("make", _ZOO.values(), ids=_ZOO.keys())
def test_inference_flops_match_flop_counter_mode_on_conv_nets(make):
    model = make().eval()
    size = 112 if isinstance(model, torchvision.models.VGG | torchvision.models.ResNet) else 64
    x = torch.randn(2, 3, size, size)
    expected = _flop_counter_mode(model, x, training=False)
    assert count_costs(model, x, cache=False).flops == pytest.approx(expected, rel=0.01)


def test_training_flops_match_flop_counter_mode_on_dense_convs():
    model = reference_networks()[3].build()  # plain, groups=1: upstream formulas are right
    x = torch.randn(2, 3, 32, 32, device="meta")
    expected = _flop_counter_mode(model.to("meta"), x, training=True)
    assert count_costs(model, x, training=True).flops == pytest.approx(expected, rel=0.01)


def test_depthwise_training_is_three_forwards_not_groups_times():
    model = nn.Sequential(_Scale(), nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False))
    x = torch.randn(4, 64, 16, 16)
    forward = count_costs(model, x).flops
    training = count_costs(model, x, training=True).flops
    assert training == pytest.approx(3 * forward, rel=0.01)
    # the trap: upstream counts the weight gradient as a dense conv (about groups x)
    assert _flop_counter_mode(model, x, training=True) > 20 * forward


def test_corrected_flop_counter_fixes_grouped_backward():
    conv = nn.Conv2d(32, 32, 3, groups=8, device="meta")
    x = torch.empty(2, 32, 8, 8, device="meta", requires_grad=True)
    with corrected_flop_counter() as counter:
        conv(x).sum().backward()
    forward = 2 * 2 * 6 * 6 * 32 * 4 * 9
    assert counter.get_total_flops() == 3 * forward


def _attention_flops(batch: int, heads: int, length: int, dim: int) -> int:
    return 2 * batch * heads * length * length * 2 * dim


def test_attention_is_counted_on_cpu():
    mha = nn.MultiheadAttention(64, 4, batch_first=True)

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    x = torch.randn(2, 16, 64)
    projections = 4 * 2 * 32 * 64 * 64  # q, k, v and out: (batch * length) x 64 x 64
    expected = projections + _attention_flops(2, 4, 16, 16)
    assert count_costs(Wrapper(), x).flops == expected
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True).eval()
    assert _flop_counter_mode(layer, x, training=False) == 0  # the trap: CPU fast path
    costs = count_costs(layer, x)
    assert costs.flops >= expected + 2 * 2 * 32 * 64 * 128
    assert count_costs(layer, x, training=True).flops > 2 * costs.flops


def test_cpu_flash_attention_formulas():
    q = torch.randn(2, 4, 32, 16, requires_grad=True)
    with corrected_flop_counter() as counter:
        F.scaled_dot_product_attention(q, q, q)
    assert counter.get_total_flops() == _attention_flops(2, 4, 32, 16)
    out = F.scaled_dot_product_attention(q, q, q)
    with corrected_flop_counter() as counter:
        out.sum().backward()
    assert counter.get_total_flops() == 2 * 2 * 4 * 32 * 32 * 5 * 16


def test_bytes_and_launches_of_a_linear_layer():
    model = nn.Linear(8, 4)
    costs = count_costs(model, torch.zeros(3, 8))
    assert costs.launches == 1  # one addmm; the weight transpose is a view
    assert costs.bytes_read == 4 * (3 * 8 + 4 * 8 + 4)
    assert costs.bytes_written == 4 * 3 * 4
    assert list(costs.by_op) == ["aten.addmm"]


def test_model_is_left_untouched():
    model = torchvision.models.resnet18().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_costs(model, torch.randn(2, 3, 64, 64), training=True, cache=False)
    assert model.training
    assert all(p.grad is None and p.device.type == "cpu" for p in model.parameters())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_cache_returns_equal_costs_and_separates_phases():
    clear_cost_cache()
    model = reference_networks()[0].build()
    x = torch.zeros(1, 3, 32, 32)
    first = count_costs(model, x)
    again = count_costs(reference_networks()[0].build(), x)
    assert first == again and first.by_op == again.by_op and first.by_op is not again.by_op
    assert count_costs(model, x, training=True).flops > first.flops


def test_architecture_hash_sees_shapes_hyperparameters_and_fx_edges():
    x = torch.zeros(1, 3, 8, 8)
    base = architecture_hash(nn.Conv2d(3, 4, 3), x)
    assert base != architecture_hash(nn.Conv2d(3, 4, 3, stride=2), x)
    assert base != architecture_hash(nn.Conv2d(3, 4, 3), torch.zeros(2, 3, 8, 8))
    assert base != architecture_hash(nn.Conv2d(3, 4, 3).half(), x)

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(x) + x

    a = torch.fx.symbolic_trace(Twice())
    b = torch.fx.symbolic_trace(Twice())
    add = next(n for n in b.graph.nodes if n.op == "call_function")
    add.args = (add.args[0], add.args[0])  # conv(x) + conv(x): same layers, other edges
    b.recompile()
    y = torch.zeros(1, 4, 8, 8)
    assert architecture_hash(a, y) == architecture_hash(torch.fx.symbolic_trace(Twice()), y)
    assert architecture_hash(a, y) != architecture_hash(b, y)


def test_value_dependent_models_raise_cost_counting_error():
    class Reads(nn.Module):
        def forward(self, x):
            return x * float(x.sum().item())

    with pytest.raises(CostCountingError, match=r"meta device.*\.item\(\)"):
        count_costs(Reads(), torch.zeros(2))


def test_resnet18_counting_speed_is_recorded():
    """Benchmark figure, not an assert: 45-50 ms here (2 CPU cores, torch 2.14.1).

    The first meta run of a process also imports torch's meta kernels (about 2 s),
    which is why a warm-up precedes the timing.
    """
    model = torchvision.models.resnet18()
    x = torch.zeros(1, 3, 224, 224)
    count_costs(model, x, cache=False)
    start = time.perf_counter()
    costs = count_costs(model, x, cache=False)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    print(f"count_costs(resnet18, 1x3x224x224): {elapsed_ms:.1f} ms")
    assert costs.flops == pytest.approx(3.628e9, rel=0.01)
