"""Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``): one absorb vertex per stack.

The vertex's size is the hidden size H, shared by every layer and direction of the stack
(an LSTM with ``proj_size`` P > 0: the size is P, the width of h, and H stays fixed); its
input is the first layer's input size. Per layer ``k`` and direction (``_reverse``):

- ``weight_ih_l{k}`` [G·H, in], ``weight_hh_l{k}`` [G·H, H] and the biases [G·H] stack
  G gate blocks along dim 0 (G = 4 LSTM, 3 GRU, 1 RNN): unit j is row j of every block
  (``outer=G``);
- ``weight_hh_l{k}`` reads h on dim 1, and ``weight_ih_l{k}`` for k > 0 reads the previous
  layer's output, D·H wide with direction d's unit j at d·H + j (``outer=D``).

The outputs ``out`` and ``h_n`` (and ``c_n``) carry the units on their last dim, ``out``
expanded by the directions. Any other use of them goes through the ordinary op rules,
which follow reshapes and indexing or fail closed.

Growth (``"exact"``, ``"trainable"``): a new unit gets random rows (zero biases) in every
gate, like a new Linear neuron, and every weight that *reads* it starts at zero: the
recurrent columns of ``weight_hh``, the next layer's ``weight_ih`` columns and the
consumers' input columns. The new unit computes and trains, but nothing reads it yet, so
every output is unchanged. (Zero rows would also keep the function, since an LSTM unit
with zero gate rows keeps c = h = 0 and a GRU unit keeps h = h0 = 0, but such a unit
reads as zero everywhere, so the zero columns reading it get no gradient: it would never
start to learn.) A LayerNorm right after the layer sees the new units, so growth there is
not exact. ``"net2net"``: a new unit copies all gate rows of an old one, and the recurrent
columns reading either are halved like the consumers' columns, so every copy equals its
original at every step: exact too.

An initial state passed explicitly (``lstm(x, (h0, c0))``) pins H, since its size is
fixed elsewhere (a literal, or another layer). Packed sequences fail closed.
"""

from __future__ import annotations

import re

from torch import fx, nn

from mutnas_torch.analyze import Analyzer, Ref, param_axis
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.trace import node_shape

__all__ = ["GATES", "rnn_rule", "sync_rnn"]

GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}

_NAME = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$")


def rnn_rule(an: Analyzer, node: fx.Node, m: nn.RNNBase) -> None:
    """``out, h_n = rnn(x)`` or ``out, (h_n, c_n) = lstm(x)`` with x a plain tensor.

    Example:
        >>> import torch, mutnas_torch as mt
        >>> class Tagger(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lstm = torch.nn.LSTM(4, 8, batch_first=True, bidirectional=True)
        ...         self.head = torch.nn.Linear(16, 3)
        ...     def forward(self, x):
        ...         out, (h, c) = self.lstm(x)
        ...         return self.head(out)
        >>> x = torch.randn(2, 5, 4)
        >>> mm = mt.mutable(Tagger(), x, strict=True)
        >>> before = mm(x)
        >>> _ = mm.resize("lstm", 2)
        >>> mm.module.lstm, mm.module.head.in_features, torch.allclose(mm(x), before, atol=1e-6)
        (LSTM(4, 10, batch_first=True, bidirectional=True), 20, True)
    """
    x = node.args[0] if node.args else node.kwargs.get("input")
    shape = node_shape(x) if isinstance(x, fx.Node) else None
    if shape is None or m.mode not in GATES:
        an.opaque(node, "only plain tensor inputs (not packed sequences) are supported")
        return
    last = len(shape) - 1
    ref = an.ref(x)
    if ref is not None and ref.dim != last:
        an.pin(ref, f"module {node.target!r} reads features on the last dim")
        ref = None
    if ref is None:
        ref = an.constant(node, m.input_size, last, f"input of {node.target!r}")
    proj = getattr(m, "proj_size", 0)
    size = proj or m.hidden_size
    v = an.g.absorb(ref.vertex, nout=size, name=an.unique_name(node.target))
    outputs, inputs, reads_self = _param_axes(node.target, m, ref)
    extra = {"reads_self": reads_self}
    an.bind(Binding(v.name, node.target, "recurrent", outputs, [inputs], node.name, extra))
    n_dirs = 2 if m.bidirectional else 1
    out = Ref(v.name, last, n_dirs)
    h = Ref(v.name, last)  # h_n is [D·L, N, H], or [D·L, H] for an unbatched x [T, in]
    if m.mode != "LSTM":
        an.refs[node.name] = [out, h]
    elif proj:
        c = an.constant(node, m.hidden_size, last, f"cell state of {node.target!r} (proj_size)")
        an.refs[node.name] = [out, (h, c)]
    else:
        an.refs[node.name] = [out, (h, h)]
    _pin_initial_state(an, node, h)


def _param_axes(t: str, m: nn.RNNBase, ref: Ref):
    """(output axes, first-layer input axes, [(target, axis)] of the axes reading the units)."""
    gates = GATES[m.mode]
    n_dirs = 2 if m.bidirectional else 1
    proj = getattr(m, "proj_size", 0)
    outputs: list[ParamAxis] = []
    inputs: list[ParamAxis] = []
    reads_self: list[tuple[str, int]] = []
    for name in m._flat_weights_names:
        kind, which, layer = _NAME.match(name).group(1, 2, 3)
        target = f"{t}.{name}"
        if which == "hr":  # projection [P, H]: its rows are the units
            outputs.append(ParamAxis(target, 0, init="normal"))
            continue
        if not proj:  # with a projection, the gate rows are the fixed H
            init = "normal" if kind == "weight" else "zeros"
            outputs.append(ParamAxis(target, 0, outer=gates, init=init))
        if kind == "bias":
            continue
        if which == "hh":
            outputs.append(ParamAxis(target, 1, init="zeros"))
            reads_self.append((target, 1))
        elif layer == "0":
            inputs.append(param_axis(target, 1, "zeros", ref))
        else:
            outputs.append(ParamAxis(target, 1, outer=n_dirs, init="zeros"))
            reads_self.append((target, 1))
    return outputs, inputs, reads_self


def _pin_initial_state(an: Analyzer, node: fx.Node, h: Ref) -> None:
    from mutnas_torch.analyze import _flatten_args

    hx = node.args[1] if len(node.args) > 1 else node.kwargs.get("hx")
    if hx is None:
        return
    an.pin(h, f"module {node.target!r} is given an initial state")
    for arg in _flatten_args(hx):
        state = an.ref(arg)
        if state is not None:
            an.pin(state, f"initial state of module {node.target!r}")


def sync_rnn(m: nn.RNNBase) -> None:
    """Sizes from the weights, and ``_flat_weights`` pointed at the new parameters.

    Example:
        >>> import torch
        >>> gru = torch.nn.GRU(4, 8)
        >>> gru._parameters["weight_ih_l0"] = torch.nn.Parameter(torch.zeros(24, 6))
        >>> sync_rnn(gru)
        >>> gru
        GRU(6, 8)
    """
    m.input_size = m.weight_ih_l0.shape[1]
    if getattr(m, "proj_size", 0):
        m.proj_size = m.weight_hr_l0.shape[0]
    else:
        m.hidden_size = m.weight_hh_l0.shape[1]
    m._init_flat_weights()  # surgery swaps entries of _parameters; older torch never notices
