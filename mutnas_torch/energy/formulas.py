"""FLOP formulas that fix or extend :data:`torch.utils.flop_counter.flop_registry`.

Measured traps of the upstream registry (torch 2.11 to 2.14):

* ``aten.convolution_backward`` counts the weight gradient of a grouped convolution as
  if it were dense, ``groups`` times too many FLOPs (a depthwise conv's backward came out
  at 64x its forward); :func:`_conv_backward_flop` divides that term by ``groups``;
* the CPU flash-attention kernels have no formula, so attention on CPU counts 0; here
  they count like the other SDPA kernels.

Formulas are written for the registry's hook (arguments with tensors turned into shapes,
plus ``out_shape``), so they also plug into ``FlopCounterMode(custom_mapping=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import flop_counter

__all__ = ["FLOP_FORMULA_FIXES", "FLOP_REGISTRY", "corrected_flop_counter"]

aten = torch.ops.aten


def _conv_backward_flop(
    grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
    _output_padding, groups, output_mask, out_shape=None, **kwargs,
) -> int:  # fmt: skip
    """Convolution backward, with the weight gradient's FLOPs divided by ``groups``."""

    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    count = flop_counter.conv_flop_count
    flops = 0
    if output_mask[0]:
        flops += count(list(grad_out_shape), list(w_shape), list(out_shape[0]), not transposed)
    if output_mask[1]:
        grad_w = t(out_shape[1])
        pair = (t(grad_out_shape), t(x_shape)) if transposed else (t(x_shape), t(grad_out_shape))
        flops += count(*pair, grad_w, False) // max(int(groups), 1)
    return flops


def _attention_flops(q_shape, k_shape, v_shape, per_dim: Callable[[int, int], int]) -> int:
    batch, heads, len_q, dim_q = q_shape[0], q_shape[1], q_shape[-2], q_shape[-1]
    return 2 * batch * heads * len_q * k_shape[-2] * per_dim(dim_q, v_shape[-1])


def _cpu_flash_forward_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return _attention_flops(query, key, value, lambda dq, dv: dq + dv)


def _cpu_flash_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    # recompute scores (dq), grad of scores and of v (2 dv), grad of q and k (2 dq)
    return _attention_flops(query, key, value, lambda dq, dv: 3 * dq + 2 * dv)


def _wrap(formula: Callable[..., int]) -> Callable[..., int]:
    return flop_counter.shape_wrapper(formula)


FLOP_FORMULA_FIXES: dict[Any, Callable[..., int]] = {
    aten.convolution_backward: _wrap(_conv_backward_flop),
    aten._scaled_dot_product_flash_attention_for_cpu: _wrap(_cpu_flash_forward_flop),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _wrap(_cpu_flash_backward_flop),
}
"""Formulas that replace or extend :data:`torch.utils.flop_counter.flop_registry`.

Keys are ``OpOverloadPacket``; values take the op's arguments (tensors already turned
into shapes) and ``out_val``, as the registry's formulas do."""

FLOP_REGISTRY: dict[Any, Callable[..., int]] = {**flop_counter.flop_registry, **FLOP_FORMULA_FIXES}


def corrected_flop_counter() -> flop_counter.FlopCounterMode:
    """A :class:`~torch.utils.flop_counter.FlopCounterMode` with :data:`FLOP_FORMULA_FIXES`.

    Example:
        >>> conv = torch.nn.Conv2d(8, 8, 3, groups=8, device="meta")
        >>> x = torch.empty(1, 8, 6, 6, device="meta", requires_grad=True)
        >>> with corrected_flop_counter() as counter:
        ...     conv(x).sum().backward()
        >>> counter.get_total_flops()  # forward, grad input, grad weight: 2304 each
        6912
    """
    fixes = {k: getattr(v, "__wrapped__", v) for k, v in FLOP_FORMULA_FIXES.items()}
    return flop_counter.FlopCounterMode(display=False, custom_mapping=fixes)
