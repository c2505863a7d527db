"""Every size, delta, option and utility that enters the core is checked here, once.

Sizes are integers (Python or numpy, never ``bool``, ``float`` or ``str``) in
``[1, max_size()]``; utilities are one finite real number per neuron; a utility mapping
names only vertices of the graph. A refusal is a :class:`~mutnas.GraphError` that names
the vertex, raised before anything is changed or allocated.

The size bound, :func:`max_size`, is :data:`DEFAULT_MAX_SIZE` (``2**20`` = 1,048,576
neurons or channels per vertex, well above any layer of torchvision or timm) unless
:func:`set_max_size` changed it for this process. It keeps one mistyped or hostile number
(``resize(v, 10**9)``, a graph file with ``"nout": 1e18``) from making the solver
allocate gigabytes.

Example:
    >>> import mutnas as mn
    >>> from mutnas.validate import max_size
    >>> g = mn.Graph()
    >>> try:
    ...     g.input(2.5, name="x")
    ... except mn.GraphError as err:
    ...     print(err)
    vertex 'x': nout must be an integer, got 2.5 (float)
    >>> max_size()
    1048576
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mutnas.errors import GraphError
from mutnas.vertex import Vertex

if TYPE_CHECKING:
    from mutnas.graph import Graph

__all__ = [
    "DEFAULT_MAX_SIZE",
    "OPTIONS",
    "check_delta",
    "check_int",
    "check_options",
    "check_size",
    "check_utility",
    "max_size",
    "set_max_size",
    "utility_function",
]

#: The default bound on every vertex's size (see :func:`max_size`).
DEFAULT_MAX_SIZE = 2**20
_MAX_SIZE = [DEFAULT_MAX_SIZE]
_RAISE = "raise the bound with mutnas.advanced.set_max_size(n) if the size is meant"

#: Keyword options a vertex accepts, besides its inputs, ``nout`` and ``name``.
OPTIONS = ("min_nout", "max_nout", "multiple_of", "fixed", "groups", "utility", "meta")

Utility = Callable[[Vertex], Any] | Mapping[Any, Any] | None


def max_size() -> int:
    """The largest size any vertex may have (and the largest size change asked for)."""
    return _MAX_SIZE[0]


def set_max_size(n: int) -> int:
    """Set the bound :func:`max_size` returns, for this process; returns the previous one.

    Example:
        >>> previous = set_max_size(2**22)
        >>> max_size(), previous
        (4194304, 1048576)
        >>> _ = set_max_size(previous)
    """
    previous = _MAX_SIZE[0]
    _MAX_SIZE[0] = check_int(n, "the size bound", "max_size", minimum=1, maximum=2**62)
    return previous


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(value: Any, what: str, where: str, *, minimum: int, maximum: int) -> int:
    """``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else refuse.

    Example:
        >>> check_int(np.int64(3), "groups", "a", minimum=1, maximum=8)
        3
    """
    if not _is_int(value):
        shown = f"{value!r}"[:40]
        raise GraphError(
            f"vertex {where!r}: {what} must be an integer, got {shown} ({type(value).__name__})"
        )
    value = int(value)
    if value < minimum:
        raise GraphError(f"vertex {where!r}: {what} must be >= {minimum}, got {value}")
    if value > maximum:
        hint = f"; {_RAISE}" if maximum == max_size() else ""
        raise GraphError(f"vertex {where!r}: {what}={value} is above {maximum}{hint}")
    return value


def check_size(value: Any, where: str, what: str = "nout") -> int:
    """A size: an integer in ``[1, max_size()]``."""
    return check_int(value, what, where, minimum=1, maximum=max_size())


def check_delta(value: Any, where: str, nout: int) -> int:
    """A size change of a vertex of size ``nout``: the new size may not pass the bound.

    Example:
        >>> check_delta(-2, "a", 4)
        -2
    """
    delta = check_int(value, "a size change", where, minimum=-max_size(), maximum=max_size())
    if nout + delta > max_size():
        raise GraphError(
            f"vertex {where!r}: resizing from {nout} by {delta} gives {nout + delta}, above "
            f"the size bound {max_size()}; {_RAISE}"
        )
    return delta


def check_utility(values: Any, sizes: int | Collection[int], where: str) -> np.ndarray:
    """Per-neuron values as a float array: 1-D, real, finite, of one of ``sizes`` lengths.

    Example:
        >>> check_utility([1, 2.5], 2, "a")
        array([1. , 2.5])
    """
    sizes = (sizes,) if isinstance(sizes, int) else tuple(sizes)
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise GraphError(f"vertex {where!r}: utility is not an array of numbers ({err})") from None
    if array.ndim != 1 or array.dtype.kind not in "iuf":
        raise GraphError(
            f"vertex {where!r}: utility must be a 1-D array of real numbers, got "
            f"{array.dtype} of shape {array.shape}"
        )
    if len(array) not in sizes:
        raise GraphError(
            f"vertex {where!r}: utility has {len(array)} values for nout={sizes[0]}; give one "
            "value per output neuron"
        )
    array = array.astype(float)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise GraphError(
            f"vertex {where!r}: utility value {array[bad[0]]} at neuron {int(bad[0])} is not "
            f"finite ({bad.size} of {len(array)} are not); utilities must be finite numbers"
        )
    return array


def check_options(name: str, nout: int, options: dict[str, Any], *, nominal: bool = False) -> None:
    """Validate a vertex's options; unless ``nominal`` (a size about to be solved), ``nout``.

    ``options["utility"]`` is replaced by its checked float array.
    """
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise GraphError(f"vertex {name!r}: unknown options {sorted(unknown)}")
    bound = max_size()
    min_nout = check_int(options.get("min_nout", 1), "min_nout", name, minimum=1, maximum=bound)
    max_nout = options.get("max_nout")
    if max_nout is not None:
        max_nout = check_int(max_nout, "max_nout", name, minimum=1, maximum=bound)
        if max_nout < min_nout:
            raise GraphError(f"vertex {name!r}: max_nout={max_nout} is below min_nout={min_nout}")
    multiple_of = options.get("multiple_of", 1)
    multiple_of = check_int(multiple_of, "multiple_of", name, minimum=1, maximum=bound)
    check_int(options.get("groups", 1), "groups", name, minimum=1, maximum=bound)
    if not isinstance(options.get("fixed", False), bool | np.bool_):
        raise GraphError(f"vertex {name!r}: fixed must be True or False, got {options['fixed']!r}")
    if not isinstance(options.get("meta") or {}, dict):
        raise GraphError(f"vertex {name!r}: meta must be a dict, got {options['meta']!r}"[:200])
    if options.get("utility") is not None:
        options["utility"] = check_utility(options["utility"], nout, name)
    if nominal:
        return
    if nout % multiple_of:
        raise GraphError(f"vertex {name!r}: nout={nout} is not a multiple of {multiple_of}")
    if nout < min_nout or (max_nout is not None and nout > max_nout):
        raise GraphError(f"vertex {name!r}: nout={nout} is outside [{min_nout}, {max_nout}]")


def utility_function(graph: Graph, utility: Utility) -> Callable[[Vertex], np.ndarray | None]:
    """The per-vertex utility a mutation of ``graph`` uses, with ``utility`` checked.

    ``utility`` is a mapping ``{vertex or name: values}`` (checked here, before anything
    happens), a callable ``vertex -> values or None`` (each answer checked when asked), or
    None. Values are for the vertex's size when the mutation starts (a callable may also
    answer for its current size, within a multi-step mutation). Vertices without values use
    their stored utility, else ones for layers.

    Raises:
        GraphError: a mapping names a vertex the graph does not have, or any values are
            not one finite number per neuron.
    """

    def default(v: Vertex) -> np.ndarray | None:
        if v.utility is not None:
            return v.utility
        return np.ones(v.nout) if v.is_source else None

    if utility is None:
        return default
    if isinstance(utility, Mapping):
        by_name = {}
        for key, values in utility.items():
            v = _utility_vertex(graph, key)
            by_name[v.name] = None if values is None else check_utility(values, v.nout, v.name)
        return lambda v: by_name[v.name] if v.name in by_name else default(v)
    if not callable(utility):
        raise GraphError(f"utility must be a mapping or a callable, got {type(utility).__name__}")
    sizes = graph.sizes()

    def call(v: Vertex) -> np.ndarray | None:
        values = utility(v)
        if values is None:
            return default(v)
        return check_utility(values, (sizes.get(v.name, v.nout), v.nout), v.name)

    return call


def _utility_vertex(graph: Graph, key: Any) -> Vertex:
    if not isinstance(key, str | Vertex):
        raise GraphError(f"utility keys must be vertices or names, got {key!r}"[:200])
    try:
        return graph.vertex(key)
    except KeyError:
        raise GraphError(
            f"utility names vertex {key!r}, which is not in this graph; check the name"
        ) from None
