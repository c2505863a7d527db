"""Applying a solved mutation to a live model: parameters, optimizer state, attributes, code.

Every reshaped parameter is a *new* ``nn.Parameter`` (autograd caches a parameter's
shape once it has been through a backward pass, so reshaping one in place breaks the next
backward). Every module that held the old one (tied weights too) and every attached
optimizer are pointed at the new one; optimizer state (momentum, Adam moments) is
re-indexed like the parameter, new entries starting at zero. Re-read ``parameters()``
after a mutation instead of keeping references from before.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import fx, nn

import mutnas as mn
from mutnas_torch.analyze import Literal
from mutnas_torch.bindings import Binding, ParamAxis, apply_axis, expand_index
from mutnas_torch.errors import SurgeryError

__all__ = ["AxisEdit", "apply_change", "edits_for", "rewrite_literals", "sync_attributes"]


@dataclass
class AxisEdit:
    """Select ``positions`` along ``axis`` of ``target``; new entries get ``init``.

    ``scale`` (optional, one factor per new position) multiplies the result along the axis.
    """

    target: str
    axis: int
    positions: np.ndarray
    init: str
    scale: np.ndarray | None = None


class _Modules:
    """Modules by qualified name, indexed once (``get_submodule`` walks the path each time).

    Valid while no module is added or removed; parameters may be swapped.
    """

    def __init__(self, model: nn.Module):
        self.by_name = dict(model.named_modules(remove_duplicate=False))

    def module(self, name: str) -> nn.Module:
        return self.by_name[name]

    def tensor(self, target: str) -> torch.Tensor:
        owner, _, name = target.rpartition(".")
        return getattr(self.by_name[owner], name)


def edits_for(
    bindings: dict[str, Binding],
    change: mn.Change,
    model: nn.Module,
    graph: mn.Graph | None = None,
    *,
    growth: str = "exact",
) -> list[AxisEdit]:
    """The axis edits a change requires, in an order safe to apply one after another.

    With ``growth="exact"``, channels added to a LayerNorm-normalised stream start as the
    mean of the old channels (see :func:`_norm_coupled`), so pre-norm transformers grow
    without changing their outputs; ``"trainable"`` draws them at random instead.
    """
    from mutnas_torch.attention import attention_edits

    if growth == "net2net":
        return _net2net_edits(bindings, change, model)
    modules = _Modules(model)
    coupled = (
        _norm_coupled(bindings, change, graph) if graph is not None and growth == "exact" else {}
    )
    edits: list[AxisEdit] = []
    for name, index in change.outputs.items():
        binding = bindings.get(name)
        if binding is None:
            continue
        if binding.kind == "attention":
            new = attention_edits(model, binding, index)
            if name in coupled:
                for edit in new:
                    if (
                        edit.target in (binding.extra["out_w"], binding.extra.get("out_b"))
                        and edit.axis == 0
                    ):
                        edit.init = "mean"
            edits.extend(new)
            continue
        couple = name in coupled and binding.kind != "recurrent"  # units can't be a mean
        for axis in binding.outputs:
            edit = _edit(modules, axis, index)
            if couple:
                _couple(edit, binding, coupled[name])
            edits.append(edit)
    for name, maps in change.inputs.items():
        binding = bindings.get(name)
        if binding is None:
            continue
        for k, index in enumerate(maps):
            for axis in binding.inputs[k] if k < len(binding.inputs) else ():
                edits.append(_edit(modules, axis, index))
    return edits


def _net2net_edits(bindings, change: mn.Change, model: nn.Module) -> list[AxisEdit]:
    """Net2WiderNet: new neurons copy old ones; consumers split the copied columns.

    Every copy of neuron ``j`` (the original included) gets ``1/n_j`` of ``j``'s outgoing
    weights, so the function is unchanged; add noise before training to break symmetry.
    """
    from mutnas_torch.attention import attention_edits

    modules = _Modules(model)
    edits: list[AxisEdit] = []
    for name, index in change.outputs.items():
        binding = bindings.get(name)
        if binding is None:
            continue
        if binding.kind == "attention":
            edits.extend(attention_edits(model, binding, index))
            continue
        copies = change.copies.get(name, index)
        reads_self = binding.extra.get("reads_self", ())  # recurrent weights reading h
        for axis in binding.outputs:
            edit = _edit(modules, axis, copies)
            if (axis.target, axis.axis) in reads_self:
                edit.scale = _split_shares(copies, axis)
            edits.append(edit)
    for name, maps in change.inputs.items():
        binding = bindings.get(name)
        if binding is None:
            continue
        copy_maps = change.input_copies.get(name, maps)
        for k, copies in enumerate(copy_maps):
            for axis in binding.inputs[k] if k < len(binding.inputs) else ():
                edit = _edit(modules, axis, copies)
                edit.scale = _split_shares(copies, axis)
                edits.append(edit)
    return edits


def _split_shares(copies: np.ndarray, axis: ParamAxis) -> np.ndarray | None:
    """Each copy of a neuron (the original included) reads 1/n of it, n = its copies."""
    if not len(copies):
        return None
    counts = np.bincount(copies[copies >= 0], minlength=1)
    share = np.where(copies >= 0, 1.0 / counts[np.maximum(copies, 0)], 1.0)
    return np.repeat(np.tile(share, axis.outer), axis.inner)


def _norm_coupled(bindings, change: mn.Change, graph: mn.Graph) -> dict[str, float | None]:
    """Vertices aligned with a LayerNorm whose normalised channels only grow.

    Returns ``{vertex: factor}``: the LayerNorm vertices map to ``sqrt(C_old / C_new)``
    (their old scales are multiplied by it), every other coupled vertex to None.
    """
    from mutnas.advanced import find_participants

    coupled: dict[str, float | None] = {}
    for name, binding in bindings.items():
        index = change.outputs.get(name)
        if binding.kind != "layernorm" or index is None or name not in graph:
            continue
        kept = index[index >= 0]
        n_old = change.nout_before.get(name, len(index))
        if len(kept) != n_old or not np.array_equal(kept, np.arange(n_old)):
            continue  # channels were also dropped: statistics change anyway
        for v in find_participants([graph[name]]):
            coupled.setdefault(v.name, None)
        coupled[name] = float(np.sqrt(n_old / len(index)))
    return coupled


def scale_norm_eps(model: nn.Module, gm: fx.GraphModule, bindings, coupled) -> bool:
    """Multiply the eps of compensated LayerNorms by factor², which makes growth exact.

    Returns True if a node of ``gm`` changed (its code must be regenerated).
    """
    if not any(factor is not None for factor in coupled.values()):
        return False
    nodes = {n.name: n for n in gm.graph.nodes}
    changed = False
    for name, factor in coupled.items():
        binding = bindings.get(name)
        if factor is None or binding is None or binding.kind != "layernorm":
            continue
        if binding.module is not None:
            module = model.get_submodule(binding.module)
            module.eps = module.eps * factor**2
            continue
        node = nodes.get(binding.node)
        if node is None:
            continue
        changed = True
        if "eps" in node.kwargs:
            node.kwargs = {**node.kwargs, "eps": node.kwargs["eps"] * factor**2}
        elif len(node.args) > 4:
            args = list(node.args)
            args[4] = args[4] * factor**2
            node.args = tuple(args)
        else:
            node.kwargs = {**node.kwargs, "eps": 1e-5 * factor**2}
    return changed


def _couple(edit: AxisEdit, binding: Binding, factor: float | None) -> None:
    if binding.kind == "layernorm":
        if factor is not None and edit.init == "ones":  # the scale (weight) of the norm
            edit.scale = np.where(edit.positions >= 0, factor, 1.0)
        return
    if edit.init in ("normal", "zeros"):
        edit.init = "mean"


def _edit(modules: _Modules, axis: ParamAxis, index: np.ndarray) -> AxisEdit:
    tensor = modules.tensor(axis.target)
    block = axis.outer * axis.inner
    if tensor.shape[axis.axis] % block:
        raise SurgeryError(
            f"{axis.target}: axis {axis.axis} of size {tensor.shape[axis.axis]} is not "
            f"{axis.outer} x C x {axis.inner}"
        )
    n_old = tensor.shape[axis.axis] // block
    if len(index) and index.max() >= n_old:
        raise SurgeryError(f"{axis.target}: index map points past its {n_old} channels")
    positions = expand_index(index, n_old, axis.outer, axis.inner)
    return AxisEdit(axis.target, axis.axis, positions, axis.init)


def apply_change(
    model: nn.Module,
    bindings: dict[str, Binding],
    change: mn.Change,
    *,
    optimizers: Iterable[torch.optim.Optimizer] = (),
    generator: torch.Generator | None = None,
    graph: mn.Graph | None = None,
    growth: str = "exact",
) -> list[AxisEdit]:
    """Re-index every parameter, buffer and optimizer state the change touches."""
    edits = edits_for(bindings, change, model, graph, growth=growth)
    exact = graph is not None and growth == "exact" and isinstance(model, fx.GraphModule)
    if exact and scale_norm_eps(model, model, bindings, _norm_coupled(bindings, change, graph)):
        model.recompile()
    optimizers = list(optimizers)
    chains: dict[str, list[AxisEdit]] = {}
    for edit in edits:  # one chain per tensor: one new Parameter and one swap each
        chains.setdefault(edit.target, []).append(edit)
    owners = _owners(model) if chains else {}
    modules = _Modules(model)
    for target, chain in chains.items():
        tensor = modules.tensor(target)
        new = data = tensor.data
        if _is_selection_of_rows_and_columns(data, chain):
            new = _select_rows_and_columns(data, chain)
            chain_left = []
        else:
            chain_left = chain
        for edit in chain_left:
            new = apply_axis(new, edit.axis, edit.positions, edit.init, generator)
            if edit.scale is not None:
                shape = [1] * new.dim()
                shape[edit.axis] = len(edit.scale)
                scale = torch.as_tensor(edit.scale, dtype=new.dtype, device=new.device)
                new = new * scale.view(shape)
        if new is data:
            continue  # every edit was an identity: the tensor stays as it is
        if not isinstance(tensor, nn.Parameter):
            owner, _, attr = target.rpartition(".")
            setattr(modules.module(owner), attr, new)
            continue
        # a new Parameter, not ``.data =``: autograd caches a parameter's shape once it
        # has been through a backward pass, so reshaping it in place breaks the next one
        param = nn.Parameter(new, requires_grad=tensor.requires_grad)
        if tensor.grad is not None:
            param.grad = _zero_filled(tensor.grad, chain)
        for module, name in owners.pop(id(tensor), ()):
            module._parameters[name] = param
            owners.setdefault(id(param), []).append((module, name))
        for opt in optimizers:
            _swap_in_optimizer(opt, tensor, param, chain)
    return edits


_GATHER_MIN = 1 << 20


def _is_selection_of_rows_and_columns(tensor: torch.Tensor, chain: list[AxisEdit]) -> bool:
    """Two edits that only drop entries, on axes 0 and 1 (a Linear or Conv weight)."""
    return (
        len(chain) == 2
        and tensor.numel() >= _GATHER_MIN  # advanced indexing has more overhead per call
        and tensor.dim() >= 2
        and {e.axis for e in chain} == {0, 1}
        and all(e.scale is None and len(e.positions) and e.positions.min() >= 0 for e in chain)
        and all(e.positions.max() < tensor.shape[e.axis] for e in chain)
        and not any(_is_identity(e.positions, tensor.shape[e.axis]) for e in chain)
    )


def _is_identity(positions: np.ndarray, n: int) -> bool:
    return len(positions) == n and bool((positions == np.arange(n)).all())


def _select_rows_and_columns(tensor: torch.Tensor, chain: list[AxisEdit]) -> torch.Tensor:
    """One gather instead of two ``index_select``: one pass over the kept entries only."""
    index = {e.axis: torch.as_tensor(e.positions, device=tensor.device) for e in chain}
    with torch.no_grad():
        return tensor[index[0][:, None], index[1][None, :]]


def _owners(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """Every (module, attribute) holding each parameter (tied weights have several)."""
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, value in module._parameters.items():
            if value is not None:
                owners.setdefault(id(value), []).append((module, name))
    return owners


def _zero_filled(tensor: torch.Tensor, chain: list[AxisEdit]) -> torch.Tensor:
    """``tensor`` re-indexed like its parameter, new entries zero (gradients, moments)."""
    for edit in chain:
        tensor = apply_axis(tensor, edit.axis, edit.positions, "zeros")
    return tensor


def _swap_in_optimizer(opt, old, new, chain: list[AxisEdit]) -> None:
    for group in opt.param_groups:
        group["params"] = [new if p is old else p for p in group["params"]]
    state = opt.state.pop(old, None)
    if state is None:
        return
    for key, value in state.items():
        if torch.is_tensor(value) and value.shape == old.shape:
            state[key] = _zero_filled(value, chain)
    opt.state[new] = state


def sync_attributes(model: nn.Module, bindings: dict[str, Binding], graph: mn.Graph, names) -> None:
    """Make module attributes (``out_channels``, ``num_features``...) match the weights."""
    modules = _Modules(model)
    for name in names:
        binding = bindings.get(name)
        if binding is None or binding.module is None or name not in graph:
            continue
        module = modules.module(binding.module)
        v = graph[name]
        _SYNC.get(binding.kind, _no_sync)(module, v, binding)


def _no_sync(module, v, binding) -> None:
    return None


def sync_owners(model: nn.Module, edits: list[AxisEdit]) -> None:
    """Make standard layers that own an edited tensor describe their new shapes."""
    modules = _Modules(model)
    for owner in dict.fromkeys(e.target.rpartition(".")[0] for e in edits):
        module = modules.module(owner)
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, nn.LayerNorm) and module.weight is not None:
            module.normalized_shape = tuple(module.weight.shape)
        elif isinstance(module, nn.Embedding):
            module.embedding_dim = module.weight.shape[1]
        elif isinstance(module, nn.RNNBase):
            from mutnas_torch.recurrent import sync_rnn

            sync_rnn(module)
        elif isinstance(module, nn.MultiheadAttention):
            from mutnas_torch.attention import sync_mha

            sync_mha(module, None, None)


def _sync_linear(m: nn.Linear, v, binding) -> None:
    m.out_features, m.in_features = m.weight.shape


def _sync_conv(m, v, binding) -> None:
    w = m.weight
    if binding.kind == "depthwise":
        m.in_channels = m.out_channels = m.groups = w.shape[0]
    elif isinstance(m, nn.modules.conv._ConvTransposeNd):
        m.in_channels, m.out_channels = w.shape[0], w.shape[1] * m.groups
    else:
        m.groups = v.groups
        m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups


def _sync_norm(m, v, binding) -> None:
    size = v.nout
    if hasattr(m, "num_features"):
        m.num_features = size
    if hasattr(m, "num_channels"):
        m.num_channels = size
    if hasattr(m, "num_parameters"):
        m.num_parameters = size


def _sync_layernorm(m: nn.LayerNorm, v, binding) -> None:
    shape = list(m.normalized_shape)
    e = binding.extra
    shape[e["axis"]] = e["outer"] * v.nout * e["inner"]
    m.normalized_shape = tuple(shape)


def _sync_embedding(m: nn.Embedding, v, binding) -> None:
    m.embedding_dim = m.weight.shape[1]


_SYNC = {
    "linear": _sync_linear,
    "conv": _sync_conv,
    "depthwise": _sync_conv,
    "grouped": _sync_conv,
    "batchnorm": _sync_norm,
    "groupnorm": _sync_norm,
    "prelu": _sync_norm,
    "layernorm": _sync_layernorm,
    "embedding": _sync_embedding,
}


def rewrite_literals(gm: fx.GraphModule, literals: list[Literal], graph: mn.Graph) -> bool:
    """Write the current channel counts into integer literals of the traced code."""
    nodes = {n.name: n for n in gm.graph.nodes}
    changed = False
    for lit in literals:
        node = nodes.get(lit.node)
        if node is None or lit.vertex not in graph:
            continue
        value = lit.outer * graph[lit.vertex].nout * lit.inner
        changed |= _set_path(node, lit.path, value)
    return changed


def _set_path(node: fx.Node, path: tuple, value: int) -> bool:
    kind, *rest = path
    if kind == "args_from":
        start, j = rest
        args = list(node.args)
        if args[start + j] == value:
            return False
        args[start + j] = value
        node.args = tuple(args)
        return True
    container = node.args if kind == "args" else node.kwargs
    key, *inner = rest
    outer = container[key]
    if inner:
        seq = list(outer)
        if seq[inner[0]] == value:
            return False
        seq[inner[0]] = value
        new = type(outer)(seq) if isinstance(outer, (list, tuple)) else seq
    else:
        if outer == value:
            return False
        new = value
    if kind == "args":
        args = list(node.args)
        args[key] = new
        node.args = tuple(args)
    else:
        node.kwargs = {**node.kwargs, key: new}
    return True
