"""Count a model's FLOPs, bytes moved and kernel launches per aten op, on ``meta``.

The model is copied onto the ``meta`` device (no real weights are copied or touched)
and run once under a dispatch mode that records, for every aten op that does work:

* FLOPs, from :data:`torch.utils.flop_counter.flop_registry` (2 FLOPs per
  multiply-add) with the fixes of :mod:`mutnas_torch.energy.formulas` (grouped-conv
  backward, CPU flash attention);
* bytes read (tensor inputs) and written (tensor outputs), each tensor counted once
  per op and never more than its storage;
* one launch per op; views and metadata ops (``view``, ``t``, ``empty``...) are free.

Counting on ``meta`` is also what makes attention count on any machine: there
``scaled_dot_product_attention`` runs its math path, whose matmuls are counted.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from mutnas_torch.energy.errors import CostCountingError
from mutnas_torch.energy.formulas import FLOP_REGISTRY

__all__ = ["Costs", "OpCost", "architecture_hash", "clear_cost_cache", "count_costs"]

aten = torch.ops.aten
_MAX_CACHE = 4096


@dataclasses.dataclass(frozen=True)
class OpCost:
    """Costs of every call of one aten op (e.g. ``aten.convolution``) in a run."""

    n_calls: int
    flops: int
    bytes_read: int
    bytes_written: int


@dataclasses.dataclass(frozen=True)
class Costs:
    """Hardware-independent costs of one forward (or forward + backward) pass.

    Attributes:
        flops: floating-point operations, 2 per multiply-add.
        bytes_read: bytes of tensor inputs of every op.
        bytes_written: bytes of tensor outputs of every op.
        launches: ops that do work (a proxy for kernel launches).
        training: counted forward + backward (else an inference forward).
        by_op: the same, per aten op name (treat as read-only).

    Example:
        >>> a = Costs(flops=10, bytes_read=4, bytes_written=4, launches=1)
        >>> (a + a).flops, a.bytes_moved
        (20, 8)
    """

    flops: int
    bytes_read: int
    bytes_written: int
    launches: int
    training: bool = False
    by_op: dict[str, OpCost] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def bytes_moved(self) -> int:
        """Bytes read plus bytes written."""
        return self.bytes_read + self.bytes_written

    def __add__(self, other: Costs) -> Costs:
        by_op = dict(self.by_op)
        for name, cost in other.by_op.items():
            old = by_op.get(name, OpCost(0, 0, 0, 0))
            by_op[name] = OpCost(
                *(a + b for a, b in zip(_astuple(old), _astuple(cost), strict=True))
            )
        return Costs(
            self.flops + other.flops,
            self.bytes_read + other.bytes_read,
            self.bytes_written + other.bytes_written,
            self.launches + other.launches,
            self.training or other.training,
            by_op,
        )


def _astuple(cost: OpCost) -> tuple[int, int, int, int]:
    return (cost.n_calls, cost.flops, cost.bytes_read, cost.bytes_written)


# ---------------------------------------------------------------- dispatch mode

_QUERY_OPS = {
    aten.size.default, aten.sym_size.default, aten.stride.default, aten.sym_stride.default,
    aten.storage_offset.default, aten.sym_storage_offset.default, aten.numel.default,
    aten.sym_numel.default, aten.dim.default, aten.is_contiguous.default,
    aten.is_contiguous.memory_format, aten.is_strides_like_format.default,
    aten.is_non_overlapping_and_dense.default, torch.ops.prim.layout.default,
    torch.ops.prim.device.default,
}  # fmt: skip
_FREE_PACKETS = {
    aten.empty, aten.empty_like, aten.empty_strided, aten.new_empty, aten.new_empty_strided,
    aten._unsafe_view, aten._reshape_alias, aten.lift_fresh, aten.detach,
}  # fmt: skip
_FREE_CACHE: dict[Any, bool] = {}


def _is_free(func: Any) -> bool:
    """Views and metadata ops: no kernel, no bytes."""
    free = _FREE_CACHE.get(func)
    if free is None:
        returns = func._schema.returns
        free = func.overloadpacket in _FREE_PACKETS or any(
            r.alias_info is not None and not r.alias_info.is_write for r in returns
        )
        _FREE_CACHE[func] = free
    return free


def _tensor_bytes(tree: Any) -> int:
    seen: set[int] = set()
    total = 0
    for leaf in tree_flatten(tree)[0]:
        if isinstance(leaf, torch.Tensor) and id(leaf) not in seen:
            seen.add(id(leaf))
            size = leaf.numel() * leaf.element_size()
            total += min(size, leaf.untyped_storage().nbytes())
    return total


class _CostMode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, list[int]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _QUERY_OPS:
            return func(*args, **kwargs)
        packet = func.overloadpacket
        if packet not in FLOP_REGISTRY:
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if _is_free(func):
            return out
        record = self.records.setdefault(str(packet), [0, 0, 0, 0])
        record[0] += 1
        formula = FLOP_REGISTRY.get(packet)
        if formula is not None:
            record[1] += int(formula(*args, **kwargs, out_val=out))
        record[2] += _tensor_bytes((args, kwargs))
        record[3] += _tensor_bytes(out)
        return out


def _costs_from(records: Mapping[str, list[int]], training: bool) -> Costs:
    by_op = {name: OpCost(*values) for name, values in sorted(records.items())}
    return Costs(
        flops=sum(c.flops for c in by_op.values()),
        bytes_read=sum(c.bytes_read for c in by_op.values()),
        bytes_written=sum(c.bytes_written for c in by_op.values()),
        launches=sum(c.n_calls for c in by_op.values()),
        training=training,
        by_op=by_op,
    )


# ---------------------------------------------------------------- meta copy and run


def _to_meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


def _meta_copy(model: torch.nn.Module) -> torch.nn.Module:
    """Deep copy of the module tree whose parameters and buffers live on ``meta``."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for param in module._parameters.values():
            if param is not None and id(param) not in memo:
                meta = torch.nn.Parameter(_to_meta(param), requires_grad=param.requires_grad)
                memo[id(param)] = meta
        for tensor in list(module._buffers.values()) + [
            v for v in vars(module).values() if isinstance(v, torch.Tensor)
        ]:
            if tensor is not None and id(tensor) not in memo:
                memo[id(tensor)] = _to_meta(tensor)
    return copy.deepcopy(model, memo)


def _loss(output: Any) -> torch.Tensor | None:
    leaves = [
        leaf
        for leaf in tree_flatten(output)[0]
        if isinstance(leaf, torch.Tensor) and leaf.requires_grad
    ]
    if not leaves:
        return None
    loss = leaves[0].sum()
    for leaf in leaves[1:]:
        loss = loss + leaf.sum()
    return loss


def _run_counted(model: torch.nn.Module, example_inputs: Any, training: bool) -> Costs:
    meta_model = _meta_copy(model)
    meta_model.train(training)
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    meta_args = tree_map(lambda x: _to_meta(x) if isinstance(x, torch.Tensor) else x, args)
    mode = _CostMode()
    with torch.set_grad_enabled(training), mode:
        output = meta_model(*meta_args)
        loss = _loss(output) if training else None
        if loss is not None:
            loss.backward()
    return _costs_from(mode.records, training)


# ---------------------------------------------------------------- hashing and cache


def _describe_inputs(example_inputs: Any) -> str:
    leaves, spec = tree_flatten(example_inputs)
    parts = [
        f"T{tuple(x.shape)}:{x.dtype}" if isinstance(x, torch.Tensor) else repr(x) for x in leaves
    ]
    return f"{spec}|{';'.join(parts)}"


def _describe_module(name: str, module: torch.nn.Module) -> str:
    cls = type(module)
    if isinstance(module, torch.fx.GraphModule):
        code = module.code
    else:
        forward = getattr(cls.forward, "__code__", None)
        code = hashlib.sha256(forward.co_code).hexdigest()[:16] if forward else ""
    tensors = [
        f"{n}:{tuple(t.shape)}:{t.dtype}:{getattr(t, 'requires_grad', False)}"
        for n, t in list(module._parameters.items()) + list(module._buffers.items())
        if t is not None
    ]
    return f"{name}|{cls.__module__}.{cls.__qualname__}|{module.extra_repr()}|{code}|{tensors}"


def architecture_hash(model: torch.nn.Module, example_inputs: Any) -> str:
    """A hex digest that identifies what :func:`count_costs` depends on.

    It covers, for every submodule (in registration order, shared ones at each use):
    its qualified name, class, ``extra_repr()`` (kernel, stride, groups, eps...), the
    bytecode of its class's ``forward`` (for a ``torch.fx.GraphModule``, its generated
    ``code``, so two graphs with the same layers but different edges differ), and the
    name, shape, dtype and ``requires_grad`` of its own parameters and buffers; then the
    structure, shapes and dtypes of ``example_inputs``. It excludes weight values, the
    device and the train/eval flag.

    Args:
        model: any module.
        example_inputs: a tensor or a tuple of positional arguments.

    Returns:
        A 64-character hex string.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> a = architecture_hash(net, torch.zeros(1, 4))
        >>> a == architecture_hash(torch.nn.Linear(4, 2), torch.zeros(1, 4))
        True
        >>> a == architecture_hash(torch.nn.Linear(4, 3), torch.zeros(1, 4))
        False
    """
    digest = hashlib.sha256()
    for name, module in model.named_modules(remove_duplicate=False):
        digest.update(_describe_module(name, module).encode())
    digest.update(_describe_inputs(example_inputs).encode())
    return digest.hexdigest()


_CACHE: OrderedDict[tuple[str, bool], Costs] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_cost_cache() -> None:
    """Forget every cached :class:`Costs`.

    Example:
        >>> clear_cost_cache()
    """
    with _CACHE_LOCK:
        _CACHE.clear()


def count_costs(
    model: torch.nn.Module, example_inputs: Any, *, training: bool = False, cache: bool = True
) -> Costs:
    """Count FLOPs, bytes and launches of one pass of ``model`` on ``example_inputs``.

    The model runs as a ``meta`` copy: its weights, device and train/eval flag are
    left as they are. Inference (``training=False``) runs in eval mode without
    gradients; training runs in train mode, then backward of the sum of the outputs
    (the optimizer step is not counted).

    Args:
        model: any ``torch.nn.Module`` whose forward runs on ``meta`` tensors.
        example_inputs: a tensor or a tuple of positional arguments (only shapes and
            dtypes are used; they may live on any device).
        training: count forward + backward instead of an inference forward.
        cache: look up and store the result under :func:`architecture_hash`.

    Returns:
        The totals and the per-op breakdown.

    Raises:
        CostCountingError: the forward (or backward) failed on ``meta``, e.g. because
            it reads tensor values (``.item()``, ``nonzero``).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
        >>> costs = count_costs(net, torch.zeros(2, 3, 10, 10))
        >>> costs.flops  # 2 * batch 2 * 8x8 pixels * 8 out * 3 in channels * 3x3
        55296
        >>> sorted(costs.by_op)
        ['aten.convolution', 'aten.relu']
    """
    key = (architecture_hash(model, example_inputs), training) if cache else None
    if key is not None:
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                hit = _CACHE[key]
                return dataclasses.replace(hit, by_op=dict(hit.by_op))
    try:
        costs = _run_counted(model, example_inputs, training)
    except Exception as error:
        raise CostCountingError(
            f"could not run {type(model).__name__} on the meta device to count its costs "
            f"({type(error).__name__}: {error}); count_costs needs a forward that uses only "
            "tensor shapes (no .item(), nonzero or other value-dependent ops)"
        ) from error
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = costs
            while len(_CACHE) > _MAX_CACHE:
                _CACHE.popitem(last=False)
        return dataclasses.replace(costs, by_op=dict(costs.by_op))
    return costs
