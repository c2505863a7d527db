"""Search components as JSON: what the run directory records and :func:`evolve.resume` rebuilds.

Every component (mutation, crossover, selection, termination, objective, search space,
callback) follows the scikit-learn convention: its constructor stores each parameter
unchanged under the same name. :func:`describe` therefore turns a component into
``{"class": "evolve.selection.TournamentSelection", "params": {"size": 2}}`` (nested
components and frozen dataclasses included), and :func:`build` turns that back into an
equal object. Only classes from the ``evolve`` package, or classes passed in ``extra``,
are rebuilt: a run directory never makes the library import arbitrary code.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

from evolve.errors import ConfigError

__all__ = ["build", "describe"]


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _params(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    signature = inspect.signature(type(obj).__init__)
    names = [
        p.name
        for p in signature.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [n for n in names if not hasattr(obj, n)]
    if missing:
        raise ConfigError(
            f"{type(obj).__name__} does not store its parameter(s) {missing} as attributes; "
            f"store each constructor argument unchanged under its own name"
        )
    return {n: getattr(obj, n) for n in names}


def describe(obj: Any) -> Any:
    """A JSON-ready description of ``obj`` (components become ``{"class", "params"}``).

    Example:
        >>> from evolve.selection import TournamentSelection
        >>> describe(TournamentSelection(size=3))
        {'class': 'evolve.selection.TournamentSelection', 'params': {'size': 3}}
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {"mapping": [[describe(k), describe(v)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [describe(x) for x in obj]
    if isinstance(obj, type):
        raise ConfigError(f"pass an instance, not the class {obj.__name__}")
    if callable(obj) and not hasattr(obj, "__dict__"):
        raise ConfigError(f"cannot describe {obj!r}: use a component object instead")
    return {
        "class": _class_path(type(obj)),
        "params": {k: describe(v) for k, v in _params(obj).items()},
    }


def build(spec: Any, *, extra: Iterable[type] = ()) -> Any:
    """Rebuild what :func:`describe` wrote.

    Args:
        spec: the description.
        extra: classes outside ``evolve`` that may be rebuilt (your own components).

    Raises:
        ConfigError: the description names a class outside ``evolve`` and not in ``extra``.

    Example:
        >>> from evolve.selection import TournamentSelection
        >>> build(describe(TournamentSelection(size=3))).size
        3
    """
    allowed = {_class_path(c): c for c in extra}
    return _build(spec, allowed)


def _build(spec: Any, allowed: dict[str, type]) -> Any:
    if isinstance(spec, list):
        return tuple(_build(x, allowed) for x in spec)
    if not isinstance(spec, dict):
        return spec
    if set(spec) == {"mapping"}:
        return {_build(k, allowed): _build(v, allowed) for k, v in spec["mapping"]}
    cls = _resolve(spec["class"], allowed)
    return cls(**{k: _build(v, allowed) for k, v in spec["params"].items()})


def _resolve(path: str, allowed: dict[str, type]) -> type:
    if path in allowed:
        return allowed[path]
    if not path.startswith("evolve."):
        raise ConfigError(
            f"the run directory names the component {path}, which is not part of evolve; "
            f"pass it again (resume(..., extra=[{path.rsplit('.', 1)[-1]}]))"
        )
    module_name, _, qualname = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"unknown component {path} in the run directory: {err}") from err
