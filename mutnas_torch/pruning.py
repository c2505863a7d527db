"""Pruning a whole model: a fraction of every layer, or down to a FLOP budget."""

from __future__ import annotations

import copy
import math

import mutnas as mn
from mutnas.advanced import frozen_vertices
from mutnas_torch.errors import MutnasTorchError

__all__ = ["count_flops", "prune_to", "shrink_request"]


def shrink_request(mm, fraction: float) -> dict[str, int]:
    """``{layer: -n}`` removing ``fraction`` of every layer whose size may change."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    frozen = frozen_vertices(mm.graph)
    request = {}
    for name in mm.layers():
        if name in frozen:
            continue
        n = mm.graph[name].nout
        drop = min(n - 1, math.floor(n * fraction))
        if drop > 0:
            request[name] = -drop
    return request


def prune_to(mm, *, fraction=None, utility="l1", flops=None, solver=None) -> mn.Change:
    """Shrink every mutable layer by ``fraction`` (relaxed), or bisect the fraction for ``flops``."""
    if (fraction is None) == (flops is None):
        raise ValueError("pass exactly one of fraction= or flops=")
    if flops is not None:
        fraction = _fraction_for_flops(mm, flops, utility, solver)
    request = shrink_request(mm, fraction)
    if not request:
        return mn.Change("resize")
    return mm.resize(request, relaxed=True, utility=utility, solver=solver)


def count_flops(mm) -> int:
    """FLOPs of one forward pass on the example inputs (``torch.utils.flop_counter``)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        mm.module(*mm.example_inputs)
    return int(counter.get_total_flops())


def _fraction_for_flops(mm, budget: float, utility, solver) -> float:
    if count_flops(mm) <= budget:
        return 0.0
    lo, hi = 0.0, 0.95
    trial = copy.deepcopy(mm)
    prune_to(trial, fraction=hi, utility=utility, solver=solver)
    if count_flops(trial) > budget:
        raise MutnasTorchError(
            f"even a 95 % prune leaves {count_flops(trial):,} FLOPs > budget {budget:,.0f}; "
            f"the frozen layers alone may exceed it"
        )
    for _ in range(12):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(mm)
        prune_to(trial, fraction=mid, utility=utility, solver=solver)
        if count_flops(trial) <= budget:
            hi = mid
        else:
            lo = mid
        if hi - lo < 0.005:
            break
    return hi
