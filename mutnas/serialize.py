"""JSON serialisation of graphs (no pickle anywhere)."""

from __future__ import annotations

import json
from typing import Any

from mutnas.errors import GraphError
from mutnas.graph import Graph
from mutnas.validate import check_int, check_options, check_size
from mutnas.vertex import KINDS, Vertex

__all__ = ["FORMAT", "graph_from_dict", "graph_from_json", "graph_to_dict", "graph_to_json"]

FORMAT = "mutnas.graph"
VERSION = 1


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """A plain, JSON-ready dict describing ``graph`` completely.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> _ = g.absorb(g.input(2, name="x"), nout=3, name="a")
        >>> d = graph_to_dict(g)
        >>> [v["name"] for v in d["vertices"]], d["vertices"][1]["inputs"]
        (['x', 'a'], ['x'])
    """
    vertices = []
    for v in graph.vertices:
        vertices.append(
            {
                "name": v.name,
                "kind": v.kind,
                "nout": v.nout,
                "inputs": [u.name for u in v.inputs],
                **v.constraints(),
                "utility": None if v.utility is None else v.utility.tolist(),
                "meta": v.meta,
            }
        )
    return {
        "format": FORMAT,
        "version": VERSION,
        "counter": graph._counter,
        "vertices": vertices,
        "outputs": [v.name for v in graph._outputs],
    }


def graph_from_dict(data: dict[str, Any]) -> Graph:
    """Rebuild a graph from :func:`graph_to_dict` output, validating every field.

    Sizes, options and utilities go through the checks of graph building
    (:mod:`mutnas.validate`), so a file cannot hold what :class:`Graph` would refuse.

    Raises:
        GraphError: the data is not a mutnas graph, or a field has the wrong type or value
            (the message names the vertex).
        SizeError: the sizes do not agree along an edge.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> _ = g.absorb(g.input(2, name="x"), nout=3, name="a")
        >>> graph_from_dict(graph_to_dict(g)) == g
        True
        >>> bad = graph_to_dict(g)
        >>> bad["vertices"][1]["nout"] = "3"
        >>> graph_from_dict(bad)
        Traceback (most recent call last):
        ...
        mutnas.errors.GraphError: vertex 'a': nout must be an integer, got '3' (str)
    """
    if not isinstance(data, dict):
        raise GraphError(f"not a mutnas graph: expected a JSON object, got {type(data).__name__}")
    if data.get("format") != FORMAT:
        raise GraphError(f"not a mutnas graph: format is {data.get('format')!r}, not {FORMAT!r}")
    version = data.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise GraphError(f"graph file version must be an integer, got {version!r}")
    if version > VERSION:
        raise GraphError(f"graph file version {version} is newer than this mutnas ({VERSION})")
    g = Graph()
    for entry in _list(data.get("vertices"), "vertices", "the graph file"):
        _add_vertex(g, entry)
    counter = data.get("counter", len(g._vertices))
    g._counter = check_int(counter, "counter", "<graph>", minimum=0, maximum=2**62)
    outputs = _list(data.get("outputs", []), "outputs", "the graph file")
    missing = [n for n in outputs if not isinstance(n, str) or n not in g._vertices]
    if missing:
        raise GraphError(f"graph file outputs name {missing[0]!r}, which is not a vertex")
    g._outputs = [g[n] for n in outputs]
    g.check()
    return g


def _list(value: Any, field: str, where: str) -> list:
    if not isinstance(value, list):
        raise GraphError(f"{where}: {field} must be a list, got {type(value).__name__}")
    return value


def _add_vertex(g: Graph, entry: Any) -> None:
    """Add one vertex entry of a graph file, checked as graph building checks it."""
    if not isinstance(entry, dict):
        raise GraphError(f"graph file vertex entries must be objects, got {entry!r}"[:200])
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not name:
        raise GraphError(f"graph file vertex names must be non-empty strings, got {name!r}")
    if kind not in KINDS:
        raise GraphError(f"vertex {name!r} has unknown kind {kind!r}")
    if name in g._vertices:
        raise GraphError(f"duplicate vertex name {name!r} in graph file")
    names = _list(entry.get("inputs", []), "inputs", f"vertex {name!r}")
    unknown = [n for n in names if not isinstance(n, str) or n not in g._vertices]
    if unknown:
        raise GraphError(f"vertex {name!r} reads {unknown[0]!r}, which is not defined before it")
    inputs = [g._vertices[n] for n in names]
    nout = check_size(entry.get("nout"), name)
    defaults = {"min_nout": 1, "max_nout": None, "multiple_of": 1, "fixed": False, "groups": 1}
    options = {key: entry.get(key, default) for key, default in defaults.items()}
    options["utility"] = entry.get("utility")
    options["meta"] = entry.get("meta") or {}
    check_options(name, nout, options)
    v = Vertex(g, name, kind, nout, inputs, **options)
    for u in inputs:
        u.outputs.append(v)
    g._vertices[name] = v


def graph_to_json(graph: Graph, **dumps_kwargs: Any) -> str:
    """Serialise ``graph`` to JSON text."""
    return json.dumps(graph_to_dict(graph), **dumps_kwargs)


def graph_from_json(text: str) -> Graph:
    """Rebuild a graph from JSON text written by :func:`graph_to_json` (see
    :func:`graph_from_dict` for the checks)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise GraphError(f"graph JSON is not valid JSON: {err}") from None
    return graph_from_dict(data)
