"""Attention layers: the block reads and writes the stream; heads are re-cut inside.

``nn.MultiheadAttention`` and torchvision's ``shifted_window_attention`` need their input
and output widths equal (the embedding size E), so the vertex is *invariant*: it follows
the stream, with a size that stays a multiple of the head count H. When E changes to E',
each head keeps E'/H internal channels (the strongest q/k/v rows when shrinking, zero rows
appended when growing) and q is rescaled by sqrt(d'/d) so logits keep their 1/sqrt(d)
scale: growing is then exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx, nn

from mutnas_torch.analyze import Analyzer, Ref
from mutnas_torch.bindings import Binding, get_tensor
from mutnas_torch.trace import node_shape

__all__ = ["attention_edits", "mha_rule", "swin_attention_rule"]


def _bind(an: Analyzer, node: fx.Node, ref: Ref, heads: int, params: dict, module=None) -> str:
    v = an.g.invariant(ref.vertex, multiple_of=heads, name=an.unique_name(module or node.name))
    an.bind(Binding(v.name, module, "attention", [], [[]], node.name, {"heads": heads, **params}))
    return v.name


def mha_rule(an: Analyzer, node: fx.Node, m: nn.MultiheadAttention) -> None:
    """Self-attention through ``nn.MultiheadAttention`` (query is key is value)."""
    query, key, value = (list(node.args) + [None] * 3)[:3]
    key = node.kwargs.get("key", key)
    value = node.kwargs.get("value", value)
    ref = an.ref(query)
    last = len(node_shape(query)) - 1 if node_shape(query) else -1
    plain = ref is not None and ref.dim == last and ref.outer == ref.inner == 1
    if not (plain and query is key is value and m._qkv_same_embed_dim):
        an.opaque(node, "only self-attention with a shared q/k/v projection is mutable")
        return
    t = node.target
    params = {
        "in_w": f"{t}.in_proj_weight",
        "in_b": f"{t}.in_proj_bias" if m.in_proj_bias is not None else None,
        "out_w": f"{t}.out_proj.weight",
        "out_b": f"{t}.out_proj.bias" if m.out_proj.bias is not None else None,
    }
    name = _bind(an, node, ref, m.num_heads, params, module=t)
    an.refs[node.name] = [Ref(name, last), None]


def swin_attention_rule(an: Analyzer, node: fx.Node) -> None:
    """torchvision's ``shifted_window_attention(x, qkv_weight, proj_weight, bias, ...)``."""
    args = list(node.args)
    x, qkv_w, proj_w, heads = args[0], args[1], args[2], args[5]
    ref = an.ref(x)
    shape = node_shape(x)
    targets = {}
    for key, arg in (("in_w", qkv_w), ("out_w", proj_w)):
        p = an.param(arg)
        targets[key] = p.target if p is not None else None
    for key, name in (("in_b", "qkv_bias"), ("out_b", "proj_bias")):
        p = an.param(node.kwargs.get(name))
        targets[key] = p.target if p is not None else None
    plain = ref is not None and ref.dim == len(shape) - 1 and ref.outer == ref.inner == 1
    if not plain or None in (targets["in_w"], targets["out_w"]) or node.kwargs.get("logit_scale"):
        an.opaque(node, "window attention with computed weights or a logit scale")
        return
    name = _bind(an, node, ref, int(heads), targets)
    an.refs[node.name] = Ref(name, ref.dim)


def attention_edits(model: nn.Module, binding: Binding, stream: np.ndarray):
    """Axis edits (and the q rescale) for an attention vertex whose stream map is ``stream``."""
    from mutnas_torch.surgery import AxisEdit

    e = binding.extra
    heads = e["heads"]
    in_w = get_tensor(model, e["in_w"])
    width = in_w.shape[1]  # E before the change
    head_dim, new_dim = width // heads, len(stream) // heads
    inner = _internal_map(in_w.detach(), heads, head_dim, new_dim)
    rows = np.concatenate([block * width + np.where(inner >= 0, inner, -1) for block in range(3)])
    rows = np.where(np.concatenate([inner] * 3) >= 0, rows, -1)
    scale = np.ones(len(rows))
    scale[: len(inner)] = np.sqrt(new_dim / head_dim)
    edits = [
        AxisEdit(e["in_w"], 0, rows, "zeros", scale),
        AxisEdit(e["in_w"], 1, stream, "zeros"),
        AxisEdit(e["out_w"], 1, inner, "zeros"),
        AxisEdit(e["out_w"], 0, stream, "normal"),
    ]
    if e.get("in_b"):
        edits.append(AxisEdit(e["in_b"], 0, rows, "zeros", scale))
    if e.get("out_b"):
        edits.append(AxisEdit(e["out_b"], 0, stream, "zeros"))
    return edits


def _internal_map(in_w: torch.Tensor, heads: int, head_dim: int, new_dim: int) -> np.ndarray:
    """Per head, which internal channels survive (strongest q/k/v rows first), -1 = new."""
    width = heads * head_dim
    strength = sum(in_w[b * width : (b + 1) * width].abs().sum(dim=1) for b in range(3))
    strength = strength.double().cpu().numpy().reshape(heads, head_dim)
    out = []
    for h in range(heads):
        keep = min(head_dim, new_dim)
        best = np.sort(np.argsort(-strength[h], kind="stable")[:keep])
        out.append(np.concatenate([h * head_dim + best, np.full(new_dim - keep, -1)]))
    return np.concatenate(out).astype(np.int64)


def sync_mha(m: nn.MultiheadAttention, v, binding) -> None:
    e = m.in_proj_weight.shape[1]
    m.embed_dim = m.kdim = m.vdim = e
    m.head_dim = e // m.num_heads
    m.out_proj.in_features = m.out_proj.out_features = e
