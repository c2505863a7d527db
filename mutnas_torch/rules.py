"""Rules that turn fx nodes into vertices: layers (modules) here, tensor ops in
:mod:`mutnas_torch.rules_ops`.

A rule receives the :class:`~mutnas_torch.analyze.Analyzer`, the node, and for modules
the module; it creates vertices and bindings and sets ``an.refs[node.name]``.
Register rules for your own layers with :func:`register_module_rule`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import fx, nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from mutnas_torch.analyze import Analyzer, Ref, param_axis
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.trace import node_shape

__all__ = ["MODULE_RULES", "PASSTHROUGH_MODULES", "register_module_rule", "visit"]

ModuleRule = Callable[[Analyzer, fx.Node, nn.Module], None]
MODULE_RULES: list[tuple[type, ModuleRule]] = []

PASSTHROUGH_MODULES: tuple[type, ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.LogSigmoid, nn.Threshold,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d,
    nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.Softmax, nn.LogSoftmax, nn.Softmax2d, nn.LocalResponseNorm,
)  # fmt: skip


def register_module_rule(cls: type[nn.Module]) -> Callable[[ModuleRule], ModuleRule]:
    """Register ``rule(analyzer, node, module)`` for modules of type ``cls`` (first match wins).

    Example:
        >>> import torch
        >>> from mutnas_torch.rules import register_module_rule, passthrough
        >>> class Swish(torch.nn.Module):
        ...     def forward(self, x):
        ...         return x * torch.sigmoid(x)
        >>> _ = register_module_rule(Swish)(lambda an, node, m: passthrough(an, node))
    """

    def decorate(rule: ModuleRule) -> ModuleRule:
        MODULE_RULES.insert(0, (cls, rule))
        return rule

    return decorate


def visit(an: Analyzer, node: fx.Node) -> None:
    """Apply the rule for ``node`` (fail closed when there is none)."""
    from mutnas_torch import rules_ops

    if node.op == "call_module":
        module = an.modules[node.target]
        stateful = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        if an.calls[node.target] > 1 and stateful:
            an.opaque(node, "the module is called more than once (shared weights)")
            return
        for cls, rule in MODULE_RULES:
            if isinstance(module, cls):
                rule(an, node, module)
                return
        if isinstance(module, PASSTHROUGH_MODULES):
            passthrough(an, node)
            return
        an.opaque(node, f"no rule for module type {type(module).__qualname__}")
        return
    rules_ops.visit_op(an, node)


def passthrough(an: Analyzer, node: fx.Node, source: fx.Node | None = None) -> None:
    """Output channels are the input's (activations, pooling): same reference.

    Fails closed when the channel dimension's size or position changes.
    """
    source = node.args[0] if source is None else source
    ref = an.ref(source)
    shape, in_shape = node_shape(node), node_shape(source) if isinstance(source, fx.Node) else None
    if ref is None:
        an.refs[node.name] = None
        return
    if shape is None:
        an.opaque(node, "no tensor output")
        return
    if in_shape is None or len(shape) != len(in_shape) or shape[ref.dim] != in_shape[ref.dim]:
        an.opaque(node, "changes the channel dimension")
        return
    an.refs[node.name] = ref


def _input_ref(an: Analyzer, node: fx.Node, dim: int, size: int, why: str) -> Ref:
    """The input's reference if its channels sit plainly at ``dim``; else a pinned constant."""
    ref = an.ref(node.args[0])
    if ref is not None and ref.dim == dim and ref.outer == ref.inner == 1:
        return ref
    if ref is not None:
        an.pin(ref, f"module {node.target!r} reads channels at dim {dim}: {why}")
    return an.constant(node, size, dim, f"input of {node.target!r}")


def _bias(target: str, module: nn.Module) -> list[ParamAxis]:
    return [ParamAxis(f"{target}.bias", 0)] if getattr(module, "bias", None) is not None else []


@register_module_rule(nn.Linear)
def linear(an: Analyzer, node: fx.Node, m: nn.Linear) -> None:
    ref = an.ref(node.args[0])
    shape = node_shape(node)
    last = len(shape) - 1
    if ref is not None and ref.dim != last:
        an.refs[node.name] = ref  # acts on a non-channel dimension: channels pass through
        return
    if ref is None:
        ref = an.constant(node, m.in_features, last, f"input of {node.target!r}")
    t = node.target
    v = an.g.absorb(ref.vertex, nout=m.out_features, name=an.unique_name(t))
    an.bind(
        Binding(
            v.name,
            t,
            "linear",
            outputs=[ParamAxis(f"{t}.weight", 0, init="normal"), *_bias(t, m)],
            inputs=[[param_axis(f"{t}.weight", 1, "zeros", ref)]],
            node=node.name,
        )
    )
    an.refs[node.name] = Ref(v.name, last)


@register_module_rule(_ConvNd)
def conv(an: Analyzer, node: fx.Node, m: _ConvNd) -> None:
    t = node.target
    transposed = isinstance(m, _ConvTransposeNd)
    ref = _input_ref(an, node, 1, m.in_channels, "channels-first")
    groups = m.groups
    out_axis, in_axis = (1, 0) if transposed else (0, 1)
    weight_out = ParamAxis(f"{t}.weight", out_axis, init="normal")
    if groups == 1:
        v = an.g.absorb(ref.vertex, nout=m.out_channels, name=an.unique_name(t))
        inputs = [[ParamAxis(f"{t}.weight", in_axis)]]
        an.bind(Binding(v.name, t, "conv", [weight_out, *_bias(t, m)], inputs, node.name))
    elif transposed:
        an.opaque(node, "grouped transposed convolution is not supported")
        return
    elif groups == m.in_channels == m.out_channels:
        v = an.g.invariant(ref.vertex, name=an.unique_name(t))
        an.bind(Binding(v.name, t, "depthwise", [weight_out, *_bias(t, m)], [[]], node.name))
    else:
        v = an.g.absorb(ref.vertex, nout=m.out_channels, groups=groups, name=an.unique_name(t))
        an.bind(Binding(v.name, t, "grouped", [weight_out, *_bias(t, m)], [[]], node.name))
    an.refs[node.name] = Ref(v.name, 1)


def _norm_params(t: str, m: nn.Module, axis: int, ref: Ref) -> list[ParamAxis]:
    found = []
    for name, init in (("weight", "ones"), ("bias", "zeros")):
        if getattr(m, name, None) is not None:
            found.append(param_axis(f"{t}.{name}", axis, init, ref))
    for name, init in (("running_mean", "zeros"), ("running_var", "ones")):
        if getattr(m, name, None) is not None:
            found.append(param_axis(f"{t}.{name}", axis, init, ref))
    return found


def _aligned_norm(an, node, m, kind: str, **options) -> None:
    ref = _input_ref(an, node, 1, getattr(m, "num_features", 0) or m.num_channels, kind)
    v = an.g.invariant(ref.vertex, name=an.unique_name(node.target), **options)
    an.bind(
        Binding(v.name, node.target, kind, _norm_params(node.target, m, 0, ref), [[]], node.name)
    )
    an.refs[node.name] = Ref(v.name, 1)


@register_module_rule(nn.modules.batchnorm._NormBase)
def batchnorm(an: Analyzer, node: fx.Node, m: nn.Module) -> None:
    _aligned_norm(an, node, m, "batchnorm")


@register_module_rule(nn.GroupNorm)
def groupnorm(an: Analyzer, node: fx.Node, m: nn.GroupNorm) -> None:
    _aligned_norm(an, node, m, "groupnorm", multiple_of=m.num_groups)


@register_module_rule(nn.LayerNorm)
def layernorm(an: Analyzer, node: fx.Node, m: nn.LayerNorm) -> None:
    ref = an.ref(node.args[0])
    shape = node_shape(node)
    first = len(shape) - len(m.normalized_shape)
    if ref is None or ref.dim < first:
        an.refs[node.name] = ref  # normalises other dimensions only
        return
    axis = ref.dim - first
    v = an.g.invariant(ref.vertex, name=an.unique_name(node.target))
    params = _norm_params(node.target, m, axis, ref)
    extra = {"axis": axis, "outer": ref.outer, "inner": ref.inner}
    an.bind(Binding(v.name, node.target, "layernorm", params, [[]], node.name, extra))
    an.refs[node.name] = Ref(v.name, ref.dim, ref.outer, ref.inner)


@register_module_rule(nn.PReLU)
def prelu(an: Analyzer, node: fx.Node, m: nn.PReLU) -> None:
    if m.num_parameters == 1:
        passthrough(an, node)
        return
    ref = _input_ref(an, node, 1, m.num_parameters, "channels-first")
    v = an.g.invariant(ref.vertex, name=an.unique_name(node.target))
    weight = ParamAxis(f"{node.target}.weight", 0, init="mean")
    an.bind(Binding(v.name, node.target, "prelu", [weight], [[]], node.name))
    an.refs[node.name] = Ref(v.name, 1)


@register_module_rule(nn.Embedding)
def embedding(an: Analyzer, node: fx.Node, m: nn.Embedding) -> None:
    shape = node_shape(node)
    const = an.g.input(m.num_embeddings, name=an.unique_name(f"{node.target}~indices"))
    v = an.g.absorb(const, nout=m.embedding_dim, name=an.unique_name(node.target))
    weight = ParamAxis(f"{node.target}.weight", 1, init="normal")
    an.bind(Binding(v.name, node.target, "embedding", [weight], [[]], node.name))
    an.refs[node.name] = Ref(v.name, len(shape) - 1)


@register_module_rule(nn.Flatten)
def flatten_module(an: Analyzer, node: fx.Node, m: nn.Flatten) -> None:
    from mutnas_torch.rules_ops import reshape_to

    reshape_to(an, node, node.args[0])


@register_module_rule(nn.Unflatten)
def unflatten_module(an: Analyzer, node: fx.Node, m: nn.Unflatten) -> None:
    from mutnas_torch.rules_ops import reshape_to

    reshape_to(an, node, node.args[0])


@register_module_rule(nn.MultiheadAttention)
def multihead_attention(an: Analyzer, node: fx.Node, m: nn.MultiheadAttention) -> None:
    from mutnas_torch.attention import mha_rule

    mha_rule(an, node, m)


@register_module_rule(nn.RNNBase)
def recurrent(an: Analyzer, node: fx.Node, m: nn.RNNBase) -> None:
    from mutnas_torch.recurrent import rnn_rule

    rnn_rule(an, node, m)
