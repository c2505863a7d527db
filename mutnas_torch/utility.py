"""Neuron utilities for the core's objective: magnitude, BatchNorm scale, activation×gradient.

Each utility is a function ``vertex -> array or None`` (one value per output neuron). The
core *sums* the values of every vertex that shares a channel (a residual stream's convs
and norms), so channels can be compared across a whole alignment group.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

import mutnas as mn
from mutnas_torch.bindings import get_tensor

__all__ = ["TaylorUtility", "magnitude", "utility_function"]

_WEIGHTED = ("linear", "conv", "grouped", "depthwise", "embedding")


def magnitude(mm, p: int = 1) -> Callable[[mn.Vertex], np.ndarray | None]:
    """L1 (p=1) or L2 (p=2) norm of each output neuron's weights.

    Example:
        >>> import torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.5], [2.0, 0.0]]))
        >>> mm = mt.mutable(net, torch.randn(1, 2))
        >>> magnitude(mm)(mm.graph["0"]).tolist()
        [2.0, 0.5, 2.0]
    """

    def utility(v: mn.Vertex) -> np.ndarray | None:
        binding = mm.bindings.get(v.name)
        if binding is not None and binding.kind == "recurrent":
            return _unit_norms(mm, binding, p)
        if binding is None or binding.kind not in _WEIGHTED or not binding.outputs:
            return None
        axis = binding.outputs[0]
        weight = get_tensor(mm.module, axis.target).detach()
        return _norms(weight, axis.axis, p).double().cpu().numpy()

    return utility


def _unit_norms(mm, binding, p: int) -> np.ndarray:
    """Recurrent units: the p-norm of each unit's rows in every gate, layer and direction."""
    total = None
    for axis in binding.outputs:
        if axis.axis != 0 or not axis.target.rpartition(".")[2].startswith("weight"):
            continue  # biases, and the columns that read the units
        weight = get_tensor(mm.module, axis.target).detach()
        rows = _norms(weight, 0, p).double().pow(p).reshape(axis.outer, -1, axis.inner)
        part = rows.sum(dim=(0, 2))
        total = part if total is None else total + part
    return total.pow(1.0 / p).cpu().numpy()


_CHUNK = 1 << 22  # elements per temporary: abs() of a whole big Linear costs more than the sum


def _norms(weight: torch.Tensor, axis: int, p: int) -> torch.Tensor:
    """p-norm of each slice along ``axis``, in chunks of neurons (same values, less memory)."""
    dims = [d for d in range(weight.dim()) if d != axis]
    if not dims:
        return weight.abs()
    per_neuron = max(1, weight.numel() // max(1, weight.shape[axis]))
    step = max(1, _CHUNK // per_neuron)
    parts = []
    for chunk in weight.split(step, dim=axis):
        if p == 1:  # one pass less over the weights than the general formula
            parts.append(chunk.abs().sum(dim=dims))
        else:
            parts.append(chunk.abs().pow(p).sum(dim=dims).pow(1.0 / p))
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def bn_scale(mm) -> Callable[[mn.Vertex], np.ndarray | None]:
    """|gamma| of BatchNorm/GroupNorm layers (Liu et al., network slimming)."""

    def utility(v: mn.Vertex) -> np.ndarray | None:
        binding = mm.bindings.get(v.name)
        if binding is None or binding.kind not in ("batchnorm", "groupnorm"):
            return None
        module = mm.module.get_submodule(binding.module)
        if getattr(module, "weight", None) is None:
            return None
        return module.weight.detach().abs().double().cpu().numpy()

    return utility


def random_utility(seed: int = 0) -> Callable[[mn.Vertex], np.ndarray | None]:
    """Uniform random values (a baseline for comparing utilities)."""
    rng = np.random.default_rng(seed)
    cache: dict[str, np.ndarray] = {}

    def utility(v: mn.Vertex) -> np.ndarray | None:
        if not v.is_source:
            return None
        if v.name not in cache or len(cache[v.name]) != v.nout:
            cache[v.name] = rng.random(v.nout)
        return cache[v.name]

    return utility


class TaylorUtility:
    """First-order Taylor utility: |activation × gradient| per channel (Molchanov et al.).

    Attach it, run forward and backward passes as in training, then use it as a utility.
    Values are averaged over batch and spatial positions and smoothed with an exponential
    moving average (``momentum``).

    Example:
        >>> import torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> mm = mt.mutable(net, torch.randn(2, 3))
        >>> taylor = TaylorUtility(mm)
        >>> mm(torch.randn(8, 3)).sum().backward()
        >>> taylor(mm.graph["0"]).shape
        (4,)
        >>> taylor.detach()
    """

    def __init__(self, mm, *, momentum: float = 0.9):
        self.mm = mm
        self.momentum = momentum
        self.values: dict[str, torch.Tensor] = {}
        self._handles = []
        for name, binding in mm.bindings.items():
            if binding.module is None or binding.kind not in (*_WEIGHTED, "batchnorm"):
                continue
            module = mm.module.get_submodule(binding.module)
            dim = 1 if binding.kind != "linear" and binding.kind != "embedding" else -1
            self._handles.append(module.register_forward_hook(self._hook(name, dim)))

    def _hook(self, name: str, dim: int):
        def forward_hook(module: nn.Module, inputs, output):
            if not torch.is_tensor(output) or not output.requires_grad:
                return

            def grad_hook(grad: torch.Tensor):
                score = (output.detach() * grad).abs()
                channel = dim % score.dim()
                reduce = [d for d in range(score.dim()) if d != channel]
                value = score.mean(dim=reduce) if reduce else score
                old = self.values.get(name)
                if old is not None and old.shape == value.shape:
                    value = self.momentum * old + (1 - self.momentum) * value
                self.values[name] = value.detach()

            output.register_hook(grad_hook)

        return forward_hook

    def __call__(self, v: mn.Vertex) -> np.ndarray | None:
        value = self.values.get(v.name)
        if value is None or len(value) != v.nout:
            return None
        return value.double().cpu().numpy()

    def reset(self) -> None:
        """Forget accumulated values (after a mutation changed the layers)."""
        self.values.clear()

    def detach(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def utility_function(mm, name: str) -> Callable[[mn.Vertex], np.ndarray | None]:
    """A utility by name: ``"l1"``, ``"l2"``, ``"bn"``, ``"random"``, ``"taylor"``."""
    if name == "l1":
        return magnitude(mm, 1)
    if name == "l2":
        return magnitude(mm, 2)
    if name == "bn":
        return bn_scale(mm)
    if name == "random":
        return random_utility()
    if name == "taylor":
        taylor = getattr(mm, "taylor", None)
        if taylor is None:
            raise ValueError(
                "utility 'taylor' needs mm.taylor = TaylorUtility(mm) and a backward pass"
            )
        return taylor
    raise ValueError(f"unknown utility {name!r}; use 'l1', 'l2', 'bn', 'random' or 'taylor'")
