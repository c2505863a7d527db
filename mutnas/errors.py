"""Exceptions raised by the mutnas core.

Every error derives from :class:`MutnasError`. Errors about sizes carry the names of the
vertices involved so that callers (and adapters) can say which layers are at fault.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["GraphError", "MutnasError", "SizeCycleError", "SizeError", "SolverError"]


class MutnasError(Exception):
    """Base class of every error raised by mutnas."""


class GraphError(MutnasError, ValueError):
    """A graph was built or edited in a way that can never be valid (bad name, bad edge)."""


class SizeError(MutnasError):
    """No assignment of sizes satisfies the request; the graph is left unchanged.

    Attributes:
        vertices: names of the vertices whose sizes take part in the failed request.
        requested: the sizes asked for in the failed part, vertex name -> size.
        fixed: fixed vertices whose neurons constrain the failed part.
        message: the message without the list of vertices.
    """

    def __init__(
        self,
        message: str,
        vertices: Iterable[str] = (),
        *,
        requested: dict[str, int] | None = None,
        fixed: Iterable[str] = (),
    ):
        self.message = message
        self.vertices = tuple(vertices)
        self.requested = dict(requested or {})
        self.fixed = tuple(fixed)
        shown = ", ".join(repr(v) for v in self.vertices[:12])
        if len(self.vertices) > 12:
            shown += f", ... ({len(self.vertices)} in all)"
        super().__init__(f"{message} [vertices: {shown}]" if shown else message)


class SizeCycleError(SizeError):
    """The structure forces a size to equal itself plus something positive."""


class SolverError(SizeError):
    """The MILP solver failed for a reason other than infeasibility (time limit, crash)."""


def infeasible_message(requested: dict[str, int], fixed: Iterable[str], context: str = "") -> str:
    """What a :class:`SizeError` from the solver says: ``context`` goes after the opening.

    >>> infeasible_message({"a": 3}, ["out"])
    "no sizes satisfy every constraint (requested: 'a' -> 3); fixed vertices that keep their neurons: 'out'"
    """
    message = "no sizes satisfy every constraint" + context
    if requested:
        message += f" (requested: {', '.join(f'{v!r} -> {n}' for v, n in requested.items())})"
    fixed = list(fixed)
    if fixed:
        message += f"; fixed vertices that keep their neurons: {', '.join(map(repr, fixed))}"
    return message
