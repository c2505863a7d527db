"""From a traced model to a mutnas graph: which tensor dimension is channels, and whose.

Every tensor value of the fx graph gets a :class:`Ref`: the vertex whose neurons its
channel dimension carries, that dimension's index, and its expansion (a flatten after a
conv turns each channel into a block of ``inner`` features). Vertices are created only
where channels are produced (layers, inputs), merged (adds, concats) or carry parameters
(norms); everything else passes references along.

Whatever the rules do not understand fails closed: the channels flowing into it are
*pinned* (a fixed vertex makes the solver keep them exactly) and its outputs become fixed
constants. Nothing is ever passed through silently.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from torch import fx, nn

import mutnas as mn
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.errors import UnsupportedLayerError
from mutnas_torch.trace import node_shape

__all__ = ["Analysis", "Literal", "ParamRef", "Ref", "analyze"]

log = logging.getLogger(__name__)

LAST_DIM_MODULES = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.MultiheadAttention, nn.RNNBase)


@dataclass(frozen=True)
class Ref:
    """The channel dimension of a tensor: ``dim`` carries vertex ``vertex``'s neurons."""

    vertex: str
    dim: int
    outer: int = 1
    inner: int = 1


@dataclass(frozen=True)
class ParamRef:
    """A tensor that is a parameter or buffer (possibly expanded): ``target``, its shape."""

    target: str
    dims: tuple[int | None, ...]  # for each dim of the value, the parameter's dim (None: new)


@dataclass
class Literal:
    """An integer baked into the traced code that must follow a vertex's size."""

    node: str
    path: tuple  # ("args", i[, j]) or ("kwargs", name[, j])
    vertex: str
    outer: int = 1
    inner: int = 1


@dataclass
class Analysis:
    """The result of :func:`analyze`."""

    graph: mn.Graph
    bindings: dict[str, Binding] = field(default_factory=dict)
    literals: list[Literal] = field(default_factory=list)
    pinned: dict[str, str] = field(default_factory=dict)  # pin vertex -> reason
    refs: dict[str, Any] = field(default_factory=dict)


class Analyzer:
    """Walks the fx graph once, in order, applying the rules in :mod:`mutnas_torch.rules`."""

    def __init__(self, gm: fx.GraphModule, *, strict: bool = False):
        self.gm = gm
        self.strict = strict
        self.modules = dict(gm.named_modules())
        self.result = Analysis(mn.Graph())
        self.g = self.result.graph
        self.refs: dict[str, Any] = self.result.refs
        self.params: dict[str, ParamRef] = {}
        self.calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")

    # ------------------------------------------------------------ driver
    def run(self) -> Analysis:
        from mutnas_torch import rules

        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "get_attr":
                self._get_attr(node)
            elif node.op == "output":
                self._output(node)
            else:
                rules.visit(self, node)
        return self.result

    def _placeholder(self, node: fx.Node) -> None:
        shape = node_shape(node)
        meta = node.meta.get("tensor_meta")
        if shape is None or not shape or (meta is not None and not meta.dtype.is_floating_point):
            self.refs[node.name] = None
            return
        dim = len(shape) - 1 if self._feeds_last_dim(node) else (1 if len(shape) > 1 else 0)
        v = self.g.input(shape[dim], name=node.name)
        self.refs[node.name] = Ref(v.name, dim)

    def _feeds_last_dim(self, node: fx.Node) -> bool:
        for user in node.users:
            if user.op == "call_module" and isinstance(self.modules[user.target], LAST_DIM_MODULES):
                return True
        return False

    def _get_attr(self, node: fx.Node) -> None:
        shape = node_shape(node)
        self.refs[node.name] = None
        if shape is not None:
            self.params[node.name] = ParamRef(node.target, tuple(range(len(shape))))

    def _output(self, node: fx.Node) -> None:
        outputs = []
        for arg in _flatten_args(node.args):
            ref = self.ref(arg)
            if ref is not None:
                outputs.append(self.pin(ref, f"graph output {arg.name!r}").name)
        if outputs:
            self.g.set_outputs(*outputs)

    # ------------------------------------------------------------ helpers for rules
    def ref(self, arg: Any) -> Ref | None:
        if isinstance(arg, fx.Node):
            value = self.refs.get(arg.name)
            return value if isinstance(value, Ref) else None
        return None

    def param(self, arg: Any) -> ParamRef | None:
        return self.params.get(arg.name) if isinstance(arg, fx.Node) else None

    def vertex(self, name: str) -> mn.Vertex:
        return self.g[name]

    def size(self, ref: Ref) -> int:
        return ref.outer * self.g[ref.vertex].nout * ref.inner

    def unique_name(self, base: str) -> str:
        name, k = base, 1
        while name in self.g:
            k += 1
            name = f"{base}#{k}"
        return name

    def bind(self, binding: Binding) -> None:
        self.result.bindings[binding.vertex] = binding

    def pin(self, ref: Ref, reason: str) -> mn.Vertex:
        """Fix the neurons of ``ref``'s vertex class: the solver will keep them all."""
        v = self.g.invariant(
            ref.vertex,
            name=self.unique_name(f"{ref.vertex}~pinned"),
            fixed=True,
            meta={"pin": reason},
        )
        self.result.pinned[v.name] = reason
        log.debug("pinned %s: %s", ref.vertex, reason)
        return v

    def constant(self, node: fx.Node, size: int, dim: int, reason: str) -> Ref:
        """A fixed input vertex standing for a tensor whose channels nobody may change."""
        v = self.g.input(size, name=self.unique_name(f"{node.name}~const"), meta={"const": reason})
        return Ref(v.name, dim)

    def opaque(self, node: fx.Node, reason: str) -> None:
        """Fail closed: pin every channel flowing in, make every tensor flowing out fixed.

        In strict mode, raise :class:`UnsupportedLayerError` instead when channels flow in.
        """
        if self.strict and any(
            self.ref(a) is not None for a in _flatten_args((node.args, node.kwargs))
        ):
            path, type_name = _where(self, node)
            raise UnsupportedLayerError(
                path,
                type_name,
                f"{reason}. Register a rule (mutnas_torch.rules.register_module_rule), mark it "
                f"a leaf, or trace with strict=False to freeze its channels instead",
            )
        for arg in _flatten_args((node.args, node.kwargs)):
            ref = self.ref(arg)
            if ref is not None:
                self.pin(ref, f"{_describe(node)}: {reason}")
        shape = node_shape(node)
        if shape is None or not shape:
            self.refs[node.name] = _OPAQUE
            return
        dim = 1 if len(shape) > 1 else 0
        for arg in node.args[:1]:  # same rank as the main input: keep its channel position
            ref = self.ref(arg)
            if ref is not None and node_shape(arg) and len(node_shape(arg)) == len(shape):
                dim = ref.dim
        self.refs[node.name] = self.constant(node, shape[dim], dim, reason)

    def literal(self, node: fx.Node, path: tuple, ref: Ref) -> None:
        self.result.literals.append(Literal(node.name, path, ref.vertex, ref.outer, ref.inner))


class _Opaque:
    """Marker for a non-tensor value produced by an opaque node (tuples of unknown tensors)."""


_OPAQUE = _Opaque()


def _flatten_args(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    stack = [args]
    while stack:
        item = stack.pop()
        if isinstance(item, fx.Node):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, slice):
            stack.extend([item.start, item.stop, item.step])
    return out


def _where(an: Analyzer, node: fx.Node) -> tuple[str, str]:
    if node.op == "call_module":
        return str(node.target), type(an.modules[node.target]).__qualname__
    target = getattr(node.target, "__qualname__", None) or str(node.target)
    return node.name, f"{node.op} {target}"


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"module {node.target!r}"
    target = getattr(node.target, "__qualname__", None) or str(node.target)
    return f"{node.op} {target} at node {node.name!r}"


def analyze(gm: fx.GraphModule, *, strict: bool = False) -> Analysis:
    """Build the mutnas graph and surgery bindings of a traced, shape-annotated model.

    Args:
        gm: a traced model whose nodes carry shapes (see :func:`mutnas_torch.trace.trace`).
        strict: raise :class:`UnsupportedLayerError` for ops whose channel semantics are
            unknown, instead of pinning their channels.
    """
    return Analyzer(gm, strict=strict).run()


def param_axis(target: str, axis: int, init: str, ref: Ref | None = None) -> ParamAxis:
    """A :class:`ParamAxis` with the expansion of ``ref`` (if any)."""
    if ref is None:
        return ParamAxis(target, axis, init=init)
    return ParamAxis(target, axis, ref.outer, ref.inner, init)
