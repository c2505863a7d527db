"""Rules for tensor ops (call_function / call_method nodes).

Shape propagation decides which dimension is the channel dimension after every reshape,
permute, cat and reduction; integer literals that encode a channel count are recorded so
that they can be rewritten when the count changes.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import fx

from mutnas_torch.analyze import Analyzer, ParamRef, Ref, _describe, param_axis
from mutnas_torch.bindings import Binding
from mutnas_torch.rules import passthrough
from mutnas_torch.trace import node_shape

__all__ = ["FUNCTION_RULES", "METHOD_RULES", "reshape_to", "visit_op"]

OpRule = Callable[[Analyzer, fx.Node], None]
FUNCTION_RULES: dict[object, OpRule] = {}
METHOD_RULES: dict[str, OpRule] = {}

_UNARY_FUNCTIONS = (
    F.relu, torch.relu, F.relu6, F.gelu, F.silu, F.mish, F.elu, F.leaky_relu, F.hardswish,
    F.hardsigmoid, F.hardtanh, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.softplus,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, torch.clone,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.interpolate, F.softmax, F.log_softmax,
    torch.softmax, operator.neg, torch.neg, torch.exp, torch.abs, torch.square, torch.sqrt,
    torch.rsqrt, F.normalize, torch.roll,
)  # fmt: skip
_UNARY_METHODS = (
    "relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "detach", "float", "half",
    "double", "to", "type", "type_as", "softmax", "log_softmax", "neg", "exp", "abs", "sqrt",
    "square", "roll", "requires_grad_", "sigmoid_", "clamp", "clamp_", "clamp_min", "pow",
)  # fmt: skip
_BINARY_FUNCTIONS = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub,
    operator.imul, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div,
    torch.maximum, torch.minimum,
)  # fmt: skip
_BINARY_METHODS = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_")
_NON_TENSOR_METHODS = ("size", "dim", "numel", "stride", "get_device", "element_size")


def visit_op(an: Analyzer, node: fx.Node) -> None:
    """Dispatch a call_function / call_method node to its rule (fail closed otherwise)."""
    if node.op == "call_method":
        rule = METHOD_RULES.get(node.target)
    else:
        rule = FUNCTION_RULES.get(node.target)
        if rule is None:
            name = getattr(node.target, "__qualname__", "")
            module = getattr(node.target, "__module__", "")
            rule = FUNCTION_RULES.get(f"{module}.{name}")
    if rule is not None:
        rule(an, node)
    elif not _has_ref_args(an, node):
        # touches no tracked channels (size arithmetic, tensors built from parameters);
        # if such a tensor is later merged with channels, that merge pins them
        an.refs[node.name] = None
    else:
        an.opaque(node, "no rule for this op")


def _has_ref_args(an: Analyzer, node: fx.Node) -> bool:
    from mutnas_torch.analyze import _flatten_args

    return any(an.ref(a) is not None for a in _flatten_args((node.args, node.kwargs)))


def _register(table: dict, keys, rule: OpRule) -> None:
    for key in keys:
        table[key] = rule


def _unary(an: Analyzer, node: fx.Node) -> None:
    passthrough(an, node)


def _non_tensor(an: Analyzer, node: fx.Node) -> None:
    an.refs[node.name] = None


# ---------------------------------------------------------------- elementwise merges
def _aligned_dim(ref: Ref, operand: fx.Node, out_ndim: int) -> int:
    return ref.dim + out_ndim - len(node_shape(operand))


def _binary(an: Analyzer, node: fx.Node) -> None:
    args = list(node.args) + [node.kwargs[k] for k in ("other",) if k in node.kwargs]
    a, b = args[0], args[1] if len(args) > 1 else None
    shape = node_shape(node)
    if shape is None:
        an.refs[node.name] = None
        return
    ra, rb = an.ref(a), an.ref(b)
    if ra is None and rb is None:
        an.refs[node.name] = None
        return
    if ra is not None and rb is not None:
        _merge_two(an, node, a, ra, b, rb, shape)
        return
    x, ref, other = (a, ra, b) if ra is not None else (b, rb, a)
    _with_operand(an, node, x, ref, other, shape)


def _merge_two(an, node, a, ra: Ref, b, rb: Ref, shape) -> None:
    da, db = _aligned_dim(ra, a, len(shape)), _aligned_dim(rb, b, len(shape))
    size_a, size_b = node_shape(a)[ra.dim], node_shape(b)[rb.dim]
    if da == db and size_a == size_b and (ra.outer, ra.inner) == (rb.outer, rb.inner):
        if ra.vertex == rb.vertex:
            an.refs[node.name] = Ref(ra.vertex, da, ra.outer, ra.inner)
            return
        v = an.g.add(ra.vertex, rb.vertex, name=an.unique_name(node.name))
        an.bind(Binding(v.name, None, "merge", [], [[], []], node.name))
        an.refs[node.name] = Ref(v.name, da, ra.outer, ra.inner)
        return
    for keep, drop, d_keep, other in ((ra, rb, da, b), (rb, ra, db, a)):
        if _broadcasts(other, d_keep, len(shape)) and an.size(keep) == shape[d_keep]:
            an.pin(drop, f"{node.name}: broadcast against channels of {keep.vertex!r}")
            an.refs[node.name] = Ref(keep.vertex, d_keep, keep.outer, keep.inner)
            return
    an.opaque(node, "operands carry channels in different layouts")


def _broadcasts(operand, dim: int, out_ndim: int) -> bool:
    """True when ``operand`` has size 1 (or no dimension) at output dimension ``dim``."""
    if not isinstance(operand, fx.Node) or node_shape(operand) is None:
        return True
    shape = node_shape(operand)
    local = dim - (out_ndim - len(shape))
    return local < 0 or shape[local] == 1


def _with_operand(an, node, x, ref: Ref, other, shape) -> None:
    dim = _aligned_dim(ref, x, len(shape))
    if _broadcasts(other, dim, len(shape)):
        an.refs[node.name] = Ref(ref.vertex, dim, ref.outer, ref.inner)
        return
    param = an.param(other)
    if param is not None:
        local = dim - (len(shape) - len(node_shape(other)))
        axis = param.dims[local]
        if axis is not None:
            init = "mean" if node.target in (operator.mul, torch.mul, "mul") else "zeros"
            _bind_params(an, node, ref, dim, [(param.target, axis, init)])
            return
    an.pin(ref, f"{node.name}: combined with a tensor of fixed channels")
    an.refs[node.name] = Ref(ref.vertex, dim, ref.outer, ref.inner)


def _bind_params(
    an, node, ref: Ref, dim: int, params, vertex: str | None = None, kind: str = "params"
) -> None:
    """An invariant vertex owning parameters along the channels (layer scale, class token)."""
    base = vertex or ref.vertex
    v = an.g.invariant(base, name=an.unique_name(node.name))
    axes = [param_axis(target, axis, init, ref) for target, axis, init in params]
    an.bind(Binding(v.name, None, kind, axes, [[]], node.name))
    an.refs[node.name] = Ref(v.name, dim, ref.outer, ref.inner)


# ---------------------------------------------------------------- cat / stack
def _cat(an: Analyzer, node: fx.Node) -> None:
    tensors = node.args[0]
    shape = node_shape(node)
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    dim = dim % len(shape)
    refs = [an.ref(t) for t in tensors]
    present = [r for r in refs if r is not None]
    if not present:
        an.refs[node.name] = None
        return
    if all(r is not None and r.dim == dim and r.outer == r.inner == 1 for r in refs):
        v = an.g.concat(*[r.vertex for r in refs], name=an.unique_name(node.name))
        an.bind(Binding(v.name, None, "concat", [], [[] for _ in refs], node.name))
        an.refs[node.name] = Ref(v.name, dim)
        return
    first = present[0]
    same = all(
        r is None or (r.dim == first.dim and (r.outer, r.inner) == (first.outer, first.inner))
        for r in refs
    )
    if first.dim != dim and same:
        _aligned_cat(an, node, tensors, refs, first)
        return
    if all(r is None or (r.dim == dim and r.outer == r.inner == 1) for r in refs):
        parts = [
            r.vertex if r is not None else an.constant(node, node_shape(t)[dim], dim, "cat").vertex
            for r, t in zip(refs, tensors, strict=True)
        ]
        v = an.g.concat(*parts, name=an.unique_name(node.name))
        an.bind(Binding(v.name, None, "concat", [], [[] for _ in refs], node.name))
        an.refs[node.name] = Ref(v.name, dim)
        return
    an.opaque(node, "concatenates tensors whose channels sit in different places")


def _aligned_cat(an, node, tensors, refs, first: Ref) -> None:
    """A cat along a non-channel dim (ViT's class token): every operand is aligned."""
    vertices = list(dict.fromkeys(r.vertex for r in refs if r is not None))
    params = []
    for r, t in zip(refs, tensors, strict=True):
        if r is not None:
            continue
        param = an.param(t)
        if param is None or param.dims[first.dim] is None:
            an.opaque(node, "concatenates a tensor of fixed channels")
            return
        params.append((param.target, param.dims[first.dim], "zeros"))
    base = vertices[0]
    if len(vertices) > 1:
        base = an.g.add(*vertices, name=an.unique_name(f"{node.name}~aligned")).name
    if params:
        _bind_params(an, node, first, first.dim, params, vertex=base)
    else:
        an.refs[node.name] = Ref(base, first.dim, first.outer, first.inner)


# ---------------------------------------------------------------- shape ops
def _regroup(a: tuple, b: tuple) -> list[tuple[list[int], list[int]]]:
    """Group dims of shapes ``a`` and ``b`` whose products match (a reshape's dim mapping)."""
    groups, i, j = [], 0, 0
    while i < len(a) or j < len(b):
        gi, gj, pa, pb = [], [], 1, 1
        if i < len(a):
            gi.append(i)
            pa, i = a[i], i + 1
        if j < len(b):
            gj.append(j)
            pb, j = b[j], j + 1
        while pa != pb:
            if pa < pb and i < len(a):
                pa, i = pa * a[i], i + 1
                gi.append(i - 1)
            elif j < len(b):
                pb, j = pb * b[j], j + 1
                gj.append(j - 1)
            else:
                return []
        groups.append((gi, gj))
    return groups


def reshape_to(an: Analyzer, node: fx.Node, source: fx.Node, shape_args: tuple | None = None):
    """Follow the channel dimension through a view/reshape/flatten.

    ``shape_args`` (the target shape as written in the code, with its path in the node)
    lets integer literals that encode the channel count be recorded for rewriting.
    """
    ref, in_shape, out_shape = an.ref(source), node_shape(source), node_shape(node)
    if ref is None or out_shape is None:
        an.refs[node.name] = None
        return
    for gi, gj in _regroup(in_shape, out_shape):
        if ref.dim not in gi:
            continue
        before = math.prod(in_shape[d] for d in gi if d < ref.dim) * ref.outer
        after = math.prod(in_shape[d] for d in gi if d > ref.dim) * ref.inner
        channels = an.vertex(ref.vertex).nout
        for j in gj:
            pb = math.prod(out_shape[d] for d in gj if d < j)
            pa = math.prod(out_shape[d] for d in gj if d > j)
            if before % pb or after % pa:
                continue
            new = Ref(ref.vertex, j, before // pb, after // pa)
            if out_shape[j] == new.outer * channels * new.inner:
                an.refs[node.name] = new
                if shape_args is not None:
                    _record_literal(an, node, shape_args, j, new)
                return
    an.opaque(node, "splits the channel dimension (heads, groups or a shuffle)")


def _record_literal(an, node, shape_args, j: int, ref: Ref) -> None:
    path, values = shape_args
    if j < len(values) and isinstance(values[j], int) and values[j] != -1:
        an.literal(node, (*path, j), ref)


def _shape_from_args(node: fx.Node, start: int) -> tuple[tuple, list] | None:
    args = node.args[start:]
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return ("args", start), list(args[0])
    if "shape" in node.kwargs or "size" in node.kwargs:
        key = "shape" if "shape" in node.kwargs else "size"
        return ("kwargs", key), list(node.kwargs[key])
    return ("args_from", start), list(args)


def _view(an: Analyzer, node: fx.Node) -> None:
    start = 1
    reshape_to(an, node, node.args[0], _shape_from_args(node, start))


def _flatten(an: Analyzer, node: fx.Node) -> None:
    reshape_to(an, node, node.args[0])


def _permute(an: Analyzer, node: fx.Node) -> None:
    ref = an.ref(node.args[0])
    if ref is None:
        an.refs[node.name] = None
        return
    dims = node.args[1:]
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = dims[0]
    dims = dims or node.kwargs.get("dims")
    ndim = len(node_shape(node))
    dims = [d % ndim for d in dims]
    an.refs[node.name] = Ref(ref.vertex, dims.index(ref.dim), ref.outer, ref.inner)


def _transpose(an: Analyzer, node: fx.Node) -> None:
    ref = an.ref(node.args[0])
    if ref is None:
        an.refs[node.name] = None
        return
    ndim = len(node_shape(node))
    d0, d1 = (d % ndim for d in node.args[1:3])
    new = {d0: d1, d1: d0}.get(ref.dim, ref.dim)
    an.refs[node.name] = Ref(ref.vertex, new, ref.outer, ref.inner)


def _squeeze_like(an: Analyzer, node: fx.Node) -> None:
    """unsqueeze / squeeze: the channel dimension keeps its size, maybe moves."""
    ref = an.ref(node.args[0])
    in_shape, out_shape = node_shape(node.args[0]), node_shape(node)
    if ref is None or out_shape is None:
        an.refs[node.name] = None
        return
    size = in_shape[ref.dim]
    before = math.prod(in_shape[: ref.dim])
    for j, s in enumerate(out_shape):
        if s == size and math.prod(out_shape[:j]) == before and size > 1:
            an.refs[node.name] = Ref(ref.vertex, j, ref.outer, ref.inner)
            return
    an.opaque(node, "squeezes the channel dimension")


def _reduce(an: Analyzer, node: fx.Node) -> None:
    ref = an.ref(node.args[0])
    in_shape, out_shape = node_shape(node.args[0]), node_shape(node)
    if ref is None or out_shape is None:
        an.refs[node.name] = None
        return
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is not None:
        dims = [d % len(in_shape) for d in (dims if isinstance(dims, (list, tuple)) else [dims])]
    if dims is None or ref.dim in dims:
        # the channels are reduced away, but the value still depends on how many there are
        # and on the new ones (a mean over channels, a max): their count is kept
        an.pin(ref, f"{_describe(node)}: reduces over the channel dimension")
        an.refs[node.name] = None
        return
    keep = len(out_shape) == len(in_shape)
    new = ref.dim if keep else ref.dim - sum(d < ref.dim for d in dims)
    an.refs[node.name] = Ref(ref.vertex, new, ref.outer, ref.inner)


def _getitem(an: Analyzer, node: fx.Node) -> None:
    source, index = node.args
    value = an.refs.get(source.name) if isinstance(source, fx.Node) else None
    if isinstance(value, (list, tuple)):
        an.refs[node.name] = value[index]
        return
    ref = an.ref(source)
    if ref is None:
        an.refs[node.name] = None
        return
    new_dim = _index_dim(index, ref.dim, len(node_shape(source)))
    if new_dim is None:
        an.opaque(node, "indexes into the channel dimension")
        return
    an.refs[node.name] = Ref(ref.vertex, new_dim, ref.outer, ref.inner)


def _index_dim(index, dim: int, ndim: int) -> int | None:
    items = list(index) if isinstance(index, tuple) else [index]
    if any(isinstance(i, fx.Node) for i in items):
        return None
    if Ellipsis in items:
        k = items.index(Ellipsis)
        n_real = sum(i is not None for i in items) - 1
        items = items[:k] + [slice(None)] * (ndim - n_real) + items[k + 1 :]
    in_dim, out_dim = 0, 0
    for item in items:
        if item is None:
            out_dim += 1
            continue
        if in_dim == dim:
            full = isinstance(item, slice) and item == slice(None)
            return out_dim if full else None
        out_dim += 0 if isinstance(item, int) else 1
        in_dim += 1
    return out_dim + (dim - in_dim)


def _expand(an: Analyzer, node: fx.Node) -> None:
    source = node.args[0]
    param = an.param(source)
    out_shape = node_shape(node)
    if param is not None:
        lead = len(out_shape) - len(param.dims)
        an.params[node.name] = ParamRef(param.target, (None,) * lead + param.dims)
        an.refs[node.name] = None
        return
    ref = an.ref(source)
    if ref is None:
        an.refs[node.name] = None
        return
    lead = len(out_shape) - len(node_shape(source))
    new = Ref(ref.vertex, ref.dim + lead, ref.outer, ref.inner)
    if node.target == "expand":
        _record_literal(an, node, _shape_from_args(node, 1), new.dim, new)
    an.refs[node.name] = new


def _param_passthrough(an: Analyzer, node: fx.Node) -> None:
    """contiguous/to/... on a parameter keeps it a parameter."""
    param = an.param(node.args[0])
    if param is not None and node_shape(node) == node_shape(node.args[0]):
        an.params[node.name] = param
        an.refs[node.name] = None
        return
    passthrough(an, node)


def _layer_norm(an: Analyzer, node: fx.Node) -> None:
    """F.layer_norm(x, normalized_shape, weight, bias, eps) with parameters from get_attr."""
    x, normalized = node.args[0], node.args[1]
    ref, shape = an.ref(x), node_shape(node)
    weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
    bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
    first = len(shape) - len(normalized)
    if ref is None or ref.dim < first:
        an.refs[node.name] = ref
        return
    axis = ref.dim - first
    params = []
    for arg, init in ((weight, "ones"), (bias, "zeros")):
        p = an.param(arg)
        if arg is not None and p is None:
            an.opaque(node, "layer_norm with computed weights")
            return
        if p is not None:
            params.append((p.target, p.dims[axis], init))
    _bind_params(an, node, ref, ref.dim, params, kind="layernorm")
    if isinstance(normalized, (list, tuple)) and isinstance(normalized[axis], int):
        an.literal(node, ("args", 1, axis), ref)


for fn in _UNARY_FUNCTIONS:
    FUNCTION_RULES[fn] = _unary
FUNCTION_RULES["torchvision.ops.stochastic_depth.stochastic_depth"] = _unary
_register(METHOD_RULES, _UNARY_METHODS, _param_passthrough)
_register(FUNCTION_RULES, _BINARY_FUNCTIONS, _binary)
_register(METHOD_RULES, _BINARY_METHODS, _binary)
_register(METHOD_RULES, _NON_TENSOR_METHODS, _non_tensor)
_register(FUNCTION_RULES, (getattr, len), _non_tensor)
_register(FUNCTION_RULES, (torch.cat, torch.concat), _cat)
_register(FUNCTION_RULES, (torch.flatten,), _flatten)
_register(METHOD_RULES, ("flatten", "unflatten"), _flatten)
_register(FUNCTION_RULES, (torch.reshape,), _view)
_register(METHOD_RULES, ("view", "reshape"), _view)
_register(FUNCTION_RULES, (torch.permute,), _permute)
_register(METHOD_RULES, ("permute",), _permute)
_register(FUNCTION_RULES, (torch.transpose,), _transpose)
_register(METHOD_RULES, ("transpose",), _transpose)
_register(FUNCTION_RULES, (torch.unsqueeze, torch.squeeze), _squeeze_like)
_register(METHOD_RULES, ("unsqueeze", "squeeze"), _squeeze_like)
_register(FUNCTION_RULES, (torch.mean, torch.sum, torch.amax, torch.amin), _reduce)
_register(METHOD_RULES, ("mean", "sum", "amax", "amin", "std", "var"), _reduce)
_register(FUNCTION_RULES, (operator.getitem,), _getitem)
_register(METHOD_RULES, ("expand", "expand_as"), _expand)
_register(FUNCTION_RULES, (F.layer_norm,), _layer_norm)


def _swin_attention(an: Analyzer, node: fx.Node) -> None:
    from mutnas_torch.attention import swin_attention_rule

    swin_attention_rule(an, node)


FUNCTION_RULES["torchvision.models.swin_transformer.shifted_window_attention"] = _swin_attention


def _patch_merging_pad(an: Analyzer, node: fx.Node) -> None:
    """Swin's ``_patch_merging_pad``: [.., H, W, C] -> [.., H/2, W/2, 4C], channel k*C + c <- c."""
    ref, shape = an.ref(node.args[0]), node_shape(node)
    if ref is None or shape is None or ref.dim != len(shape) - 1:
        an.opaque(node, "patch merging with channels outside the last dimension")
        return
    an.refs[node.name] = Ref(ref.vertex, ref.dim, 4 * ref.outer, ref.inner)


FUNCTION_RULES["torchvision.models.swin_transformer._patch_merging_pad"] = _patch_merging_pad
