"""The names of model files: how save names functions and classes, which names load
resolves (the allow-list), and what a call may be given.

:class:`Resolver` turns the names a model file holds into functions and module classes.
Every name is vetted *before* anything is imported: the whole dotted name is matched
against static namespaces and prefixes first, and the object is then looked up in
``sys.modules`` only, through the namespaces' own ``__dict__`` (no ``__getattr__``
hooks, no lazy imports). The one import a name can cause is of a fixed top-level package
(``torchvision``), never of a module path taken from the file.

What resolves by default:

* functions: pure tensor functions (``torch.*`` ops, ``torch.nn.functional``,
  ``operator``, ``math``, a few builtins, ``torch.fft``/``linalg``/``special``,
  ``torchvision.ops``' public functions and the functions torchvision marks
  ``torch.fx.wrap``);
* module classes: ``nn.Module`` subclasses whose canonical path (``cls.__module__``)
  lies under ``torch.nn.modules.``, ``torchvision.ops.`` or ``torchvision.models.``
  (so ``torch.nn.parallel.DistributedDataParallel`` and ``torch.nn.utils`` wrappers do
  not load);
* tensor methods and attributes: public ``torch.Tensor`` methods except a deny-list
  (storage, hooks, ``numpy``...), and a short list of attributes for ``getattr``.

Everything else is refused with a :class:`~mutnas_torch.MutnasTorchError` saying how to
allow it (pass it to :func:`mutnas_torch.load` if you trust the file).
"""

from __future__ import annotations

import builtins
import contextlib
import importlib
import keyword
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mutnas_torch.errors import MutnasTorchError

__all__ = [
    "MODULE_PREFIXES",
    "NAMESPACES",
    "Resolver",
    "class_name",
    "defined_on_class",
    "dotted",
    "function_name",
    "identifier",
]

# Namespaces whose functions save under their short name (torch.cat, not torch._C...).
NAMESPACES = ("torch", "torch.nn.functional", "operator", "math", "builtins")
NAMESPACES += ("torch.fft", "torch.linalg", "torch.special")
_VETTED_NAMESPACES = (*NAMESPACES, "torch.functional")
_BUILTINS = {"getattr", "len", "int", "float", "bool", "abs", "min", "max", "round", "sum"}
_BUILTINS |= {"all", "any", "divmod", "pow", "range", "slice", "tuple", "list"}
_OPERATOR_DENY = {"call", "attrgetter", "methodcaller"}
# torch.* names with effects beyond computing a tensor: files, threads, global state, code.
_TORCH_DENY = re.compile(
    r"(set|use|import|parse|init|clear|autocast|from|get|fork|wait|merge_type|unify_type|"
    r"sym_constrain|to_dlpack|load|save|compile|export|manual_seed|seed|cond|vmap|while_loop)"
)
_EXTRA_FUNCTIONS = {"torch._assert", "torch.fx._symbolic_trace._assert_is_none"}
MODULE_PREFIXES = ("torch.nn.modules.", "torchvision.ops.", "torchvision.models.")
_PLAIN = re.compile(r"[A-Za-z0-9_-]+")  # safe inside fx's getattr(x, "...") in code
_IMPORTABLE = ("torchvision",)  # the only imports a name can cause: these fixed packages
# Attributes builtins.getattr may read, and Tensor methods call_method may not call.
_ATTRIBUTES = {"shape", "dtype", "device", "ndim", "T", "mT", "H", "mH", "real", "imag", "data"}
_ATTRIBUTES |= {"is_cuda", "is_sparse", "is_quantized", "is_meta", "layout", "requires_grad"}
_METHOD_DENY = {"numpy", "storage", "untyped_storage", "share_memory_", "register_hook"}
_METHOD_DENY |= {"register_post_accumulate_grad_hook", "apply_", "map_", "map2_", "backward"}
_METHOD_DENY |= {"set_", "pin_memory", "record_stream"}


def identifier(name: Any) -> bool:
    """A Python identifier that is not a keyword.

    Example:
        >>> identifier("in_features"), identifier("class"), identifier("a.b")
        (True, False, False)
    """
    return isinstance(name, str) and name.isidentifier() and not keyword.iskeyword(name)


def dotted(name: Any) -> bool:
    """A qualified module or attribute path: identifiers, indices or ASCII names with
    hyphens (``block1-0``, as regnet names its blocks) joined by dots.

    fx writes a part that is not an identifier as ``getattr(x, "part")``, inside quotes:
    no part may hold a quote, a backslash or anything but ``[A-Za-z0-9_-]``.

    Example:
        >>> dotted("layer1.0.conv1"), dotted("trunk.block1-0"), dotted("a..b"), dotted('a")')
        (True, True, False, False)
    """
    return isinstance(name, str) and all(
        identifier(p) or (_PLAIN.fullmatch(p) is not None and not p.isidentifier())
        for p in name.split(".")
    )


def defined_on_class(cls: type, name: str) -> bool:
    """Whether ``name`` is defined on ``cls``, a base class or its metaclass (nothing runs).

    Example:
        >>> defined_on_class(nn.Linear, "forward"), defined_on_class(nn.Linear, "in_features")
        (True, False)
    """
    return any(name in vars(c) for c in (*cls.__mro__, *type(cls).__mro__))


# ---------------------------------------------------------------- naming (the save side)
def function_name(fn: Any, where: str) -> str:
    """The importable qualified name of ``fn`` (``torch.cat``, ``operator.add``...).

    Example:
        >>> function_name(torch.cat, "here"), function_name(torch.nn.functional.relu, "here")
        ('torch.cat', 'torch.nn.functional.relu')
    """
    name = getattr(fn, "__name__", None)
    if isinstance(name, str):
        for namespace in NAMESPACES:
            module = sys.modules.get(namespace)
            if module is not None and getattr(module, name, None) is fn:
                return f"{namespace}.{name}"
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and _lookup(module, qualname) is fn:
        return f"{fn.__module__}.{fn.__qualname__}"
    raise MutnasTorchError(
        f"{where}: cannot save function {fn!r}: it has no importable qualified name. "
        f"Define it at module level (not in a function or a lambda)"
    )


def class_name(cls: type, where: str) -> str:
    """The importable qualified name of a module class.

    Example:
        >>> class_name(nn.Linear, "here")
        'torch.nn.modules.linear.Linear'
    """
    if _lookup(cls.__module__, cls.__qualname__) is not cls:  # as load will look it up
        raise MutnasTorchError(
            f"{where}: cannot save module type {cls.__qualname__}: it has no importable "
            f"qualified name. Define the class at module level"
        )
    return f"{cls.__module__}.{cls.__qualname__}"


# ---------------------------------------------------------------- resolving (the load side)
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
        """The function ``name`` names, if the caller passed it or it is on the allow-list.

        Example:
            >>> Resolver().function("operator.getitem", "here").__name__
            'getitem'
        """
        if isinstance(name, str) and name in self.functions:
            return self.functions[name]
        found = _vetted_function(name) if dotted(name) else None
        if found is None:
            raise MutnasTorchError(
                f"{where}: refusing function {name!r:.80}: it is not on mutnas_torch's "
                f"allow-list of pure tensor functions. If you trust this file, pass "
                f"load(..., functions={{{name!r:.80}: <the function>}})"
            )
        return found

    def module_class(self, name: Any, where: str) -> type[nn.Module]:
        """The ``nn.Module`` class ``name`` names, if passed or on the allow-list.

        Example:
            >>> Resolver().module_class("torch.nn.modules.linear.Linear", "here") is nn.Linear
            True
            >>> Resolver().module_class("torch.nn.Linear", "module 'fc'")  # an alias
            Traceback (most recent call last):
            ...
            mutnas_torch.errors.MutnasTorchError: module 'fc': refusing module type 'torch.nn.Linear'...
        """
        if isinstance(name, str) and name in self.modules:
            return self.modules[name]
        found = _vetted_class(name) if dotted(name) else None
        if found is None:
            raise MutnasTorchError(
                f"{where}: refusing module type {name!r:.80}: only nn.Module classes defined "
                f"under {', '.join(MODULE_PREFIXES)} load by default. If you trust this file, "
                f"pass load(..., modules={{{name!r:.80}: <the class>}})"
            )
        return found

    def method(self, name: Any, where: str, what: str = "method") -> str:
        """``name`` if a graph may call it as a tensor method (or read it, ``what="attribute"``).

        Example:
            >>> Resolver().method("view", "here"), Resolver().method("shape", "here", "attribute")
            ('view', 'shape')
        """
        allowed = identifier(name) and (
            name in self.methods
            or (
                not name.startswith("_")
                and (name in _ATTRIBUTES if what == "attribute" else name not in _METHOD_DENY)
                and hasattr(torch.Tensor, name)
            )
        )
        if not allowed:
            raise MutnasTorchError(
                f"{where}: refusing tensor {what} {name!r:.80}: it is not on mutnas_torch's "
                f"allow-list. If you trust this file, pass load(..., methods={{{name!r:.80}}})"
            )
        return name

    def vet_call(self, callee: Any, args: tuple, kwargs: Mapping, where: str) -> None:
        """Check a call's arguments: one check for ``call_function`` and ``call_module``.

        ``callee`` is the function (``call_function``) or the module (``call_module``). A
        module is called through its class's ``forward``: its own attributes may not
        shadow anything its class defines. Whatever is called, an attribute reader
        (``builtins.getattr``) only gets a literal attribute name from the allow-list.

        Example:
            >>> import builtins
            >>> Resolver().vet_call(builtins.getattr, ("x", "shape"), {}, "node 'a'")
            >>> Resolver().vet_call(builtins.getattr, ("x", "__class__"), {}, "node 'a'")
            Traceback (most recent call last):
            ...
            mutnas_torch.errors.MutnasTorchError: node 'a': refusing tensor attribute '__class__'...
        """
        function = callee
        if isinstance(callee, nn.Module):
            shadowed = sorted(k for k in vars(callee) if defined_on_class(type(callee), k))
            if shadowed:
                raise MutnasTorchError(
                    f"{where}: module {type(callee).__qualname__} holds attributes {shadowed} "
                    f"that shadow its class's own (corrupt or crafted file)"
                )
            function = type(callee).forward
        if function is builtins.getattr:
            if kwargs or len(args) not in (2, 3):
                raise MutnasTorchError(f"{where}: getattr takes an object and a literal name")
            self.method(args[1], where, "attribute")


def _vetted_function(name: str) -> Callable | None:
    module_name, _, attr = name.rpartition(".")
    if name in _EXTRA_FUNCTIONS:
        return _lookup(module_name, attr)
    if module_name.startswith(("torchvision.ops", "torchvision.models")):
        return _torchvision_function(module_name, attr)
    if attr.startswith("_") or module_name not in _VETTED_NAMESPACES:
        return None
    obj = _lookup(module_name, attr)
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


def _lookup(module_name: str, qualname: str) -> Any:
    """``module_name.qualname`` from modules already imported, through ``__dict__`` only."""
    _import_top_level(module_name)
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if not isinstance(obj, (type, types.ModuleType)) or not identifier(part):
            return None
        obj = vars(obj).get(part)
    return obj


def _import_top_level(name: str) -> None:
    """Import the fixed top-level package ``name`` starts with (``torchvision``), if not yet."""
    top = name.split(".")[0]
    if top in _IMPORTABLE and top not in sys.modules:
        with contextlib.suppress(ImportError):  # not installed: its names resolve to nothing
            importlib.import_module(top)


def _torchvision_function(module_name: str, attr: str) -> Callable | None:
    obj = _lookup(module_name, attr)
    if not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        return None
    module = sys.modules[module_name]
    registry = getattr(sys.modules["torch.fx._symbolic_trace"], "_wrapped_fns_to_patch", {})
    if isinstance(registry, dict) and (id(module.__dict__), attr) in registry:
        return obj  # torchvision marks it torch.fx.wrap: a leaf function of its models
    ops = sys.modules.get("torchvision.ops")  # its public API: nms, roi_align, stochastic_depth...
    public = attr in getattr(ops, "__all__", ()) and vars(ops).get(attr) is obj
    return obj if public and module_name.startswith("torchvision.ops") else None


def _vetted_class(name: str) -> type[nn.Module] | None:
    if not name.startswith(MODULE_PREFIXES):
        return None
    _import_top_level(name)
    parts = name.split(".")
    prefixes = (".".join(parts[:cut]) for cut in range(len(parts) - 1, 0, -1))
    module = next((p for p in prefixes if p in sys.modules), None)  # no import from the name
    obj = None if module is None else _lookup(module, name[len(module) + 1 :])
    canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    # The class must live where its name says: no reaching out through attribute chains.
    ok = isinstance(obj, type) and issubclass(obj, nn.Module) and canonical == name
    return obj if ok else None
