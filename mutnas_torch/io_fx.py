"""The fx half of the model file format: values, function names, the allow-list, graphs.

Everything here turns live objects into plain JSON and back *without executing anything
the file names*: a value is one of a closed set of tagged kinds, and every function or
module class a file names is resolved through :class:`Resolver`, which only answers for
pure tensor functions (``torch.*`` ops, ``torch.nn.functional``, ``operator``, ``math``,
a few builtins, ``torchvision.ops`` and the functions torchvision marks ``torch.fx.wrap``),
``nn.Module`` classes under ``torch.nn``/``torchvision.ops``/``torchvision.models``, and
whatever the caller passes explicitly. Anything else is refused with a
:class:`~mutnas_torch.MutnasTorchError` that says how to allow it.

Encoded values: JSON ``null``/booleans/strings/numbers/lists stand for themselves; every
JSON object has exactly one key, its tag: ``node``, ``float`` (``"inf"``, ``"-inf"``,
``"nan"``), ``tuple``, ``dict`` (pairs), ``set``, ``slice``, ``ellipsis``, ``dtype``,
``device``, ``memory_format``, ``layout``, ``size``, ``complex``, ``function``, ``class``
and ``tensor_meta``.
"""

from __future__ import annotations

import builtins
import importlib
import keyword
import math
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from mutnas_torch.errors import MutnasTorchError

__all__ = ["Resolver", "class_name", "decode_graph", "decode_value", "encode_graph", "encode_value"]

_NAMING = ("torch", "torch.nn.functional", "operator", "math", "builtins")
_NAMING += ("torch.fft", "torch.linalg", "torch.special")
_NAMESPACES = (*_NAMING, "torch.functional")
_BUILTINS = {"getattr", "len", "int", "float", "bool", "abs", "min", "max", "round", "sum"}
_BUILTINS |= {"all", "any", "divmod", "pow", "range", "slice", "tuple", "list"}
_OPERATOR_DENY = {"call", "attrgetter", "methodcaller"}
# torch.* names with effects beyond computing a tensor: files, threads, global state, code.
_TORCH_DENY = re.compile(
    r"(set|use|import|parse|init|clear|autocast|from|get|fork|wait|merge_type|unify_type|"
    r"sym_constrain|to_dlpack|load|save|compile|export|manual_seed|seed|cond|vmap|while_loop)"
)
_EXTRA_FUNCTIONS = {"torch._assert", "torch.fx._symbolic_trace._assert_is_none"}
_MODULE_PREFIXES = ("torch.nn.", "torchvision.ops.", "torchvision.models.")
# Attributes builtins.getattr may read, and Tensor methods call_method may not call.
_ATTRIBUTES = {"shape", "dtype", "device", "ndim", "T", "mT", "H", "mH", "real", "imag", "data"}
_ATTRIBUTES |= {"is_cuda", "is_sparse", "is_quantized", "is_meta", "layout", "requires_grad"}
_METHOD_DENY = {"numpy", "storage", "untyped_storage", "share_memory_", "register_hook"}
_METHOD_DENY |= {"register_post_accumulate_grad_hook", "apply_", "map_", "map2_", "backward"}
_METHOD_DENY |= {"set_", "pin_memory", "record_stream"}
_OPS = {"placeholder", "get_attr", "call_function", "call_method", "call_module", "output"}


def _is_routine(obj: Any) -> bool:
    return isinstance(obj, (types.FunctionType, types.BuiltinFunctionType))


def _identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def _dotted(name: Any) -> bool:
    """A qualified module or attribute path: identifiers (or indices) joined by dots."""
    return isinstance(name, str) and all(_identifier(p) or p.isdigit() for p in name.split("."))


# ---------------------------------------------------------------- naming (save side)
def function_name(fn: Any, where: str) -> str:
    """The importable qualified name of ``fn`` (``torch.cat``, ``operator.add``...)."""
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        for namespace in _NAMING:
            module = sys.modules.get(namespace)
            if module is not None and getattr(module, name, None) is fn:
                return f"{namespace}.{name}"
    found = _lookup(getattr(fn, "__module__", None), getattr(fn, "__qualname__", None))
    if found is fn:
        return f"{fn.__module__}.{fn.__qualname__}"
    raise MutnasTorchError(
        f"{where}: cannot save function {fn!r}: it has no importable qualified name. "
        f"Define it at module level (not in a function or a lambda)"
    )


def class_name(cls: type, where: str) -> str:
    """The importable qualified name of a module class."""
    if _lookup(cls.__module__, cls.__qualname__) is not cls:
        raise MutnasTorchError(
            f"{where}: cannot save module type {cls.__qualname__}: it has no importable "
            f"qualified name. Define the class at module level"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


def _lookup(module: Any, qualname: Any) -> Any:
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        return None
    obj = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


# ---------------------------------------------------------------- the allow-list (load side)
class Resolver:
    """Turns names from a file into functions and classes, refusing anything unvetted.

    Args:
        modules: extra module classes by qualified name (user-defined leaves).
        functions: extra ``call_function`` targets by qualified name.
        methods: extra names allowed for ``call_method`` and ``getattr``.

    Example:
        >>> Resolver().function("torch.cat", "here") is torch.cat
        True
        >>> Resolver().function("os.system", "node 'x'")
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: node 'x': refusing function 'os.system'...
    """

    def __init__(
        self,
        modules: Mapping[str, type] | None = None,
        functions: Mapping[str, Callable] | None = None,
        methods: Iterable[str] = (),
    ):
        self.modules = dict(modules or {})
        self.functions = dict(functions or {})
        self.methods = set(methods)
        for name, cls in self.modules.items():
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
                raise MutnasTorchError(f"modules[{name!r}] is {cls!r}, not an nn.Module class")

    def function(self, name: Any, where: str) -> Callable:
        if isinstance(name, str) and name in self.functions:
            return self.functions[name]
        found = _vetted_function(name) if _dotted(name) else None
        if found is None:
            raise MutnasTorchError(
                f"{where}: refusing function {name!r}: it is not on mutnas_torch's allow-list "
                f"of pure tensor functions. If you trust this file, pass "
                f"load(..., functions={{{name!r}: <the function>}})"
            )
        return found

    def module_class(self, name: Any, where: str) -> type[nn.Module]:
        if isinstance(name, str) and name in self.modules:
            return self.modules[name]
        found = _vetted_class(name) if _dotted(name) else None
        if found is None:
            raise MutnasTorchError(
                f"{where}: refusing module type {name!r}: only nn.Module classes under "
                f"{', '.join(_MODULE_PREFIXES)} load by default. If you trust this file, pass "
                f"load(..., modules={{{name!r}: <the class>}})"
            )
        return found

    def method(self, name: Any, where: str, what: str = "method") -> str:
        allowed = _identifier(name) and (
            name in self.methods
            or (
                not name.startswith("_")
                and (name in _ATTRIBUTES if what == "attribute" else name not in _METHOD_DENY)
                and hasattr(torch.Tensor, name)
            )
        )
        if not allowed:
            raise MutnasTorchError(
                f"{where}: refusing tensor {what} {name!r}: it is not on mutnas_torch's "
                f"allow-list. If you trust this file, pass load(..., methods={{{name!r}}})"
            )
        return name


def _vetted_function(name: str) -> Callable | None:
    module_name, _, attr = name.rpartition(".")
    if name in _EXTRA_FUNCTIONS:
        return getattr(importlib.import_module(module_name), attr)
    if module_name.startswith(("torchvision.ops", "torchvision.models")):
        return _torchvision_function(module_name, attr)
    if attr.startswith("_"):
        return None
    module = sys.modules.get(module_name) if module_name in _NAMESPACES else None
    obj = vars(module).get(attr) if module is not None else None  # no lazy imports
    builtin = isinstance(obj, types.BuiltinFunctionType)
    if module_name == "builtins":
        ok = attr in _BUILTINS
    elif module_name == "operator":
        ok = builtin and attr not in _OPERATOR_DENY
    elif module_name == "torch":
        python = isinstance(obj, types.FunctionType) and obj.__module__ == "torch.functional"
        ok = (builtin or python) and not _TORCH_DENY.match(attr)
    elif module_name in ("torch.nn.functional", "torch.functional"):
        ok = builtin or (isinstance(obj, types.FunctionType) and obj.__module__ == module_name)
    else:  # math, torch.fft, torch.linalg, torch.special: native functions only
        ok = builtin
    return obj if ok else None


def _torchvision_function(module_name: str, attr: str) -> Callable | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    obj = getattr(module, attr, None)
    if not _is_routine(obj):
        return None
    registry = getattr(sys.modules["torch.fx._symbolic_trace"], "_wrapped_fns_to_patch", {})
    if isinstance(registry, dict) and (id(module.__dict__), attr) in registry:
        return obj  # torchvision marks it torch.fx.wrap: a leaf function of its models
    ops = sys.modules.get("torchvision.ops")  # its public API: nms, roi_align, stochastic_depth...
    public = attr in getattr(ops, "__all__", ()) and getattr(ops, attr, None) is obj
    return obj if public and module_name.startswith("torchvision.ops") else None


def _vetted_class(name: str) -> type[nn.Module] | None:
    if not name.startswith(_MODULE_PREFIXES):
        return None
    parts = name.split(".")
    for cut in range(len(parts) - 1, 1, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part, None)
        canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
        # The class must live where its name says: no reaching out through attribute chains.
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return obj if canonical.startswith(_MODULE_PREFIXES) else None
        return None
    return None


# ---------------------------------------------------------------- values
def encode_value(value: Any, where: str) -> Any:
    """A JSON-ready form of an fx argument, a module attribute or node metadata."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if isinstance(value, fx.Node):
        return {"node": value.name}
    if isinstance(value, TensorMetadata):
        return {"tensor_meta": _encode_meta(value, where)}
    # fx stores lists and dicts as its immutable_list / immutable_dict subclasses.
    for kind, tag in ((torch.Size, "size"), (tuple, "tuple"), (set, "set"), (frozenset, "set")):
        if type(value) is kind:
            return {tag: [encode_value(v, where) for v in value]}
    if isinstance(value, list):
        return [encode_value(v, where) for v in value]
    if isinstance(value, dict):
        return {
            "dict": [[encode_value(k, where), encode_value(v, where)] for k, v in value.items()]
        }
    if type(value) is slice:
        return {"slice": [encode_value(v, where) for v in (value.start, value.stop, value.step)]}
    if value is Ellipsis:
        return {"ellipsis": None}
    for kind, tag in _NAMED:
        if isinstance(value, kind):
            return {tag: str(value).removeprefix("torch.")}
    if type(value) is complex:
        return {"complex": [encode_value(value.real, where), encode_value(value.imag, where)]}
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
    return {k: encode_value(v, where) for k, v in fields.items()}


def decode_value(
    data: Any, resolver: Resolver, where: str, nodes: Mapping[str, fx.Node] | None = None
) -> Any:
    """Rebuild a value written by :func:`encode_value` (``nodes``: fx nodes by name)."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode_value(v, resolver, where, nodes) for v in data]
    if not isinstance(data, dict) or len(data) != 1:
        raise MutnasTorchError(f"{where}: malformed value {data!r:.80} in the model file")
    ((tag, body),) = data.items()
    decode = _DECODERS.get(tag)
    if decode is None:
        raise MutnasTorchError(f"{where}: unknown value tag {tag!r} in the model file")
    try:
        return decode(body, resolver, where, nodes)
    except MutnasTorchError:
        raise
    except Exception as err:
        raise MutnasTorchError(f"{where}: malformed {tag!r} value {body!r:.80}: {err}") from err


def _items(body, resolver, where, nodes) -> list:
    if not isinstance(body, list):
        raise TypeError("expected a list")
    return [decode_value(v, resolver, where, nodes) for v in body]


def _node(body, resolver, where, nodes):
    if nodes is None or body not in nodes:
        raise MutnasTorchError(f"{where}: reference to unknown node {body!r}")
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


def _dict(body, resolver, where, nodes) -> dict:
    return {k: v for k, v in (_items(pair, resolver, where, nodes) for pair in body)}


def _meta(body, resolver, where, nodes) -> TensorMetadata:
    fields = {k: decode_value(body[k], resolver, where) for k in TensorMetadata._fields}
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
    "device": lambda b, r, w, n: torch.device(b),
    "complex": lambda b, r, w, n: complex(*_items(b, r, w, n)),
    "function": lambda b, r, w, n: r.function(b, w),
    "class": lambda b, r, w, n: r.module_class(b, w),
    "tensor_meta": _meta,
}


# ---------------------------------------------------------------- graphs
def encode_graph(graph: fx.Graph) -> list[dict]:
    """Every node in order: op, name, target, args, kwargs, ``tensor_meta`` and type."""
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
        out.append(entry)
    return out


def decode_graph(entries: Any, resolver: Resolver) -> fx.Graph:
    """Rebuild an fx graph, refusing targets the resolver does not allow."""
    if not isinstance(entries, list):
        raise MutnasTorchError("the model file's graph is not a list of nodes")
    graph = fx.Graph()
    nodes: dict[str, fx.Node] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not _identifier(entry.get("name")):
            raise MutnasTorchError(f"malformed graph node {entry!r:.80} in the model file")
        where = f"node {entry['name']!r}"
        op, target = entry.get("op"), _target(entry, resolver, where)
        args = decode_value({"tuple": entry.get("args", [])}, resolver, where, nodes)
        kwargs = entry.get("kwargs", {})
        if not isinstance(kwargs, dict) or not all(_identifier(k) for k in kwargs):
            raise MutnasTorchError(f"{where}: malformed keyword arguments")
        kwargs = {k: decode_value(v, resolver, where, nodes) for k, v in kwargs.items()}
        if target is builtins.getattr:
            resolver.method(args[1] if len(args) > 1 else None, where, "attribute")
        annotation = torch.Tensor if entry.get("type") == "tensor" else None
        node = graph.create_node(op, target, args, kwargs, entry["name"], annotation)
        if node.name != entry["name"]:
            raise MutnasTorchError(f"{where}: the name is taken or reserved (corrupt file)")
        if "tensor_meta" in entry:
            node.meta["tensor_meta"] = decode_value(entry["tensor_meta"], resolver, where)
        nodes[node.name] = node
    return graph


def _target(entry: dict, resolver: Resolver, where: str) -> Any:
    op, target = entry.get("op"), entry.get("target")
    if op not in _OPS:
        raise MutnasTorchError(f"{where}: unknown op {op!r}")
    if op == "call_function":
        return resolver.function(target, where)
    if op == "call_method":
        return resolver.method(target, where)
    if op == "placeholder":
        ok = isinstance(target, str) and _identifier(target.lstrip("*"))
    elif op == "output":
        ok = target == "output"
    else:
        ok = _dotted(target)
    if not ok:
        raise MutnasTorchError(f"{where}: malformed {op} target {target!r}")
    return target
