"""What a module's state may hold in a model file: data, under names its class leaves free.

A module entry's ``state`` is the module's ``__dict__`` minus nn.Module's bookkeeping:
what its constructor stored (sizes, kernel sizes, flags...). It holds data only (numbers,
strings, booleans, null, containers of them, torch dtypes/devices/layouts/memory
formats), under names that are neither nn.Module bookkeeping (:data:`INTERNALS`) nor
anything the module's class or its bases define: a file cannot replace ``forward``,
``_call_impl``, ``_conv_forward`` or any other method or class attribute.

The one exception is :data:`STATE_FUNCTIONS`: ``TransformerEncoderLayer.activation`` and
``TransformerDecoderLayer.activation`` may hold a ``torch.nn.functional`` function, since
these layers keep ``F.relu`` or ``F.gelu`` there when built with a string activation.

:func:`encode_state` and :func:`decode_state` apply the same rules, so
:func:`mutnas_torch.save` never writes a file :func:`mutnas_torch.load` refuses.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_allow import Resolver, defined_on_class, function_name, identifier
from mutnas_torch.io_fx import decode_value, encode_value

__all__ = ["INTERNALS", "STATE_FUNCTIONS", "decode_state", "encode_state"]

# (class, attribute) pairs whose value may be a torch.nn.functional function.
STATE_FUNCTIONS = frozenset(
    {(nn.TransformerEncoderLayer, "activation"), (nn.TransformerDecoderLayer, "activation")}
)
INTERNALS = frozenset(nn.Module().__dict__)  # nn.Module bookkeeping, rebuilt at load


def _state_key_problem(cls: type, key: Any) -> str | None:
    if not identifier(key) or key.startswith("__"):
        return "is not a plain attribute name"
    if key in INTERNALS:
        return "is nn.Module bookkeeping"
    if defined_on_class(cls, key):
        return f"names something {cls.__qualname__} defines (a file cannot replace it)"
    return None


def _function_allowed(cls: type, key: str) -> bool:
    return any(issubclass(cls, base) and key == attr for base, attr in STATE_FUNCTIONS)


def encode_state(module: nn.Module, name: str, skip: frozenset = frozenset()) -> dict:
    """The module's plain attributes, refusing what :func:`decode_state` would refuse.

    Example:
        >>> encode_state(nn.Linear(2, 3), "fc")
        {'in_features': 2, 'out_features': 3}
    """
    out = {}
    for key, value in vars(module).items():
        if key in INTERNALS or key in skip:
            continue
        where = f"module {name!r} attribute {key!r}"
        problem = _state_key_problem(type(module), key)
        if problem:
            raise MutnasTorchError(f"{where}: cannot save it: the name {problem}")
        if _function_allowed(type(module), key) and callable(value):
            fn = function_name(value, where)
            if (
                not fn.startswith("torch.nn.functional.")
                or Resolver().function(fn, where) is not value
            ):
                raise MutnasTorchError(
                    f"{where}: only a torch.nn.functional function (or a module) can be saved here"
                )
            out[key] = {"function": fn}
        else:
            out[key] = encode_value(value, where, data=True)
    return out


def decode_state(cls: type, state: dict, resolver: Resolver, where: str) -> dict:
    """The attributes a module entry's ``state`` sets: data under vetted names only.

    Example:
        >>> decode_state(nn.Linear, {"in_features": 2}, Resolver(), "module 'fc'")
        {'in_features': 2}
        >>> decode_state(nn.Linear, {"forward": 2}, Resolver(), "module 'fc'")
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: module 'fc': the file sets attribute 'forward', which names something Linear defines...
    """
    values = {}
    for key, data in state.items():
        problem = _state_key_problem(cls, key)
        if problem:
            raise MutnasTorchError(
                f"{where}: the file sets attribute {key!r:.60}, which {problem} (corrupt or "
                f"crafted file)"
            )
        at = f"{where} attribute {key!r}"
        named = isinstance(data, dict) and set(data) == {"function"}
        if named and _function_allowed(cls, key):
            if not str(data["function"]).startswith("torch.nn.functional."):
                raise MutnasTorchError(f"{at}: only a torch.nn.functional function may go here")
            values[key] = resolver.function(data["function"], at)
        else:
            values[key] = decode_value(data, None, at)
    return values
