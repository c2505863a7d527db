"""How vertices map onto parameters: the declarative half of weight surgery.

A :class:`ParamAxis` says "axis ``axis`` of tensor ``target`` follows the channels of a
vertex", possibly expanded: when a channel dimension was merged with others (a flatten
after a conv, LSTM gate blocks), channel ``c`` of ``C`` occupies positions
``o * C * inner + c * inner + i`` for every ``o < outer`` and ``i < inner``.

Applying an index map (old index per new channel, -1 for new) to such an axis selects the
kept positions in place and initialises the new ones according to ``init``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["Binding", "ParamAxis", "apply_axis", "expand_index", "get_tensor", "set_tensor"]


@dataclass
class ParamAxis:
    """One axis of one parameter or buffer that follows a vertex's channels.

    Attributes:
        target: qualified name in the model (``"layer1.0.conv1.weight"``).
        axis: the tensor axis.
        outer / inner: expansion of each channel along the axis (see module docstring).
        init: value of new entries: ``"zeros"``, ``"ones"``, ``"normal"`` (std of the
            existing entries), ``"mean"`` (mean of the existing entries along the axis).
    """

    target: str
    axis: int
    outer: int = 1
    inner: int = 1
    init: str = "zeros"


@dataclass
class Binding:
    """Everything surgery must touch when a vertex changes.

    Attributes:
        vertex: the vertex name.
        module: qualified name of the module behind the vertex, if any.
        kind: a tag used for attribute synchronisation (``"conv"``, ``"linear"``...).
        outputs: parameter axes that follow the vertex's output map.
        inputs: per input edge, the parameter axes that follow that edge's input map.
        node: name of the fx node that computes the vertex (None for pins/constants).
        extra: rule-specific facts used to keep module attributes true (e.g. which entry
            of a LayerNorm's ``normalized_shape`` is the channel).
    """

    vertex: str
    module: str | None = None
    kind: str = "none"
    outputs: list[ParamAxis] = field(default_factory=list)
    inputs: list[list[ParamAxis]] = field(default_factory=list)
    node: str | None = None
    extra: dict = field(default_factory=dict)


def expand_index(index: np.ndarray, n_old: int, outer: int = 1, inner: int = 1) -> np.ndarray:
    """Positions (old position, or -1) along an expanded axis for a channel index map.

    Example:
        >>> expand_index(np.array([1, -1]), n_old=2, outer=1, inner=2).tolist()
        [2, 3, -1, -1]
        >>> expand_index(np.array([1]), n_old=2, outer=2, inner=1).tolist()
        [1, 3]
    """
    index = np.asarray(index, dtype=np.int64)
    o = np.arange(outer)[:, None, None]
    c = index[None, :, None]
    i = np.arange(inner)[None, None, :]
    positions = o * n_old * inner + c * inner + i
    positions = np.where(c >= 0, positions, -1)
    return positions.reshape(-1)


def get_tensor(model: nn.Module, target: str) -> torch.Tensor:
    """The parameter or buffer called ``target`` in ``model``."""
    owner, _, name = target.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    return getattr(module, name)


def set_tensor(model: nn.Module, target: str, value: torch.Tensor) -> None:
    """Replace parameter or buffer ``target``, keeping its kind (parameter or buffer)."""
    owner, _, name = target.rpartition(".")
    module = model.get_submodule(owner) if owner else model
    old = getattr(module, name)
    if isinstance(old, nn.Parameter):
        setattr(module, name, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        module.register_buffer(
            name, value, persistent=name not in module._non_persistent_buffers_set
        )


def apply_axis(
    tensor: torch.Tensor,
    axis: int,
    positions: np.ndarray,
    init: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Select ``positions`` along ``axis`` (-1: a new entry initialised by ``init``).

    Returns ``tensor`` itself when ``positions`` is the identity; otherwise one
    ``index_select`` for the kept entries, and values drawn only for the new ones.
    """
    positions = np.asarray(positions, dtype=np.int64)
    n_old = tensor.shape[axis]
    if len(positions) == n_old and np.array_equal(positions, np.arange(n_old)):
        return tensor
    kept = positions >= 0
    with torch.no_grad():
        if kept.all():
            return tensor.index_select(axis, torch.as_tensor(positions, device=tensor.device))
        shape = list(tensor.shape)
        shape[axis] = int((~kept).sum())
        fresh = _new_entries(tensor, axis, shape, init, generator)
        if not kept.any():
            return fresh
        shape[axis] = len(positions)
        out = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
        src = torch.as_tensor(positions[kept], device=tensor.device)
        out.index_copy_(
            axis,
            torch.as_tensor(np.flatnonzero(kept), device=tensor.device),
            tensor.index_select(axis, src),
        )
        out.index_copy_(axis, torch.as_tensor(np.flatnonzero(~kept), device=tensor.device), fresh)
    return out


def _new_entries(tensor, axis, shape, init, generator) -> torch.Tensor:
    if init == "zeros" or tensor.numel() == 0:
        return tensor.new_zeros(shape)
    if init == "ones":
        return tensor.new_ones(shape)
    if init == "mean":
        return tensor.mean(dim=axis, keepdim=True).expand(shape).clone()
    if init == "normal":
        std = float(tensor.float().std()) if tensor.numel() > 1 else 0.0
        if not math.isfinite(std) or std == 0.0:
            std = 1.0 / math.sqrt(max(1, tensor[0].numel() if tensor.dim() else 1))
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        return (noise * std).to(dtype=tensor.dtype, device=tensor.device)
    raise ValueError(f"unknown init {init!r} for new entries")
