"""Checks that a graph is consistent and that a change record lines up with it.

Use them in your own tests after any mutation, yours or ours.
"""

from __future__ import annotations

import numpy as np

from mutnas.change import Change
from mutnas.graph import Graph
from mutnas.vertex import ADD, CONCAT, INVARIANT

__all__ = ["check_change", "check_consistent"]


def check_consistent(graph: Graph) -> None:
    """Raise ``AssertionError`` naming the vertex if any size disagrees with its edges.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> _ = g.absorb(g.input(2), nout=3)
        >>> check_consistent(g)
    """
    for v in graph._vertices.values():  # not graph.vertices: sorting needs sound edges
        for u in v.inputs:
            assert v in u.outputs, f"edge {u.name}->{v.name} missing from {u.name}.outputs"
        for w in v.outputs:
            assert v in w.inputs, f"edge {v.name}->{w.name} missing from {w.name}.inputs"
    try:
        graph.check()
    except Exception as err:
        raise AssertionError(str(err)) from None


def check_change(before: dict[str, int], graph: Graph, change: Change) -> None:
    """Check that ``change`` lines up with the graph it produced.

    Args:
        before: output sizes by vertex name before the mutation (``graph.sizes()``).
        graph: the graph after the mutation.
        change: what the mutation returned.

    Checks: every map has the new size and points into the old size without repeats;
    fixed vertices (inputs, pinned layers, fixed outputs) keep their size and every one of
    their neurons in place; every edge that existed before reads exactly its producer's
    map; adds, invariants and concats whose edges are all old are aligned with their inputs.

    Example:
        >>> import mutnas as mn
        >>> g = mn.Graph()
        >>> a = g.absorb(g.input(2), nout=3, name="a")
        >>> _ = g.absorb(a, nout=2)
        >>> before = g.sizes()
        >>> check_change(before, g, g.resize("a", 2))
    """
    new_edges = {(dst, pos) for _, dst, pos in change.edges_added}
    rewired = {dst for _, dst, _ in change.edges_added + change.edges_removed}

    def out_map(name: str) -> np.ndarray:
        index = change.outputs.get(name)
        if index is not None:
            return index
        if name in change.added:
            return np.arange(graph[name].nout)
        assert name in before, f"new vertex {name!r} has no output map"
        return np.arange(before[name])

    for v in graph.vertices:
        index = out_map(v.name)
        assert len(index) == v.nout, f"{v.name}: map of length {len(index)} for nout={v.nout}"
        kept = index[index >= 0]
        limit = before.get(v.name, change.nout_before.get(v.name, v.nout))
        assert np.all(kept < limit), f"{v.name}: map points past old size {limit}: {index}"
        assert len(np.unique(kept)) == len(kept), f"{v.name}: map repeats a neuron: {index}"
        if v.fixed and v.name in before:
            assert np.array_equal(index, np.arange(before[v.name])), (
                f"fixed {v.kind} vertex {v.name!r} changed: {before[v.name]} neurons -> {index}"
            )
        inputs = change.inputs.get(v.name)
        if inputs is not None:
            assert len(inputs) == len(v.inputs), f"{v.name}: {len(inputs)} input maps"
        all_old = True
        in_maps = []
        for pos, u in enumerate(v.inputs):
            if (v.name, pos) in new_edges:
                all_old = False
                in_maps.append(None)
                continue
            got = inputs[pos] if inputs is not None else out_map(u.name)
            assert len(got) == u.nout, f"{v.name}: input {pos} map length {len(got)} != {u.nout}"
            assert np.array_equal(got, out_map(u.name)), (
                f"{v.name}: input {pos} map {got} differs from {u.name}'s output map "
                f"{out_map(u.name)}"
            )
            in_maps.append(got)
        if not all_old or v.name not in before or v.name in rewired:
            continue
        if v.kind in (INVARIANT, ADD) and all(len(m) == v.nout for m in in_maps):
            for pos, m in enumerate(in_maps):
                assert np.array_equal(m, index), f"{v.name}: input {pos} not aligned with output"
        if v.kind == CONCAT and len(in_maps) == len(v.inputs):
            sizes = [before.get(u.name, u.nout) for u in v.inputs]
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            expect = np.concatenate(
                [np.where(m >= 0, m + offsets[k], -1) for k, m in enumerate(in_maps)]
            )
            if offsets[-1] == before[v.name]:
                assert np.array_equal(expect, index), f"{v.name}: concat map {index} != {expect}"
