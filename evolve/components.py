"""Search components as JSON: what the run directory records and :func:`evolve.resume` rebuilds.

Every component (mutation, crossover, selection, termination, objective, search space,
callback) follows the scikit-learn convention: its constructor stores each parameter
unchanged under the same name. :func:`describe` therefore turns a component into
``{"class": "evolve.selection.TournamentSelection", "params": {"size": 2}}`` (nested
components and frozen dataclasses included), and :func:`build` turns that back into an
equal object.

Rebuilding reads files that may come from anyone, so :func:`build` never imports a module
or looks up an attribute by the name a file gives. It calls only a class *registered for
the role* of the place where the description appears: a subclass of that role (an
objective must be an :class:`~evolve.Objective`, a survival a :class:`~evolve.Selection`,
and so on) defined in the ``evolve`` package, or one of the classes passed in ``extra``.
The registry is the one Python fills when each class statement runs
(``type.__subclasses__``); names are matched exactly (``module.QualifiedName``). A
parameter whose annotation names a component class takes components of that role; an
unannotated one takes components of its owner's role (``AnyTermination(terminations)``);
every other parameter takes plain JSON data, checked against simple annotations
(``int``, ``float``, ``str``, ``bool``, ``None`` and sequences of them).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from evolve.errors import ConfigError

__all__ = ["build", "describe", "registered"]

_MAX_DEPTH = 32
_SCALARS = {int, float, str, bool, type(None)}


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


def registered(role: type, extra: Iterable[type] = ()) -> dict[str, type]:
    """The classes a description may name for ``role``, by qualified name.

    ``role`` itself and its subclasses defined in ``evolve``, plus the subclasses of
    ``role`` among ``extra``.

    Example:
        >>> from evolve.termination import Termination
        >>> "evolve.termination.TimeTermination" in registered(Termination)
        True
        >>> "evolve.checkpoint.prune_models" in registered(Termination)
        False
    """
    found: dict[str, type] = {}
    todo = [role]
    while todo:
        cls = todo.pop()
        if cls.__module__ == "evolve" or cls.__module__.startswith("evolve."):
            found[_class_path(cls)] = cls
        todo.extend(cls.__subclasses__())
    for cls in extra:
        if isinstance(cls, type) and issubclass(cls, role):
            found[_class_path(cls)] = cls
    return found


def build(spec: Any, role: type, *, extra: Iterable[type] = (), where: str = "") -> Any:
    """Rebuild what :func:`describe` wrote, calling only classes registered for ``role``.

    Args:
        spec: the description (parsed JSON).
        role: the base class the description must be (``Objective``, ``GeneticAlgorithm``).
        extra: classes outside ``evolve`` that may be rebuilt (your own components).
        where: the file and key the description comes from, for messages
            (``"runs/x/config.json: objectives[0]"``).

    Raises:
        ConfigError: the description names a class that is not registered for its role,
            is malformed, or its class refuses the parameters; one line naming ``where``.

    Example:
        >>> from evolve.selection import Selection, TournamentSelection
        >>> build(describe(TournamentSelection(size=3)), Selection).size
        3
        >>> build({"class": "evolve.checkpoint.Path", "params": {}}, Selection, where="x")
        Traceback (most recent call last):
        evolve.errors.ConfigError: x: 'evolve.checkpoint.Path' is not a Selection class of evolve; ...
    """
    return _Builder(tuple(extra), where or "the description").component(spec, (role,), where, 0)


class _Builder:
    def __init__(self, extra: tuple[type, ...], source: str):
        self.extra, self.source = extra, source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{key or self.source}: {message}")

    def component(self, spec: Any, roles: tuple[type, ...], key: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail(key, f"nested deeper than {_MAX_DEPTH} levels")
        if not (isinstance(spec, dict) and set(spec) == {"class", "params"}):
            raise self.fail(key, 'expected a component {"class": ..., "params": {...}}')
        path, params = spec["class"], spec["params"]
        if not isinstance(path, str) or not isinstance(params, dict):
            raise self.fail(key, '"class" must be a string and "params" an object')
        cls = self.resolve(path, roles, key)
        hints = _hints(cls)
        known = _param_names(cls)
        kwargs = {}
        for name, value in params.items():
            if name not in known:
                raise self.fail(key, f"{path} has no parameter {name!r}; known: {sorted(known)}")
            kwargs[name] = self.value(value, hints.get(name), roles, f"{key}.{name}", depth + 1)
        try:
            return cls(**kwargs)
        except (ConfigError, TypeError, ValueError) as err:
            raise self.fail(key, f"{path} refused its parameters: {err}") from None

    def resolve(self, path: str, roles: tuple[type, ...], key: str) -> type:
        for role in roles:
            cls = registered(role, self.extra).get(path)
            if cls is not None:
                return cls
        wanted = " or ".join(r.__name__ for r in roles)
        article = "an" if wanted[0] in "AEIOU" else "a"
        if path.startswith("evolve."):
            raise self.fail(
                key, f"{path!r} is not {article} {wanted} class of evolve; a run directory may name "
                f"only evolve's {wanted} classes or your own passed in extra="
            )  # fmt: skip
        short = path.rsplit(".", 1)[-1]
        raise self.fail(
            key, f"the component {path} is not part of evolve; pass it again "
            f"(resume(..., extra=[{short}])) if it is yours and {article} {wanted}"
        )  # fmt: skip

    def value(self, value: Any, hint: Any, owner: tuple[type, ...], key: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail(key, f"nested deeper than {_MAX_DEPTH} levels")
        roles = owner if hint is None else _roles(hint)
        if hint is not None and not isinstance(value, dict) and not _matches(value, hint):
            raise self.fail(key, f"expected {_hint_text(hint)}, got {value!r:.60}")
        if isinstance(value, list):
            return tuple(
                self.value(x, _item_hint(hint), owner, f"{key}[{i}]", depth + 1)
                for i, x in enumerate(value)
            )
        if isinstance(value, dict) and set(value) == {"mapping"}:
            return self.mapping(value["mapping"], owner, key, depth)
        if isinstance(value, dict):
            if not roles:
                raise self.fail(key, f"a component is not allowed here (expects {hint})")
            return self.component(value, roles, key, depth)
        return value

    def mapping(self, pairs: Any, owner: tuple[type, ...], key: str, depth: int) -> dict:
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise self.fail(key, '"mapping" must be a list of [key, value] pairs')
        out = {}
        for k, v in pairs:
            k = self.value(k, None, owner, key, depth + 1)
            if isinstance(k, dict):
                raise self.fail(key, "a mapping key must be plain data")
            out[k] = self.value(v, None, owner, f"{key}[{k!r}]", depth + 1)
        return out


def _param_names(cls: type) -> set[str]:
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - {"self"}


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve: fall back to the owner's role
        return {}


def _leaves(hint: Any) -> list[Any]:
    """The classes a hint is made of (``Sequence[X] | None`` -> ``[Sequence, X, NoneType]``)."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if not args:
        return [hint]
    head = [] if origin in (typing.Union, types.UnionType) else [origin]
    return head + [leaf for a in args if a is not Ellipsis for leaf in _leaves(a)]


def _roles(hint: Any) -> tuple[type, ...]:
    skip = ("builtins", "typing", "collections.abc")
    return tuple(c for c in _leaves(hint) if isinstance(c, type) and c.__module__ not in skip)


def _item_hint(hint: Any) -> Any:
    """What the items of a list described by ``hint`` must be (``None``: unchecked)."""
    if hint is None:
        return None
    for option in typing.get_args(hint) if _is_union(hint) else (hint,):
        origin = typing.get_origin(option)
        if origin in (tuple, list, collections.abc.Sequence) and typing.get_args(option):
            return typing.get_args(option)[0]
    return None if _roles(hint) else Any


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _matches(value: Any, hint: Any) -> bool:
    """Whether plain ``value`` fits a simple annotation (anything else is not checked)."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    if not all(o in _SCALARS for o in options):
        return True
    if isinstance(value, bool):
        return bool in options
    if isinstance(value, int) and float in options:
        return True
    return any(type(value) is o for o in options)


def _hint_text(hint: Any) -> str:
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    return " or ".join(
        "null" if o is type(None) else getattr(o, "__name__", str(o)) for o in options
    )
