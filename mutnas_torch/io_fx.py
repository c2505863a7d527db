"""The fx half of the model file format: values, function names and graphs.

Everything here turns live objects into plain JSON and back *without executing anything
the file names*: a value is one of a closed set of tagged kinds, and every function or
module class a graph names is resolved through :class:`~mutnas_torch.io_allow.Resolver`,
which answers only for vetted names (see :mod:`mutnas_torch.io_allow`). Module state,
node metadata and ``GraphModule.meta`` are *data*: decoded with no resolver, where a
function or class is refused.

Encoded values: JSON ``null``/booleans/strings/numbers/lists stand for themselves; every
JSON object has exactly one key, its tag: ``node``, ``float`` (``"inf"``, ``"-inf"``,
``"nan"``), ``tuple``, ``dict`` (pairs), ``set``, ``slice``, ``ellipsis``, ``dtype``,
``device``, ``memory_format``, ``layout``, ``size``, ``complex``, ``function``, ``class``
and ``tensor_meta``.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_allow import Resolver, class_name, dotted, function_name, identifier

__all__ = ["decode_graph", "decode_value", "encode_graph", "encode_value", "vet_calls"]

_OPS = {"placeholder", "get_attr", "call_function", "call_method", "call_module", "output"}
_NODE_KEYS = {"op", "name", "target", "args", "kwargs", "tensor_meta", "type", "wrapped"}


def _is_routine(obj: Any) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType))


# ---------------------------------------------------------------- values
def encode_value(value: Any, where: str, *, data: bool = False) -> Any:
    """A JSON-ready form of an fx argument, a module attribute or node metadata.

    Args:
        value: what to encode.
        where: what it belongs to, for error messages.
        data: refuse functions and classes (module state and metadata hold data only,
            as :func:`decode_value` with no resolver reads them).

    Example:
        >>> encode_value((1, float("inf"), torch.float16), "here")
        {'tuple': [1, {'float': 'inf'}, {'dtype': 'float16'}]}
    """
    if value is None or isinstance(value, (bool, str)) or type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, TensorMetadata):
        return {"tensor_meta": _encode_meta(value, where)}

    def again(v: Any) -> Any:
        return encode_value(v, where, data=data)

    # fx stores lists and dicts as its immutable_list / immutable_dict subclasses.
    for kind, tag in ((torch.Size, "size"), (tuple, "tuple"), (set, "set"), (frozenset, "set")):
        if type(value) is kind:
            return {tag: [again(v) for v in value]}
    if isinstance(value, list):
        return [again(v) for v in value]
    if isinstance(value, dict):
        return {"dict": [[again(k), again(v)] for k, v in value.items()]}
    if type(value) is slice:
        return {"slice": [again(v) for v in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    for kind, tag in _NAMED:
        if isinstance(value, kind):
            return {tag: str(value).removeprefix("torch.")}
    if type(value) is complex:
        return {"complex": [again(value.real), again(value.imag)]}
    if data and (isinstance(value, type) or _is_routine(value)):
        raise MutnasTorchError(
            f"{where}: cannot save {value!r:.60}: this holds data only (numbers, strings, "
            f"containers, torch dtypes and devices), never a function or a class"
        )
    if isinstance(value, type) and issubclass(value, nn.Module):
        return {"class": class_name(value, where)}
    if _is_routine(value):
        return {"function": function_name(value, where)}
    raise MutnasTorchError(
        f"{where}: cannot save a value of type {type(value).__qualname__} ({value!r:.60}); "
        f"model files hold only numbers, strings, containers, torch dtypes/devices and "
        f"functions or module classes importable by name"
    )


_NAMED = ((torch.dtype, "dtype"), (torch.device, "device"), (torch.layout, "layout"))
_NAMED += ((torch.memory_format, "memory_format"),)


def _encode_meta(meta: TensorMetadata, where: str) -> dict:
    fields = meta._asdict()
    fields["shape"] = [int(s) for s in meta.shape]
    fields["stride"] = [int(s) for s in meta.stride]
    return {k: encode_value(v, where, data=True) for k, v in fields.items()}


def decode_value(
    data: Any,
    resolver: Resolver | None,
    where: str,
    nodes: Mapping[str, fx.Node] | None = None,
) -> Any:
    """Rebuild a value written by :func:`encode_value`.

    Args:
        data: the JSON value.
        resolver: resolves ``function`` and ``class`` values; ``None`` where the file holds
            data only (module state, metadata), which refuses them.
        where: what the value belongs to, for error messages.
        nodes: fx nodes by name, where ``node`` references are allowed (graph arguments).

    Example:
        >>> decode_value({"tuple": [1, {"float": "inf"}]}, None, "here")
        (1, inf)
        >>> decode_value({"function": "torch.relu"}, None, "module 'fc' attribute 'act'")
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: module 'fc' attribute 'act': holds a function...
    """
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode_value(v, resolver, where, nodes) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise MutnasTorchError(f"{where}: malformed value {data!r:.80} in the model file")
    ((tag, body),) = data.items()
    decode = _DECODERS.get(tag)
    if decode is None:
        raise MutnasTorchError(f"{where}: unknown value tag {tag!r:.40} in the model file")
    if resolver is None and tag in ("function", "class"):
        raise MutnasTorchError(
            f"{where}: holds a {tag} ({body!r:.60}) where model files hold data only "
            f"(numbers, strings, containers, torch dtypes and devices)"
        )
    try:
        return decode(body, resolver, where, nodes)
    except (MutnasTorchError, RecursionError):
        raise
    except Exception as err:
        raise MutnasTorchError(f"{where}: malformed {tag!r} value {body!r:.80}: {err}") from err


def _items(body, resolver, where, nodes) -> list:
    if not isinstance(body, list):
        raise TypeError("expected a list")
    return [decode_value(v, resolver, where, nodes) for v in body]


def _numbers(body, resolver, where, nodes) -> list:
    items = _items(body, resolver, where, nodes)
    if not all(type(v) in (int, float) for v in items):
        raise TypeError("expected numbers")
    return items


def _node(body, resolver, where, nodes):
    if nodes is None or not isinstance(body, str) or body not in nodes:
        raise MutnasTorchError(f"{where}: reference to unknown node {body!r:.80}")
    return nodes[body]


def _torch_constant(kind: type) -> Callable:
    def decode(body, resolver, where, nodes):
        value = vars(torch).get(body) if isinstance(body, str) else None
        if not isinstance(value, kind):
            raise ValueError(f"not a torch {kind.__name__}")
        return value

    return decode


def _float(body, resolver, where, nodes) -> float:
    if body not in ("inf", "-inf", "nan"):
        raise ValueError("expected inf, -inf or nan")
    return float(body)


def _device(body, resolver, where, nodes) -> torch.device:
    if not isinstance(body, str):
        raise TypeError("expected a device name")
    return torch.device(body)


def _dict(body, resolver, where, nodes) -> dict:
    return {k: v for k, v in (_items(pair, resolver, where, nodes) for pair in body)}


def _meta(body, resolver, where, nodes) -> TensorMetadata:
    if not isinstance(body, dict) or set(body) != set(TensorMetadata._fields):
        raise ValueError(f"expected the fields {TensorMetadata._fields}")
    fields = {k: decode_value(body[k], None, where) for k in TensorMetadata._fields}
    return TensorMetadata(**{**fields, "shape": torch.Size(fields["shape"])})


_DECODERS: dict[str, Callable] = {
    "node": _node,
    "float": _float,
    "tuple": lambda b, r, w, n: tuple(_items(b, r, w, n)),
    "set": lambda b, r, w, n: set(_items(b, r, w, n)),
    "size": lambda b, r, w, n: torch.Size(_items(b, r, w, n)),
    "dict": _dict,
    "slice": lambda b, r, w, n: slice(*_items(b, r, w, n)),
    "ellipsis": lambda b, r, w, n: Ellipsis,
    "dtype": _torch_constant(torch.dtype),
    "memory_format": _torch_constant(torch.memory_format),
    "layout": _torch_constant(torch.layout),
    "device": _device,
    "complex": lambda b, r, w, n: complex(*_numbers(b, r, w, n)),
    "function": lambda b, r, w, n: r.function(b, w),
    "class": lambda b, r, w, n: r.module_class(b, w),
    "tensor_meta": _meta,
}


# ---------------------------------------------------------------- graphs
def encode_graph(graph: fx.Graph) -> list[dict]:
    """Every node in order: op, name, target, args, kwargs, ``tensor_meta``, type and
    whether it calls a ``torch.fx.wrap`` function (the generated code re-registers those).

    Example:
        >>> gm = fx.symbolic_trace(torch.nn.Sequential(torch.nn.ReLU()))
        >>> [(n["op"], n["target"]) for n in encode_graph(gm.graph)]
        [('placeholder', 'input'), ('call_module', '0'), ('output', 'output')]
    """
    if type(graph._codegen) is not fx.graph.CodeGen:
        raise MutnasTorchError(
            f"cannot save a graph with custom code generation ({type(graph._codegen).__name__}); "
            f"trace the model with torch.fx.symbolic_trace or mutnas_torch.mutable"
        )
    out = []
    for node in graph.nodes:
        where = f"node {node.name!r}"
        target = node.target
        if node.op == "call_function":
            target = function_name(target, where)
        entry = {
            "op": node.op,
            "name": node.name,
            "target": target,
            "args": [encode_value(a, where) for a in node.args],
            "kwargs": {k: encode_value(v, where) for k, v in node.kwargs.items()},
        }
        if "tensor_meta" in node.meta:
            entry["tensor_meta"] = encode_value(node.meta["tensor_meta"], where)
        if node.type is torch.Tensor:  # the only annotation kept (``x: torch.Tensor``)
            entry["type"] = "tensor"
        if node.meta.get("is_wrapped") is True:  # a torch.fx.wrap leaf: the code says so
            entry["wrapped"] = True
        out.append(entry)
    return out


def decode_graph(entries: Any, resolver: Resolver) -> fx.Graph:
    """Rebuild an fx graph, refusing targets the resolver does not allow.

    Example:
        >>> entries = [{"op": "placeholder", "name": "x", "target": "x"},
        ...            {"op": "call_function", "name": "y", "target": "os.system", "args": ["ls"]}]
        >>> decode_graph(entries, Resolver())
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: node 'y': refusing function 'os.system'...

    Call arguments are checked by :meth:`~mutnas_torch.io_allow.Resolver.vet_call` once
    the modules are known (see :func:`vet_calls`).
    """
    if not isinstance(entries, list):
        raise MutnasTorchError("the model file's graph is not a list of nodes")
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not identifier(entry.get("name")):
            raise MutnasTorchError(f"malformed graph node {entry!r:.80} in the model file")
        where = f"node {entry['name']!r}"
        flags = entry.get("type", "tensor") == "tensor" and entry.get("wrapped", True) is True
        if set(entry) - _NODE_KEYS or not flags:
            odd = sorted(set(entry) - _NODE_KEYS)
            raise MutnasTorchError(
                f"{where}: unknown fields {odd} or a malformed type or wrapped flag"
            )
        op, target = entry.get("op"), _target(entry, resolver, where)
        args = decode_value({"tuple": entry.get("args", [])}, resolver, where, nodes)
        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, dict) or not all(identifier(k) for k in kwargs):
            raise MutnasTorchError(f"{where}: malformed keyword arguments")
        kwargs = {k: decode_value(v, resolver, where, nodes) for k, v in kwargs.items()}
        annotation = torch.Tensor if entry.get("type") == "tensor" else None
        node = graph.create_node(op, target, args, kwargs, entry["name"], annotation)
        if node.name != entry["name"]:
            raise MutnasTorchError(f"{where}: the name is taken or reserved (corrupt file)")
        if "tensor_meta" in entry:
            node.meta["tensor_meta"] = decode_value(entry["tensor_meta"], None, where)
        if entry.get("wrapped") and op == "call_function":
            node.meta["is_wrapped"] = True
        nodes[node.name] = node
    return graph


def vet_calls(graph: fx.Graph, modules: Mapping[str, nn.Module], resolver: Resolver) -> None:
    """Check every call's target and arguments: ``call_function`` and ``call_module`` alike.

    Example:
        >>> import builtins
        >>> graph = fx.Graph()
        >>> x = graph.placeholder("x")
        >>> _ = graph.output(graph.call_function(builtins.getattr, (x, "__class__")))
        >>> vet_calls(graph, {"": nn.Module()}, Resolver())
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: node 'getattr...': refusing tensor attribute '__class__'...

    Raises:
        MutnasTorchError: a ``get_attr`` or ``call_module`` target is not a tensor or
            module of the model, or :meth:`~mutnas_torch.io_allow.Resolver.vet_call`
            refuses a call's arguments.
    """
    tensors = {n for n, m in modules.items() for n in _tensor_names(n, m)}
    for node in graph.nodes:
        where = f"node {node.name!r}"
        if node.op == "get_attr" and node.target not in tensors:
            raise MutnasTorchError(
                f"{where}: get_attr target {node.target!r} is not a tensor of the model "
                f"(corrupt file)"
            )
        if node.op == "call_module" and node.target not in modules:
            raise MutnasTorchError(
                f"{where}: call_module target {node.target!r} is not a module of the model "
                f"(corrupt file)"
            )
        if node.op in ("call_function", "call_module"):
            callee = modules[node.target] if node.op == "call_module" else node.target
            resolver.vet_call(callee, node.args, node.kwargs, where)


def _tensor_names(name: str, module: nn.Module) -> list[str]:
    prefix = f"{name}." if name else ""
    return [prefix + k for k in (*module._parameters, *module._buffers)]


def _target(entry: dict, resolver: Resolver, where: str) -> Any:
    op, target = entry.get("op"), entry.get("target")
    if op not in _OPS:
        raise MutnasTorchError(f"{where}: unknown op {op!r:.40}")
    if op == "call_function":
        return resolver.function(target, where)
    if op == "call_method":
        return resolver.method(target, where)
    if op == "placeholder":
        ok = isinstance(target, str) and identifier(target.lstrip("*"))
    elif op == "output":
        ok = target == "output"
    else:
        ok = dotted(target)
    if not ok:
        raise MutnasTorchError(f"{where}: malformed {op} target {target!r:.80}")
    return target
