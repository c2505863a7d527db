"""Structural mutations on a live model: insert and remove layers, add and remove edges.

Each one first changes the core graph (solved, transactional), then edits the fx graph
and the modules to match. New layers start as identities (Net2DeeperNet): a Linear or
Conv gets an identity / centred Dirac kernel, a BatchNorm an identity transform in eval
mode, and a residual branch ``x + f(x)`` a zero last layer, which is exact for any
activation.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import fx, nn

import mutnas as mn
from mutnas.advanced import transaction
from mutnas_torch.analyze import Ref
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.trace import node_shape

__all__ = [
    "connect",
    "disconnect",
    "insert_layer",
    "insert_residual",
    "remove_branch",
    "remove_layer",
]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "hardswish": nn.Hardswish,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


# ---------------------------------------------------------------- helpers
def _nodes(mm) -> dict[str, fx.Node]:
    return {n.name: n for n in mm.module.graph.nodes}


def _node_of(mm, vertex: str) -> fx.Node:
    binding = mm.bindings.get(vertex)
    node = _nodes(mm).get(binding.node) if binding is not None and binding.node else None
    if node is None:
        raise MutnasTorchError(
            f"vertex {vertex!r} has no node of its own in the model (a pin, constant or "
            f"input); pick a layer from mm.layers(None)"
        )
    return node


def _ref(mm, node: fx.Node) -> Ref:
    ref = mm.refs.get(node.name)
    if not isinstance(ref, Ref):
        raise MutnasTorchError(f"node {node.name!r} carries no channels")
    return ref


def tail(mm, node: fx.Node) -> fx.Node:
    """Follow single-user nodes that carry the same channels (activations, dropout)."""
    ref = mm.refs.get(node.name)
    while len(node.users) == 1:
        (user,) = node.users
        if mm.refs.get(user.name) != ref or user.name in _vertex_nodes(mm):
            break
        node = user
    return node


def _vertex_nodes(mm) -> set[str]:
    return {b.node for b in mm.bindings.values() if b.node}


def _module_name(mm, base: str, suffixes: tuple[str, ...] = ("",)) -> str:
    """``base`` (or ``base_2``, ``base_3``...) such that every ``name + suffix`` is free."""
    base = base.replace(".", "_")
    name, k = base, 1
    while any(hasattr(mm.module, name + s) or name + s in mm.graph for s in suffixes):
        k += 1
        name = f"{base}_{k}"
    return name


def _insert_node(mm, after: fx.Node, target: str, ref: Ref) -> fx.Node:
    graph = mm.module.graph
    users = list(after.users)
    with graph.inserting_after(after):
        node = graph.call_module(target, (after,))
    for user in users:
        user.replace_input_with(after, node)
    node.meta = dict(after.meta)
    mm.refs[node.name] = ref
    return node


def _retarget(mm, old: str, new: str) -> None:
    """Point channel references and code literals from vertex ``old`` (removed) to ``new``.

    Nodes after a removed vertex carry its channels under its name (an activation after a
    BatchNorm, a flatten after a Conv); the core reconnected them to ``new``.
    """

    def swap(value):
        if isinstance(value, Ref):
            return dataclasses.replace(value, vertex=new) if value.vertex == old else value
        if isinstance(value, (list, tuple)):
            return type(value)(swap(item) for item in value)
        return value

    for node, value in mm.refs.items():
        mm.refs[node] = swap(value)
    for literal in mm.literals:
        if literal.vertex == old:
            literal.vertex = new


def _finish(mm) -> None:
    graph = mm.module.graph
    graph.eliminate_dead_code()
    alive = {n.name for n in graph.nodes}
    for node in [node for node in mm.refs if node not in alive]:
        del mm.refs[node]  # erased nodes keep no channel references
    graph.lint()
    mm.module.delete_all_unused_submodules()
    mm.module.recompile()


# ---------------------------------------------------------------- new layers
def _identity_layer(kind: str, n: int, ref: Ref, ndim: int, kernel: int) -> tuple[nn.Module, str]:
    last = ref.dim == ndim - 1
    if kind == "auto":
        kind = "conv" if ref.dim == 1 and ndim >= 3 else "linear"
    if kind == "linear":
        if not last:
            raise MutnasTorchError("a Linear layer needs channels in the last dimension")
        layer = nn.Linear(n, n)
        with torch.no_grad():
            layer.weight.copy_(torch.eye(n))
            layer.bias.zero_()
        return layer, "linear"
    if kind == "conv":
        if ref.dim != 1 or not 3 <= ndim <= 5:
            raise MutnasTorchError("a Conv layer needs channels-first 1-D, 2-D or 3-D input")
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 3]
        layer = conv(n, n, kernel, padding=kernel // 2)
        with torch.no_grad():
            nn.init.dirac_(layer.weight)
            layer.bias.zero_()
        return layer, "conv"
    if kind == "norm":
        if ref.dim == 1 and ndim >= 2:
            norm = (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[ndim - 2]
            layer = norm(n)
            with torch.no_grad():
                layer.running_var.fill_(1.0 - layer.eps)  # exact identity in eval mode
            return layer, "batchnorm"
        raise MutnasTorchError("an identity norm layer needs channels-first input")
    if kind in ACTIVATIONS:
        return ACTIVATIONS[kind](), "activation"
    raise MutnasTorchError(
        f"unknown layer kind {kind!r}; use auto, linear, conv, norm or one of {sorted(ACTIVATIONS)}"
    )


def _layer_binding(vertex: str, target: str, kind: str, node: str) -> Binding:
    if kind == "batchnorm":
        params = [
            ParamAxis(f"{target}.{p}", 0, init=init)
            for p, init in (("weight", "ones"), ("bias", "zeros"), ("running_mean", "zeros"))
        ] + [ParamAxis(f"{target}.running_var", 0, init="ones")]
        return Binding(vertex, target, kind, params, [[]], node)
    outs = [ParamAxis(f"{target}.weight", 0, init="normal"), ParamAxis(f"{target}.bias", 0)]
    return Binding(vertex, target, kind, outs, [[ParamAxis(f"{target}.weight", 1)]], node)


def insert_layer(
    mm, after: str, kind: str = "auto", *, nout: int | None = None, kernel_size: int = 1, name=None
) -> mn.Change:
    """Insert an identity-initialised layer after vertex ``after`` (and its activation).

    Args:
        after: a vertex name (``mm.layers(None)``).
        kind: ``"auto"`` (conv for channels-first input, else linear), ``"linear"``,
            ``"conv"``, ``"norm"`` (BatchNorm) or an activation (``"relu"``, ``"gelu"``...).
        nout: output size of a new linear/conv layer (default: same as its input).
        kernel_size: odd kernel size of a new conv layer (identity: centred Dirac).
    """
    source = _node_of(mm, after)
    at = tail(mm, source)
    ref = _ref(mm, at)
    ndim = len(node_shape(at))
    n = mm.graph[ref.vertex].nout if ref.outer == ref.inner == 1 else None
    if n is None:
        raise MutnasTorchError(
            f"cannot insert after {after!r}: its channels are merged with other dims"
        )
    layer, kind_tag = _identity_layer(kind, n, ref, ndim, kernel_size)
    target = _module_name(mm, name or f"{after}_inserted")
    core_kind = "invariant" if kind_tag in ("batchnorm", "activation") else "absorb"
    mm.module.add_module(target, layer.to(_device(mm)).train(mm.module.training))
    try:
        change = mm.graph.insert_after(ref.vertex, core_kind, nout=nout, name=target)
    except Exception:
        delattr(mm.module, target)
        raise
    node = _insert_node(mm, at, target, Ref(target, ref.dim))
    if kind_tag == "activation":
        mm.bindings[target] = Binding(target, target, "activation", [], [[]], node.name)
    else:
        mm.bindings[target] = _layer_binding(target, target, kind_tag, node.name)
    _finish(mm)
    return mm.apply(change)


def _device(mm) -> torch.device:
    for p in mm.module.parameters():
        return p.device
    return torch.device("cpu")


def insert_residual(mm, after: str, *, hidden: int | None = None, activation: str = "relu"):
    """Insert ``x + f(x)`` after ``after``; ``f`` = layer → activation → zero-initialised layer.

    Exact for any activation, since ``f`` starts at zero.
    """
    source = _node_of(mm, after)
    at = tail(mm, source)
    ref = _ref(mm, at)
    ndim = len(node_shape(at))
    n = mm.graph[ref.vertex].nout
    hidden = hidden or n
    first, kind_tag = _identity_layer("auto", n, ref, ndim, 1)
    second, _ = _identity_layer("auto", n, ref, ndim, 1)
    with torch.no_grad():
        second.weight.zero_()
    base = _module_name(mm, f"{after}_residual", ("_in", "_act", "_out", "_add"))
    names = [f"{base}_in", f"{base}_act", f"{base}_out"]
    g = mm.graph
    with transaction(g):  # four core edits, one mutation: all or nothing
        change = g.insert_after(ref.vertex, "add", name=f"{base}_add")
        add_vertex = change.added[0]
        v_in = g.absorb(ref.vertex, nout=n, name=names[0])
        v_out = g.absorb(v_in, nout=n, name=names[2])
        change = change.merge(g.connect(v_out, add_vertex))
    change.added += [names[0], names[2]]
    graph = mm.module.graph
    for target, layer in zip(names, (first, ACTIVATIONS[activation](), second), strict=True):
        mm.module.add_module(target, layer.to(_device(mm)).train(mm.module.training))
    users = list(at.users)
    with graph.inserting_after(at):
        n_in = graph.call_module(names[0], (at,))
    with graph.inserting_after(n_in):
        n_act = graph.call_module(names[1], (n_in,))
    with graph.inserting_after(n_act):
        n_out = graph.call_module(names[2], (n_act,))
    with graph.inserting_after(n_out):
        n_add = graph.call_function(torch.add, (at, n_out))
    for user in users:
        user.replace_input_with(at, n_add)
    for node, vertex in (
        (n_in, names[0]),
        (n_act, names[0]),
        (n_out, names[2]),
        (n_add, add_vertex),
    ):
        node.meta = dict(at.meta)
        mm.refs[node.name] = Ref(vertex, ref.dim)
    mm.bindings[names[0]] = _layer_binding(names[0], names[0], kind_tag, n_in.name)
    mm.bindings[names[2]] = _layer_binding(names[2], names[2], kind_tag, n_out.name)
    mm.bindings[add_vertex] = Binding(add_vertex, None, "merge", [], [[], []], n_add.name)
    _finish(mm)
    mm.apply(change)
    if hidden != n:
        return change.merge(mm.resize(names[0], hidden - n))
    return change


def remove_layer(mm, name: str) -> mn.Change:
    """Remove a layer whose output has the same non-channel shape as its input."""
    node = _node_of(mm, name)
    source = node.args[0]
    if not isinstance(source, fx.Node):
        raise MutnasTorchError(f"cannot remove {name!r}: its input is not a tensor")
    before, after = node_shape(source), node_shape(node)
    ref_in, ref_out = mm.refs.get(source.name), _ref(mm, node)
    for ref, side in ((ref_in, "input"), (ref_out, "output")):
        if isinstance(ref, Ref) and (ref.outer != 1 or ref.inner != 1):
            raise MutnasTorchError(
                f"cannot remove {name!r}: each of its {side} features is one of "
                f"{ref.outer * ref.inner} per channel of {ref.vertex!r} (a flatten or reshape "
                f"merged channels with other dims), so its consumers could not take the "
                f"{side} as it is"
            )
    if (
        before is None
        or len(before) != len(after)
        or not isinstance(ref_in, Ref)
        or (
            ref_in.dim != ref_out.dim
            or any(
                a != b
                for d, (a, b) in enumerate(zip(before, after, strict=True))
                if d != ref_out.dim
            )
        )
    ):
        raise MutnasTorchError(
            f"cannot remove {name!r}: it changes the tensor shape {before} -> {after} beyond "
            f"its channels, so its consumers would break"
        )
    change = mm.graph.remove(name)
    node.replace_all_uses_with(source)
    mm.module.graph.erase_node(node)
    mm.refs.pop(node.name, None)
    _retarget(mm, name, ref_in.vertex)
    binding = mm.bindings.pop(name, None)
    mm.apply(change)
    if binding is not None and binding.module:
        _finish(mm)
    return change


def connect(mm, src: str, dst: str) -> mn.Change:
    """Add the edge ``src -> dst``: an extra operand of an add, or of a concat (appended)."""
    src_node = tail(mm, _node_of(mm, src))
    dst_node = _node_of(mm, dst)
    kind = mm.graph[dst].kind
    order = {n.name: i for i, n in enumerate(mm.module.graph.nodes)}
    if order[src_node.name] > order[dst_node.name]:
        raise MutnasTorchError(f"cannot connect {src!r} -> {dst!r}: {src!r} runs after {dst!r}")
    ref_src, ref_dst = _ref(mm, src_node), _ref(mm, dst_node)
    s_shape, d_shape = node_shape(src_node), node_shape(dst_node)
    same = (
        len(s_shape) == len(d_shape)
        and ref_src.dim == ref_dst.dim
        and all(
            a == b
            for d, (a, b) in enumerate(zip(s_shape, d_shape, strict=True))
            if d != ref_dst.dim
        )
    )
    if not same or ref_src.outer != 1 or ref_src.inner != 1:
        raise MutnasTorchError(
            f"cannot connect {src!r} {s_shape} -> {dst!r} {d_shape}: the shapes differ outside "
            f"the channel dimension"
        )
    change = mm.graph.connect(_core_vertex(mm, src_node), dst)
    graph = mm.module.graph
    if kind == "concat":
        tensors = [*list(dst_node.args[0]), src_node]
        dst_node.args = (tensors, *dst_node.args[1:])
    else:
        users = list(dst_node.users)
        with graph.inserting_after(dst_node):
            new = graph.call_function(torch.add, (dst_node, src_node))
        for user in users:
            user.replace_input_with(dst_node, new)
        new.meta = dict(dst_node.meta)
        mm.refs[new.name] = mm.refs[dst_node.name]
        mm.bindings[dst].node = new.name
    graph.lint()
    return mm.apply(change)


def _core_vertex(mm, node: fx.Node) -> str:
    return _ref(mm, node).vertex


def disconnect(mm, src: str, dst: str) -> mn.Change:
    """Remove the edge ``src -> dst`` from an add or concat; dead branches are deleted."""
    dst_node = _node_of(mm, dst)
    vertex = mm.graph[dst]
    kind = vertex.kind
    change = mm.graph.disconnect(src, dst)
    position = change.edges_removed[-1][2]
    if kind == "concat":
        tensors = list(dst_node.args[0])
        del tensors[position]
        dst_node.args = (tensors, *dst_node.args[1:])
    else:
        operands = _add_operands(mm, dst_node)
        keep = [op for k, op in enumerate(operands) if k != position]
        _rebuild_add(mm, dst, dst_node, keep)
    mm.apply(change)
    _drop_dead(mm)
    return change


def remove_branch(mm, add: str, branch: int = 1) -> mn.Change:
    """Remove input ``branch`` of the residual add ``add`` (its layers become dead, deleted)."""
    vertex = mm.graph[add]
    if vertex.kind != "add" or len(vertex.inputs) < 2:
        raise MutnasTorchError(f"{add!r} is not an add with at least two inputs")
    return disconnect(mm, vertex.inputs[branch].name, add)


def _add_operands(mm, node: fx.Node) -> list:
    """Operands of an add vertex, flattening the chain of binary adds ``connect`` builds."""
    ref = mm.refs.get(node.name)
    out = []
    for arg in node.args[:2]:
        chained = (
            isinstance(arg, fx.Node)
            and arg.op == "call_function"
            and mm.refs.get(arg.name) == ref
            and len(arg.users) == 1
            and arg.name not in _vertex_nodes(mm)
        )
        out.extend(_add_operands(mm, arg) if chained else [arg])
    return out


def _rebuild_add(mm, vertex: str, node: fx.Node, keep: list) -> None:
    graph = mm.module.graph
    if len(keep) == 1:
        node.replace_all_uses_with(keep[0])
        graph.erase_node(node)
        return
    total = keep[0]
    with graph.inserting_before(node):
        for operand in keep[1:]:
            total = graph.call_function(torch.add, (total, operand))
            total.meta = dict(node.meta)
            mm.refs[total.name] = mm.refs[node.name]
    node.replace_all_uses_with(total)
    graph.erase_node(node)
    mm.bindings[vertex].node = total.name


def _drop_dead(mm) -> None:
    """Delete vertices nothing reads any more (in the core and the model)."""
    _finish(mm)
    alive = {n.name for n in mm.module.graph.nodes}
    changed = True
    while changed:
        changed = False
        for v in reversed(mm.graph.vertices):
            binding = mm.bindings.get(v.name)
            dead_node = binding is not None and binding.node and binding.node not in alive
            if not v.outputs and v not in mm.graph.outputs and (dead_node or v.kind == "add"):
                mm.graph.delete(v.name)
                mm.bindings.pop(v.name, None)
                changed = True
            elif v.kind == "add" and len(v.inputs) == 1 and dead_node:
                survivor = v.inputs[0].name
                change = mm.graph.remove(v.name)
                _retarget(mm, v.name, survivor)
                mm.bindings.pop(v.name, None)
                mm.history.append(change)
                changed = True
