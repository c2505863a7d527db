"""The closed form for grouped components (one grouped vertex between dense layers).

It must agree with the MILP on sizes and on the neurons kept, and skip the MILP.
"""

from __future__ import annotations

import numpy as np
import pytest

import mutnas as mn
from mutnas.testing import check_consistent

MILP = mn.SolverOptions(closed_form=False)


def grouped_block(groups: int, width: int, seed: int) -> mn.Graph:
    """x -> a (dense) -> bn -> b (grouped) -> c (dense): the component of a ResNeXt block."""
    rng = np.random.default_rng(seed)
    g = mn.Graph()
    a = g.absorb(g.input(3, name="x"), nout=groups * width, name="a")
    b = g.absorb(g.invariant(a, name="bn"), nout=groups * width, name="b", groups=groups)
    g.absorb(b, nout=2, name="c")
    a.utility, b.utility = (rng.uniform(0.05, 1.0, groups * width) for _ in range(2))
    return g


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "request_",
    [{"a": -4}, {"a": -5, "b": -5}, {"a": 4, "b": 4}, {"b": -7}, {"a": 3}, {"a": -1000}],
)
@pytest.mark.parametrize("relaxed", [False, True])
def test_grouped_components_skip_the_milp_and_agree_with_it(seed, request_, relaxed):
    results = []
    for solver in (None, MILP):
        g = grouped_block(4, 4, seed)
        wanted = {k: max(-g[k].nout + (0 if relaxed else 1), d) for k, d in request_.items()}
        try:
            change = g.resize(wanted, relaxed=relaxed, solver=solver)
        except mn.SizeError as err:
            results.append(type(err).__name__)
            continue
        check_consistent(g)
        outputs = {k: v.tolist() for k, v in change.outputs.items()}
        results.append((g.sizes(), outputs, change.stats["n_milp_classes"]))
    fast, exact = results
    if isinstance(fast, str) or isinstance(exact, str):
        assert fast == exact
        return
    assert fast[:2] == exact[:2]
    assert fast[2] == 0 and exact[2] > 0


def test_blocks_that_weigh_differently_go_to_the_milp():
    # the grouped conv reads a concat of two layers: which blocks are kept changes each
    # layer's size, so the component is not one-dimensional in the kept blocks
    g = mn.Graph()
    x = g.input(3, name="x")
    a1, a2 = g.absorb(x, nout=4, name="a1"), g.absorb(x, nout=4, name="a2")
    b = g.absorb(g.concat(a1, a2, name="cat"), nout=8, name="b", groups=4)
    g.absorb(b, nout=2, name="c")
    change = g.resize("b", -4, relaxed=True)
    assert change.stats["n_milp_classes"] > 0
    assert (g["a1"].nout, g["a2"].nout, g["b"].nout, g["b"].groups) == (2, 2, 4, 2)
    check_consistent(g)
