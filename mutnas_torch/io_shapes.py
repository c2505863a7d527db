"""Tensor shapes a layer's own attributes imply, checked when a model file is loaded.

A model file records a Linear's ``in_features`` and its ``weight`` separately; a file in
which they disagree must not load (it would run, and compute nonsense, or fail deep
inside a later mutation). :func:`check_shapes` asks the table :data:`FAMILIES` what each
tensor of a module must look like and refuses a mismatch with one line naming the module
and the tensor. Families: Linear, Bilinear, convolutions and transposed convolutions,
batch/instance norms, GroupNorm, LayerNorm (and torchvision's LayerNorm2d), RMSNorm,
Embedding(Bag), PReLU, MultiheadAttention, RNN/LSTM/GRU and their cells, and
torchvision's relative-position attention tables (Swin, MaxViT). Modules of other types
are not checked here (their tensors are still verified by checksum).

For recurrent layers the parameter *names* follow from the settings too; they are checked
before ``_init_flat_weights`` reads the parameters by those names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.recurrent import GATES

__all__ = ["FAMILIES", "check_shapes"]

Shapes = dict[str, tuple[int, ...]]


def _size(m: nn.Module, key: str) -> int:
    value = vars(m).get(key)
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} is {value!r:.40}, not a size")
    return value


def _sizes(m: nn.Module, key: str, n: int | None = None) -> tuple[int, ...]:
    value = vars(m).get(key)
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise ValueError(f"{key} is {value!r:.40}, not a tuple of sizes")
    if n is not None and len(value) != n:
        raise ValueError(f"{key} has {len(value)} entries, not {n}")
    return tuple(value)


def _divides(m: nn.Module, n: int, key: str) -> int:
    groups = _size(m, key)
    if groups == 0 or n % groups:
        raise ValueError(f"{key} = {groups} does not divide {n}")
    return n // groups


def _linear(m: nn.Module) -> Shapes:
    out = _size(m, "out_features")
    return {"weight": (out, _size(m, "in_features")), "bias": (out,)}


def _bilinear(m: nn.Module) -> Shapes:
    out = _size(m, "out_features")
    return {"weight": (out, _size(m, "in1_features"), _size(m, "in2_features")), "bias": (out,)}


def _conv(m: nn.Module) -> Shapes:
    n_in, n_out = _size(m, "in_channels"), _size(m, "out_channels")
    kernel = _sizes(m, "kernel_size")
    if isinstance(m, _ConvTransposeNd):
        weight = (n_in, _divides(m, n_out, "groups"), *kernel)
        _divides(m, n_in, "groups")
    else:
        weight = (n_out, _divides(m, n_in, "groups"), *kernel)
        _divides(m, n_out, "groups")
    return {"weight": weight, "bias": (n_out,)}


def _norm(m: nn.Module) -> Shapes:
    n = (_size(m, "num_features"),)
    keys = ("weight", "bias", "running_mean", "running_var")
    return {**dict.fromkeys(keys, n), "num_batches_tracked": ()}


def _group_norm(m: nn.Module) -> Shapes:
    n = _size(m, "num_channels")
    _divides(m, n, "num_groups")
    return {"weight": (n,), "bias": (n,)}


def _layer_norm(m: nn.Module) -> Shapes:
    shape = _sizes(m, "normalized_shape")
    return {"weight": shape, "bias": shape}


def _embedding(m: nn.Module) -> Shapes:
    return {"weight": (_size(m, "num_embeddings"), _size(m, "embedding_dim"))}


def _prelu(m: nn.Module) -> Shapes:
    return {"weight": (_size(m, "num_parameters"),)}


def _attention(m: nn.Module) -> Shapes:
    e = _size(m, "embed_dim")
    if _divides(m, e, "num_heads") != vars(m).get("head_dim"):
        raise ValueError(f"head_dim is not embed_dim // num_heads = {e // vars(m)['num_heads']}")
    kdim, vdim = _size(m, "kdim"), _size(m, "vdim")
    if vars(m).get("_qkv_same_embed_dim") is not (kdim == e and vdim == e):
        raise ValueError("_qkv_same_embed_dim does not say whether kdim = vdim = embed_dim")
    return {
        "in_proj_weight": (3 * e, e),
        "q_proj_weight": (e, e),
        "k_proj_weight": (e, kdim),
        "v_proj_weight": (e, vdim),
        "in_proj_bias": (3 * e,),
        "bias_k": (1, 1, e),
        "bias_v": (1, 1, e),
    }


def _recurrent(m: nn.Module) -> Shapes:
    """Shapes, and the names ``_flat_weights_names``/``_all_weights`` must list, in order."""
    mode, hidden, proj = vars(m).get("mode"), _size(m, "hidden_size"), _size(m, "proj_size")
    bias, bidirectional = vars(m).get("bias"), vars(m).get("bidirectional")
    if mode not in GATES or type(bias) is not bool or type(bidirectional) is not bool:
        raise ValueError("mode, bias or bidirectional is malformed")
    if proj and (proj >= hidden or mode != "LSTM"):
        raise ValueError(f"proj_size {proj} with hidden_size {hidden} and mode {mode}")
    directions, layers = 1 + bidirectional, _size(m, "num_layers")
    kinds = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if bias else [])]
    kinds += ["weight_hr"] if proj else []
    if layers * directions * len(kinds) != len(m._parameters):  # before listing any names
        raise ValueError(f"{len(m._parameters)} parameters for {layers} layers")
    gates, width = GATES[mode] * hidden, proj or hidden
    shapes, groups = {}, []
    for layer in range(layers):
        inputs = _size(m, "input_size") if layer == 0 else width * directions
        wanted = {"weight_ih": (gates, inputs), "weight_hh": (gates, width)}
        wanted |= {"bias_ih": (gates,), "bias_hh": (gates,), "weight_hr": (proj, hidden)}
        for suffix in ("", "_reverse")[:directions]:
            groups.append([f"{kind}_l{layer}{suffix}" for kind in kinds])
            shapes.update({f"{kind}_l{layer}{suffix}": wanted[kind] for kind in kinds})
    flat = [name for names in groups for name in names]
    if vars(m).get("_all_weights") != groups or vars(m).get("_flat_weights_names") != flat:
        raise ValueError("_all_weights or _flat_weights_names do not list its parameters")
    return shapes


_CELL_GATES = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}


def _cell(m: nn.Module) -> Shapes:
    hidden = _size(m, "hidden_size")
    gates = _CELL_GATES.get(type(m), 1) * hidden
    return {
        "weight_ih": (gates, _size(m, "input_size")),
        "weight_hh": (gates, hidden),
        "bias_ih": (gates,),
        "bias_hh": (gates,),
    }


def _window_table(m: nn.Module) -> Shapes:
    """torchvision Swin ``ShiftedWindowAttention``: bias table and index per window."""
    h, w = _sizes(m, "window_size", 2)
    return {
        "relative_position_bias_table": ((2 * h - 1) * (2 * w - 1), _size(m, "num_heads")),
        "relative_position_index": (h * w * h * w,),
    }


def _grid_table(m: nn.Module) -> Shapes:
    """torchvision MaxViT ``RelativePositionalMultiHeadAttention``."""
    size = _size(m, "size")
    return {
        "relative_position_bias_table": ((2 * size - 1) ** 2, _size(m, "n_heads")),
        "relative_position_index": (size * size, size * size),
    }


_TORCHVISION = {
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _window_table,
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": _grid_table,
}
# (family, expected shapes of its tensors by name), first match wins.
FAMILIES: list[tuple[type, Callable[[nn.Module], Shapes]]] = [
    (nn.Linear, _linear),
    (nn.Bilinear, _bilinear),
    (_ConvNd, _conv),
    (_NormBase, _norm),
    (nn.GroupNorm, _group_norm),
    (nn.LayerNorm, _layer_norm),
    (nn.RMSNorm, _layer_norm),
    (nn.Embedding, _embedding),
    (nn.EmbeddingBag, _embedding),
    (nn.PReLU, _prelu),
    (nn.MultiheadAttention, _attention),
    (nn.RNNBase, _recurrent),
    (nn.RNNCellBase, _cell),
]


def check_shapes(module: nn.Module, name: str) -> None:
    """Refuse ``module`` if a tensor's shape contradicts the module's own attributes.

    Example:
        >>> fc = nn.Linear(4, 3)
        >>> check_shapes(fc, "fc")
        >>> fc.in_features = 5
        >>> check_shapes(fc, "fc")
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: module 'fc' (Linear): tensor 'fc.weight' has shape [3, 4]...
    """
    expect = _TORCHVISION.get(f"{type(module).__module__}.{type(module).__qualname__}")
    expect = expect or next((f for cls, f in FAMILIES if isinstance(module, cls)), None)
    if expect is None:
        return
    kind = type(module).__qualname__
    try:
        shapes = expect(module)
    except (ValueError, TypeError, ArithmeticError) as err:
        raise MutnasTorchError(
            f"module {name!r} ({kind}): malformed attributes: {err} (corrupt or crafted file)"
        ) from None
    tensors: dict[str, Any] = {**module._parameters, **module._buffers}
    for key, shape in shapes.items():
        tensor = tensors.get(key)
        if tensor is not None and tuple(tensor.shape) != shape:
            raise MutnasTorchError(
                f"module {name!r} ({kind}): tensor {f'{name}.{key}'!r} has shape "
                f"{list(tensor.shape)}, but the module's attributes say {list(shape)} "
                f"(corrupt or crafted file)"
            )
