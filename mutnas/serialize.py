"""JSON serialisation of graphs (no pickle anywhere)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mutnas.errors import GraphError
from mutnas.graph import Graph
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
    """Rebuild a graph from :func:`graph_to_dict` output, validating it."""
    if data.get("format") != FORMAT:
        raise GraphError(f"not a mutnas graph: format is {data.get('format')!r}, not {FORMAT!r}")
    if data.get("version", 0) > VERSION:
        raise GraphError(
            f"graph file version {data['version']} is newer than this mutnas ({VERSION})"
        )
    g = Graph()
    for entry in data["vertices"]:
        name, kind = entry["name"], entry["kind"]
        if kind not in KINDS:
            raise GraphError(f"vertex {name!r} has unknown kind {kind!r}")
        if name in g._vertices:
            raise GraphError(f"duplicate vertex name {name!r} in graph file")
        try:
            inputs = [g._vertices[n] for n in entry["inputs"]]
        except KeyError as err:
            raise GraphError(
                f"vertex {name!r} reads {err.args[0]!r}, which is not defined before it"
            ) from None
        utility = entry.get("utility")
        v = Vertex(
            g,
            name,
            kind,
            entry["nout"],
            inputs,
            min_nout=entry.get("min_nout", 1),
            max_nout=entry.get("max_nout"),
            multiple_of=entry.get("multiple_of", 1),
            fixed=entry.get("fixed", False),
            groups=entry.get("groups", 1),
            utility=None if utility is None else np.asarray(utility, dtype=float),
            meta=entry.get("meta") or {},
        )
        for u in inputs:
            u.outputs.append(v)
        g._vertices[name] = v
    g._counter = int(data.get("counter", len(g._vertices)))
    g._outputs = [g[n] for n in data.get("outputs", [])]
    g.check()
    return g


def graph_to_json(graph: Graph, **dumps_kwargs: Any) -> str:
    """Serialise ``graph`` to JSON text."""
    return json.dumps(graph_to_dict(graph), **dumps_kwargs)


def graph_from_json(text: str) -> Graph:
    """Rebuild a graph from JSON text written by :func:`graph_to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise GraphError(f"graph JSON is not valid JSON: {err}") from None
    return graph_from_dict(data)
