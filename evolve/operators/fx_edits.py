"""Small torch.fx edits the adapter does not offer, and queries the mutations share.

Edits that change the graph (insert a pooling layer, remove an activation or pooling
module) are made on the child's ``GraphModule`` and followed by a fresh trace
(:func:`retrace`), so the adapter's analysis is always rebuilt from the real graph.
"""

from __future__ import annotations

from torch import fx, nn

from evolve.search_space import ACTIVATIONS
from mutnas_torch import MutnasTorchError, mutable
from mutnas_torch.analyze import Ref
from mutnas_torch.structure import ACTIVATIONS as ADAPTER_ACTIVATIONS
from mutnas_torch.structure import tail
from mutnas_torch.trace import node_shape

__all__ = [
    "ACTIVATION_TYPES",
    "Point",
    "can_insert",
    "connectable_pairs",
    "exact_insert",
    "insert_pool",
    "keeps_shape",
    "layer_output",
    "removable_modules",
    "remove_module",
    "retrace",
]

ACTIVATION_TYPES = tuple({*ACTIVATIONS.values(), *ADAPTER_ACTIVATIONS.values()})
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d)
_ADAPTIVE = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


class Point:
    """Where a layer's output ends (after its activation): the node, its shape, channels."""

    __slots__ = ("node", "ref", "shape")

    def __init__(self, node: fx.Node, shape: tuple[int, ...], ref: Ref):
        self.node, self.shape, self.ref = node, shape, ref


def _nodes(mm) -> dict[str, fx.Node]:
    return {n.name: n for n in mm.module.graph.nodes}


def layer_output(mm, vertex: str) -> Point | None:
    """The output point of ``vertex``, or ``None`` if it has no plain channel dimension."""
    binding = mm.bindings.get(vertex)
    node = _nodes(mm).get(binding.node) if binding is not None and binding.node else None
    if node is None:
        return None
    at = tail(mm, node)
    ref, shape = mm.refs.get(at.name), node_shape(at)
    if not isinstance(ref, Ref) or shape is None or ref.outer != 1 or ref.inner != 1:
        return None
    return Point(at, shape, ref)


def _adaptive_pool_after(point: Point) -> bool:
    """Whether every path from ``point`` meets an adaptive pool before anything that needs
    the old spatial size: a merge (add, cat, mul) with a tensor that was not pooled too,
    a flatten into a fixed-size layer, or the graph output."""
    root = point.node.graph.owning_module
    pooled, reached = {point.node}, False
    node = point.node.next
    while node.op != "output":
        inputs = node.all_input_nodes
        if any(a in pooled for a in inputs):
            if node.op == "call_module" and isinstance(root.get_submodule(node.target), _ADAPTIVE):
                reached = True  # its output no longer depends on the input's size
            elif any(a not in pooled and _spatial(a) for a in inputs):
                return False
            else:
                pooled.add(node)
        node = node.next
    return reached and not any(a in pooled for a in node.all_input_nodes)


def _spatial(node: fx.Node) -> bool:
    shape = node_shape(node)
    return shape is not None and len(shape) >= 3


def can_insert(kind: str, point: Point | None) -> bool:
    """Whether a layer of ``kind`` fits at ``point`` (see ``AddLayerMutation``)."""
    if point is None:
        return False
    ndim, dim = len(point.shape), point.ref.dim
    conv = dim == 1 and 3 <= ndim <= 5
    linear = dim == ndim - 1
    norm = dim == 1 and 2 <= ndim <= 5
    if kind == "conv":
        return conv
    if kind == "linear":
        return linear
    if kind == "norm":
        return norm
    if kind in ("block", "residual"):
        return conv or (linear and (norm or kind == "residual"))
    if kind == "pool":
        return conv and ndim <= 4 and min(point.shape[2:]) >= 2 and _adaptive_pool_after(point)
    return kind in ACTIVATIONS


def exact_insert(kind: str, point: Point | None) -> bool:
    """Whether inserting ``kind`` at ``point`` keeps the function (in eval mode)."""
    if kind in ("conv", "linear", "norm", "residual"):
        return True
    if kind in ("block", "relu") and point is not None:
        node = point.node
        root = node.graph.owning_module
        if node.op == "call_module":
            return isinstance(root.get_submodule(node.target), nn.ReLU)
        return node.op in ("call_function", "call_method") and "relu" in str(node.target)
    return False


def retrace(mm):
    """A fresh :class:`~mutnas_torch.MutableModel` traced from ``mm``'s current module."""
    fresh = mutable(mm.module, mm.example_inputs, growth=mm.growth)
    fresh.train(mm.training)
    return fresh


def _finish(gm: fx.GraphModule) -> None:
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()


def insert_pool(mm, after: str):
    """Insert a max-pool (kernel 2, stride 2) after ``after``'s output; returns a new model."""
    point = layer_output(mm, after)
    if not can_insert("pool", point):
        raise MutnasTorchError(f"cannot insert a pooling layer after {after!r}")
    gm = mm.module
    pool = (nn.MaxPool1d, nn.MaxPool2d)[len(point.shape) - 3](2, stride=2, ceil_mode=True)
    name, k = f"{after.replace('.', '_')}_pool", 1
    while hasattr(gm, name):
        k += 1
        name = f"{after.replace('.', '_')}_pool{k}"
    gm.add_submodule(name, pool)
    with gm.graph.inserting_after(point.node):
        node = gm.graph.call_module(name, (point.node,))
    point.node.replace_all_uses_with(node, delete_user_cb=lambda user: user is not node)
    _finish(gm)
    return retrace(mm)


def keeps_shape(mm, vertex: str) -> bool:
    """Whether ``vertex``'s node keeps its input's shape outside the channel dimension."""
    binding = mm.bindings.get(vertex)
    node = _nodes(mm).get(binding.node) if binding is not None and binding.node else None
    if node is None or not node.args or not isinstance(node.args[0], fx.Node):
        return False
    before, after = node_shape(node.args[0]), node_shape(node)
    ref_in, ref_out = mm.refs.get(node.args[0].name), mm.refs.get(node.name)
    if (
        before is None
        or after is None
        or not isinstance(ref_in, Ref)
        or not isinstance(ref_out, Ref)
    ):
        return False
    if len(before) != len(after) or ref_in.dim != ref_out.dim:
        return False
    return all(
        a == b for d, (a, b) in enumerate(zip(before, after, strict=True)) if d != ref_out.dim
    )


def removable_modules(mm) -> list[str]:
    """Activation and (non-adaptive) pooling modules that are not graph vertices."""
    vertex_nodes = {b.node for b in mm.bindings.values() if b.node}
    out = []
    for node in mm.module.graph.nodes:
        if node.op != "call_module" or node.name in vertex_nodes or len(node.args) != 1:
            continue
        if isinstance(mm.module.get_submodule(node.target), (*ACTIVATION_TYPES, *_POOLS)):
            out.append(node.target)
    return out


def remove_module(mm, target: str):
    """Remove the call of module ``target`` (its input goes to its users); new model."""
    gm = mm.module
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and node.target == target:
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    _finish(gm)
    return retrace(mm)


def connectable_pairs(mm) -> list[tuple[str, str]]:
    """``(src, dst)`` pairs for ``mm.connect``: ``dst`` an add or concat, ``src`` an
    earlier layer, not yet an operand, whose output shape agrees outside channels."""
    order = {n.name: i for i, n in enumerate(mm.module.graph.nodes)}
    nodes = _nodes(mm)
    sources = [(n, layer_output(mm, n)) for n in mm.layers(None)]
    pairs = []
    for v in mm.graph.vertices:
        binding = mm.bindings.get(v.name)
        if v.kind not in ("add", "concat") or binding is None or binding.node not in nodes:
            continue
        dst = nodes[binding.node]
        ref, shape = mm.refs.get(dst.name), node_shape(dst)
        if not isinstance(ref, Ref) or shape is None:
            continue
        operands = {u.name for u in v.inputs}
        for name, point in sources:
            if point is None or name in operands or point.ref.vertex in operands:
                continue
            if order[point.node.name] >= order[dst.name] or point.ref.dim != ref.dim:
                continue
            same = len(point.shape) == len(shape) and all(
                a == b
                for d, (a, b) in enumerate(zip(point.shape, shape, strict=True))
                if d != ref.dim
            )
            if same:
                pairs.append((name, v.name))
    return pairs
