"""Tracing a model with torch.fx and annotating every node with its output shape.

``torch.nn`` modules are leaves (the tracer calls them, it does not enter them); more
leaves can be registered with :func:`register_leaf`. Shapes come from running the traced
graph once on the example inputs (``torch.fx.passes.shape_prop.ShapeProp``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from mutnas_torch.errors import TraceError

__all__ = ["LEAF_MODULES", "disable_inplace", "node_shape", "register_leaf", "trace"]

log = logging.getLogger(__name__)

LEAF_MODULES: set[type[nn.Module]] = set()


def register_leaf(cls: type[nn.Module]) -> type[nn.Module]:
    """Register a module type the tracer must call rather than enter (usable as decorator).

    Example:
        >>> import torch
        >>> from mutnas_torch import register_leaf
        >>> @register_leaf
        ... class Opaque(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x * 2
        >>> Opaque in LEAF_MODULES
        True
    """
    LEAF_MODULES.add(cls)
    return cls


class _Tracer(fx.Tracer):
    def __init__(self, leaves: Iterable[type[nn.Module]] = ()):
        super().__init__()
        self.leaves = tuple(LEAF_MODULES) + tuple(leaves)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.leaves and isinstance(m, self.leaves):
            return True
        return super().is_leaf_module(m, qualname)


def trace(
    model: nn.Module,
    example_inputs: Sequence[Any] | torch.Tensor,
    *,
    leaf_modules: Iterable[type[nn.Module]] = (),
) -> fx.GraphModule:
    """Symbolically trace ``model`` and record each node's output shape in ``node.meta``.

    Args:
        model: any ``nn.Module``.
        example_inputs: a tensor or a tuple of the forward's positional arguments.
        leaf_modules: extra module types to keep opaque.

    Raises:
        TraceError: the model cannot be traced symbolically (data-dependent control
            flow, unsupported Python) or the traced graph fails on the example inputs.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
        >>> gm = trace(net, torch.randn(2, 4))
        >>> [tuple(n.meta["tensor_meta"].shape) for n in gm.graph.nodes if n.op == "call_module"]
        [(2, 3), (2, 3)]
    """
    inputs = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    tracer = _Tracer(leaf_modules)
    try:
        graph = tracer.trace(model)
    except Exception as err:  # torch.fx raises TraceError, TypeError, NotImplementedError...
        raise TraceError(
            f"torch.fx could not trace {type(model).__name__}{_failing_module(tracer)}: "
            f"{type(err).__name__}: {err}. "
            f"Mark the module that contains data-dependent control flow as a leaf "
            f"(mutnas_torch.register_leaf or leaf_modules=[...]) or export the model with "
            f"torch.export and trace that instead"
        ) from err
    name = type(model).__name__
    _disable_inplace_calls(graph)  # before the GraphModule compiles its code: once
    gm = fx.GraphModule(tracer.root, graph, class_name=name)
    gm.meta["mutnas_training"] = model.training
    disable_inplace(gm)
    propagate_shapes(gm, inputs)
    return gm


def _failing_module(tracer: fx.Tracer) -> str:
    """`` in module 'path' (Type)``: the innermost module being traced when tracing failed.

    ``Tracer.call_module`` pops its entry of ``module_stack`` only on success, so after an
    error the stack still ends with the module whose forward raised.
    """
    stack = list(getattr(tracer, "module_stack", {}).values())
    if not stack:
        return ""
    path, cls = stack[-1]
    return f" in module {path!r} ({getattr(cls, '__qualname__', cls)})"


def disable_inplace(gm: fx.GraphModule) -> None:
    """Turn in-place activations into ordinary ones.

    Structural mutations rewire tensors: after a block is removed, an in-place ReLU can end
    up overwriting a tensor that autograd saved elsewhere. In-place ops only save memory.
    """
    for module in gm.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    if _disable_inplace_calls(gm.graph):
        gm.recompile()


def _disable_inplace_calls(graph: fx.Graph) -> bool:
    changed = False
    for node in graph.nodes:
        if node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}
            changed = True
    return changed


def propagate_shapes(gm: fx.GraphModule, inputs: tuple) -> None:
    """Run ``gm`` once on ``inputs`` (in eval mode, without gradients) recording shapes."""
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            _NamedShapeProp(gm).propagate(*inputs)
    finally:
        gm.train(was_training)


class _NamedShapeProp(ShapeProp):
    def run_node(self, n: fx.Node) -> Any:
        try:
            return super().run_node(n)
        except Exception as err:
            where = f"module {n.target!r}" if n.op == "call_module" else f"{n.op} {n.target}"
            raise TraceError(
                f"the traced graph failed at node {n.name!r} ({where}): "
                f"{type(err).__name__}: {err}. Check that example_inputs match the model"
            ) from err


def node_shape(node: fx.Node) -> tuple[int, ...] | None:
    """The output shape recorded by shape propagation, or None for non-tensor values."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return tuple(int(s) for s in meta.shape)
