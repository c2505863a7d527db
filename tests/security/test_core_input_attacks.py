"""Values that used to slip into the core: each is refused with a GraphError naming the
vertex, and the graph is left exactly as it was.

Non-finite utilities (a NaN made ``prune`` shrink a layer from 8 to 1), sizes that are not
integers (``2.5``, ``"3"``, ``True``), sizes past the documented bound (``resize(v, 10**9)``
grew until the kernel killed other processes), utilities of the wrong length or for
vertices that do not exist (silently ignored), and graph files with such values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mutnas as mn
from mutnas.testing.strategies import graphs

NAN, INF = float("nan"), float("inf")


def chain() -> mn.Graph:
    """x(3) -> a(8) -> b(2), plus a concat c of a and b for resize_inputs."""
    g = mn.Graph()
    a = g.absorb(g.input(3, name="x"), nout=8, name="a")
    b = g.absorb(a, nout=2, name="b")
    g.concat(a, b, name="c")
    return g


# ------------------------------------------------------------ non-finite utilities


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_prune_refuses_a_non_finite_utility(refuse, bad):
    values = [1.0] * 7 + [bad]
    refuse(chain(), mn.prune, utility={"a": values}, error=mn.GraphError, match=r"'a'.*finite")


@pytest.mark.parametrize("bad", [NAN, INF])
def test_resize_refuses_a_non_finite_utility(refuse, bad):
    values = np.r_[np.ones(7), bad]
    refuse(chain(), mn.resize, "a", -2, utility={"a": values}, error=mn.GraphError, match="'a'")
    fn = lambda v: values if v.name == "a" else None  # noqa: E731
    refuse(chain(), mn.resize, "a", 2, utility=fn, error=mn.GraphError, match=r"'a'.*finite")


def test_prune_with_a_nan_no_longer_shrinks_the_layer():
    g = chain()
    with pytest.raises(mn.GraphError):
        g.prune(utility={"a": [NAN] * 8})
    assert g["a"].nout == 8


def test_stored_utility_must_be_finite(snapshot):
    g = chain()
    before = snapshot(g)
    with pytest.raises(mn.GraphError, match=r"'d'.*finite"):
        g.absorb("b", nout=3, name="d", utility=[1.0, NAN, 1.0])
    assert snapshot(g) == before


# ------------------------------------------------------------ sizes past the bound


def test_resize_by_a_billion_is_refused_before_any_allocation(capped):
    code = """
    import mutnas as mn
    g = mn.Graph()
    a = g.absorb(g.input(3, name="x"), nout=8, name="a")
    g.absorb(a, nout=2, name="b")
    try:
        g.resize("a", 10**9)
        print("GREW", g["a"].nout)
    except mn.GraphError as err:
        print("REFUSED", err, g["a"].nout)
    """
    result = capped(code, margin_mib=256)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED"), result.stdout
    assert "'a'" in result.stdout and "set_max_size" in result.stdout
    assert result.stdout.split()[-1] == "8"


def test_the_bound_is_documented_and_configurable(refuse):
    from mutnas.advanced import max_size, set_max_size

    assert max_size() == 2**20
    g = chain()
    refuse(g, mn.resize, "a", 2**20, error=mn.GraphError, match=r"'a'.*1048576")
    previous = set_max_size(2**21)
    try:
        assert previous == 2**20
        assert g.resize("a", 2**20 - 8).nout_after["a"] == 2**20
    finally:
        set_max_size(previous)


def test_a_concat_grown_past_the_bound_is_refused(refuse):
    from mutnas.advanced import set_max_size

    previous = set_max_size(64)
    try:
        g = mn.Graph()
        x = g.input(2, name="x")
        a, b = g.absorb(x, nout=30, name="a"), g.absorb(x, nout=30, name="b")
        g.concat(a, b, name="c")
        refuse(g, mn.resize, "a", 10, error=mn.SizeError, match=r"'c'.*70.*64")
        with pytest.raises(mn.GraphError, match=r"'d'.*120"):
            g.concat(a, b, "c", name="d")
    finally:
        set_max_size(previous)


# ------------------------------------------------------------ loose values

LOOSE = [2.5, "3", True, np.bool_(True), 3.0, [3], 10**18, -(10**18)]


@pytest.mark.parametrize("bad", LOOSE, ids=repr)
def test_resize_refuses_loose_deltas(refuse, bad):
    refuse(chain(), mn.resize, "a", bad, error=mn.GraphError, match="'a'")
    refuse(chain(), mn.resize, {"a": bad}, error=mn.GraphError, match="'a'")
    refuse(chain(), mn.resize_inputs, "c", [bad, None], error=mn.GraphError, match="'a'")


@pytest.mark.parametrize("bad", [*LOOSE, None, 0, -4], ids=repr)
def test_building_refuses_loose_sizes(snapshot, bad):
    g = chain()
    before = snapshot(g)
    for build in (
        lambda: g.input(bad, name="y"),
        lambda: g.absorb("b", nout=bad, name="y"),
        lambda: g.absorb("b", nout=4, name="y", min_nout=bad),
        lambda: g.absorb("b", nout=4, name="y", multiple_of=bad),
        lambda: g.absorb("b", nout=4, name="y", groups=bad),
    ):
        with pytest.raises(mn.GraphError, match="'y'"):
            build()
        assert snapshot(g) == before


@pytest.mark.parametrize("bad", [2.5, "3", True, 10**18], ids=repr)
def test_insert_refuses_loose_sizes(refuse, bad):
    refuse(chain(), mn.insert_after, "a", "absorb", nout=bad, name="n", error=mn.GraphError, match="'n'")  # fmt: skip


def test_numpy_integers_are_sizes(mutate):
    g = mn.Graph()
    x = g.input(np.int32(3), name="x")
    a = g.absorb(x, nout=np.int64(4), name="a", multiple_of=np.uint8(2))
    g.absorb(a, nout=2, name="b")
    assert type(a.nout) is int and a.nout == 4
    assert mutate(g, mn.resize, "a", np.int16(2)).nout_after == {"a": 6}
    assert mutate(g, mn.resize, {"a": np.int64(-2)}).nout_after == {"a": 4}


@pytest.mark.parametrize("mutation", ["prune", "resize"])
def test_wrong_length_or_unknown_utility_is_refused(refuse, mutation):
    args = () if mutation == "prune" else ("a", -1)
    fn = getattr(mn, mutation)
    refuse(chain(), fn, *args, utility={"a": [1.0] * 7}, error=mn.GraphError, match=r"'a'.*7 values.*8")  # fmt: skip
    refuse(chain(), fn, *args, utility={"zz": [1.0]}, error=mn.GraphError, match="'zz'")
    refuse(chain(), fn, *args, utility={"a": ["1"] * 8}, error=mn.GraphError, match="'a'")
    refuse(chain(), fn, *args, utility={"a": np.ones((2, 4))}, error=mn.GraphError, match="'a'")
    wrong = lambda v: np.ones(v.nout + 1) if v.name == "a" else None  # noqa: E731
    refuse(chain(), fn, *args, utility=wrong, error=mn.GraphError, match=r"'a'.*9 values")


# ------------------------------------------------------------ graph files


def _file(**changes) -> str:
    data = json.loads(chain().to_json())
    for vertex in data["vertices"]:
        if vertex["name"] == "a":
            vertex.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "changes",
    [
        {"nout": -4},
        {"nout": "7"},
        {"nout": True},
        {"nout": 2.5},
        {"nout": 10**18},
        {"min_nout": "1"},
        {"multiple_of": 0},
        {"groups": 2.0},
        {"fixed": "no"},
        {"utility": [1.0] * 7 + [NAN]},
        {"utility": [1.0] * 7},
        {"utility": "12345678"},
        {"inputs": "x"},
        {"meta": [1]},
    ],
    ids=lambda c: f"{next(iter(c))}={next(iter(c.values()))!r}"[:30],
)
def test_from_json_refuses_loose_values(changes):
    with pytest.raises(mn.GraphError, match="'a'") as info:
        mn.Graph.from_json(_file(**changes))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"format": "mutnas.graph", "vertices": 3}',
        '{"format": "mutnas.graph", "vertices": [{"name": "x"}]}',
        '{"format": "mutnas.graph", "vertices": [], "outputs": ["nope"]}',
        '{"format": "mutnas.graph", "vertices": [], "counter": "1"}',
        '{"format": "mutnas.graph", "version": "2", "vertices": []}',
    ],
)
def test_from_json_refuses_malformed_files(text):
    with pytest.raises(mn.GraphError):
        mn.Graph.from_json(text)


def test_a_valid_file_still_round_trips():
    g = chain()
    g["a"].utility = np.arange(8.0)
    assert mn.Graph.from_json(g.to_json()) == g


# ------------------------------------------------------------ properties

BAD_SIZES = st.one_of(
    st.floats(allow_nan=True).filter(lambda f: not float(f).is_integer()),
    st.booleans(),
    st.text(max_size=3),
    st.integers(2**20 + 1, 10**30),
    st.integers(-(10**30), -(2**20) - 1),
)


def _bad_utility(n: int):
    finite = st.floats(-1, 1, allow_nan=False)
    bad = st.sampled_from([NAN, INF, -INF])
    with_bad = st.tuples(
        st.lists(finite, min_size=n - 1, max_size=n - 1), bad, st.integers(0, n - 1)
    )
    insert = lambda t: [*t[0][: t[2]], t[1], *t[0][t[2] :]]  # noqa: E731
    wrong_length = st.lists(finite, max_size=n + 3).filter(lambda xs: len(xs) != n)
    return st.one_of(with_bad.map(insert), wrong_length)


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(graph=graphs(max_vertices=8), data=st.data())
def test_any_bad_delta_is_refused_and_changes_nothing(refuse, graph, data):
    names = [v.name for v in graph.vertices if v.kind != "input"]
    if not names:
        return
    name = data.draw(st.sampled_from(names))
    bad = data.draw(BAD_SIZES)
    refuse(graph, mn.resize, name, bad, error=mn.GraphError, match=repr(name))


@SETTINGS
@given(graph=graphs(max_vertices=8), data=st.data())
def test_any_bad_utility_is_refused_and_changes_nothing(refuse, graph, data):
    v = data.draw(st.sampled_from(graph.vertices))
    values = data.draw(_bad_utility(v.nout))
    mutation = data.draw(st.sampled_from(["prune", "resize"]))
    if mutation == "prune":
        refuse(graph, mn.prune, utility={v.name: values}, error=mn.GraphError, match=repr(v.name))
    else:
        target = data.draw(st.sampled_from(graph.vertices))
        refuse(graph, mn.resize, target, 0, utility={v.name: values}, error=mn.GraphError, match=repr(v.name))  # fmt: skip
