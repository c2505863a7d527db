"""Graph building, queries, errors (type and message), copy, equality, JSON and networkx."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import mutnas as mn
from mutnas.serialize import graph_from_dict, graph_to_dict
from mutnas.testing import check_consistent


def sample() -> mn.Graph:
    """Every vertex kind, a duplicate edge, constraints, utility and metadata."""
    g = mn.Graph()
    x = g.input(3, name="x", meta={"shape": [1, 3, 8, 8]})
    a = g.absorb(x, nout=4, name="a", utility=[1.0, 2.0, 3.0, 4.0], meta={"type": "Conv2d"})
    dw = g.absorb(a, nout=4, name="dw", groups=2, multiple_of=2)
    r = g.invariant(dw, name="r", meta={"type": "ReLU"})
    s = g.add(a, r, name="s")
    c = g.concat(s, a, s, name="c")
    g.absorb(c, nout=5, name="fc", fixed=True, min_nout=5, max_nout=5)
    return g


# ---------------------------------------------------------------- building
class TestBuilding:
    def test_kinds_sizes_and_edges(self):
        g = sample()
        assert [(v.name, v.kind, v.nout) for v in g.vertices] == [
            ("x", "input", 3),
            ("a", "absorb", 4),
            ("dw", "absorb", 4),
            ("r", "invariant", 4),
            ("s", "add", 4),
            ("c", "concat", 12),
            ("fc", "absorb", 5),
        ]
        assert g["c"].nin == [4, 4, 4]
        assert [v.name for v in g["c"].inputs] == ["s", "a", "s"]
        assert [v.name for v in g["s"].outputs] == ["c", "c"]
        assert [v.name for v in g["a"].outputs] == ["dw", "s", "c"]
        check_consistent(g)
        g.check()

    def test_vertex_properties(self):
        g = sample()
        assert g["x"].fixed and g["x"].is_source and not g["x"].is_transparent
        assert g["a"].is_source and not g["a"].is_grouped
        assert g["dw"].is_grouped and g["dw"].groups == 2
        assert all(g[n].is_transparent for n in ("r", "s", "c"))
        assert g["fc"].constraints() == {
            "min_nout": 5,
            "max_nout": 5,
            "multiple_of": 1,
            "fixed": True,
            "groups": 1,
        }
        assert g["a"].graph is g
        assert g["a"].utility.dtype == float and g["a"].meta == {"type": "Conv2d"}
        assert repr(g["dw"]) == "Vertex('dw', absorb, nout=4, nin=[4], groups=2)"
        assert repr(g["fc"]) == "Vertex('fc', absorb, nout=5, nin=[12], fixed)"
        assert repr(g["x"]) == "Vertex('x', input, nout=3, nin=[])"

    def test_multi_input_absorb(self):
        g = mn.Graph()
        x, y = g.input(3, name="x"), g.input(2, name="y")
        a = g.absorb(x, y, nout=4, name="a")
        assert a.nin == [3, 2]

    def test_generated_names_are_unique(self):
        g = mn.Graph()
        x = g.input(3)
        g.absorb(x, nout=2, name="absorb_2")
        names = [g.absorb(x, nout=2).name for _ in range(3)]
        assert names == ["absorb_3", "absorb_4", "absorb_5"]
        assert x.name == "input_1"  # counter shared across kinds

    def test_outputs_default_to_sinks(self):
        g = sample()
        assert [v.name for v in g.outputs] == ["fc"]
        g.set_outputs("c", g["fc"])
        assert [v.name for v in g.outputs] == ["c", "fc"]
        assert [v.name for v in g.inputs] == ["x"]

    def test_queries(self):
        g = sample()
        assert len(g) == 7 and "a" in g and g["a"] in g and "zz" not in g
        assert [v.name for v in g] == [v.name for v in g.vertices]
        assert g.sizes() == {"x": 3, "a": 4, "dw": 4, "r": 4, "s": 4, "c": 12, "fc": 5}
        assert repr(g) == "Graph(7 vertices, outputs=['fc'])"
        assert g.vertex("a") is g["a"] is g.vertex(g["a"])
        other = sample()
        assert other["a"] not in g

    def test_topological_order_is_stable(self):
        g = mn.Graph()
        x = g.input(2, name="x")
        late = g.absorb(x, nout=2, name="late")
        early = g.absorb(x, nout=2, name="early")
        s = g.add(early, late, name="s")
        g.connect(g.absorb(x, nout=2, name="later"), s)
        # creation order, except that a producer always comes before its consumers
        assert [v.name for v in g.vertices] == ["x", "late", "early", "later", "s"]


class TestBuildingErrors:
    @pytest.mark.parametrize(
        ("build", "message"),
        [
            (lambda g, x: g.absorb(nout=2, name="a"), "absorb vertex 'a' needs at least one input"),
            (lambda g, x: g.absorb(nout=2), "absorb vertex '' needs at least one input"),
            (lambda g, x: g.add(name="s"), "add vertex 's' needs at least one input"),
            (lambda g, x: g.concat(name="c"), "concat vertex 'c' needs at least one input"),
            (
                lambda g, x: g.add(x, g.absorb(x, nout=4, name="b"), name="s"),
                r"add vertex 's': input sizes differ \('x'=3, 'b'=4\)",
            ),
            (lambda g, x: g.absorb(x, nout=2, name="x"), "a vertex named 'x' already exists"),
            (lambda g, x: g.absorb(x, nout=2, name=""), "names must be non-empty strings, got ''"),
            (lambda g, x: g.absorb(x, nout=2, name=7), "non-empty strings, got 7"),
            (lambda g, x: g.absorb(x, nout=0, name="a"), r"vertex 'a': nout must be >= 1, got 0"),
            (lambda g, x: g.input(0, name="i"), r"vertex 'i': nout must be >= 1, got 0"),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", utility=[1.0]),
                r"vertex 'a': utility has 1 values for nout=2",
            ),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", min_nout=0),
                r"vertex 'a': min_nout must be >= 1, got 0",
            ),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", min_nout=3, max_nout=2),
                r"vertex 'a': max_nout=2 is below min_nout=3",
            ),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", multiple_of=0),
                r"vertex 'a': multiple_of must be >= 1, got 0",
            ),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", bias=True),
                r"vertex 'a': unknown options \['bias'\]",
            ),
            (
                lambda g, x: g.absorb(x, nout=2, name="a", groups=0),
                r"vertex 'a': groups must be >= 1, got 0",
            ),
            (
                lambda g, x: g.absorb(x, x, nout=3, name="a", groups=3),
                r"grouped vertex 'a' must have exactly one input",
            ),
            (
                lambda g, x: g.absorb(x, nout=4, name="a", groups=3),
                r"grouped vertex 'a': groups=3 must divide nin=3 and nout=4",
            ),
        ],
    )
    def test_messages(self, build, message):
        g = mn.Graph()
        x = g.input(3, name="x")
        with pytest.raises(mn.GraphError, match=message):
            build(g, x)

    def test_failed_build_adds_nothing(self):
        g = mn.Graph()
        x = g.input(3, name="x")
        with pytest.raises(mn.GraphError):
            g.add(x, g.absorb(x, nout=4, name="b"), name="s")
        assert [v.name for v in x.outputs] == ["b"] and "s" not in g

    def test_lookup_errors(self):
        g = sample()
        with pytest.raises(KeyError, match="no vertex named 'zz' in this graph"):
            g["zz"]
        with pytest.raises(TypeError, match="expected a Vertex or a vertex name, got int"):
            g.vertex(3)
        with pytest.raises(
            mn.GraphError, match="vertex 'a' belongs to another graph; pass its name instead"
        ):
            g.vertex(sample()["a"])
        with pytest.raises(mn.GraphError, match="belongs to another graph"):
            g.absorb(sample()["a"], nout=2)

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"multiple_of": 7}, r"vertex 'a': nout=10 is not a multiple of 7"),
            ({"min_nout": 11}, r"vertex 'a': nout=10 is outside \[11, None\]"),
            ({"max_nout": 9}, r"vertex 'a': nout=10 is outside \[1, 9\]"),
        ],
    )
    def test_nout_must_satisfy_own_constraints(self, options, message):
        g = mn.Graph()
        with pytest.raises(mn.GraphError, match=message):
            g.absorb(g.input(3, name="x"), nout=10, name="a", **options)
        assert "a" not in g and g.absorb("x", nout=14, name="a", multiple_of=7).nout == 14


# ---------------------------------------------------------------- check()
def link(u: mn.Vertex, v: mn.Vertex) -> None:
    """Add the edge u -> v behind the graph's back."""
    v.inputs.append(u)
    u.outputs.append(v)


class TestCheck:
    @pytest.mark.parametrize(
        ("edit", "message", "culprits"),
        [
            (lambda g: setattr(g["r"], "_nout", 5), "invariant vertex 'r' has nout=5", {"r"}),
            (lambda g: setattr(g["s"], "_nout", 5), r"add vertex 's' has nout=5", {"s"}),
            (
                lambda g: setattr(g["c"], "_nout", 11),
                r"concat vertex 'c' has nout=11 but input sizes sum to 12",
                {"c"},
            ),
            (
                lambda g: setattr(g["dw"], "groups", 3),
                r"grouped vertex 'dw': groups=3 does not divide 4/4",
                {"dw"},
            ),
            (lambda g: setattr(g["fc"], "_nout", 6), r"nout=6 outside \[5, 5\]", {"fc"}),
            (lambda g: setattr(g["dw"], "multiple_of", 3), "not a multiple of 3", {"dw"}),
            (
                lambda g: setattr(g["a"], "utility", np.ones(3)),
                r"vertex 'a' has 3 utilities for nout=4",
                {"a"},
            ),
            (lambda g: link(g.input(2, name="y"), g["x"]), "input 'x' has inputs", {"x", "y"}),
            (
                lambda g: (g["r"].inputs.clear(), g["dw"].outputs.clear()),
                r"vertex 'r' \(invariant\) has no inputs",
                {"r"},
            ),
        ],
    )
    def test_inconsistencies_are_named(self, edit, message, culprits):
        g = sample()
        edit(g)
        with pytest.raises(mn.SizeError, match=message) as info:
            g.check()
        assert culprits <= set(info.value.vertices)
        with pytest.raises(AssertionError, match=message):
            check_consistent(g)

    def test_check_consistent_names_missing_output_edge(self):
        g = sample()
        g["a"].outputs.remove(g["dw"])
        with pytest.raises(AssertionError, match=r"edge a->dw missing from a\.outputs"):
            check_consistent(g)

    def test_check_consistent_sees_one_sided_edges(self):
        g = sample()
        g["x"].outputs.append(g["fc"])
        with pytest.raises(AssertionError, match=r"edge x->fc missing from fc\.inputs"):
            check_consistent(g)

    def test_cycle(self):
        g = sample()
        g["a"].inputs.append(g["fc"])
        g["fc"].outputs.append(g["a"])
        g._order = None
        with pytest.raises(mn.GraphError, match=r"the graph has a cycle through \['a', 'c'"):
            _ = g.vertices


# ---------------------------------------------------------------- copy, equality
class TestCopyAndEquality:
    def test_copy_is_equal_and_independent(self):
        g = sample()
        h = g.copy()
        assert h == g and h is not g and h["a"] is not g["a"]
        assert h["a"].graph is h and h["c"].inputs[0] is h["s"]
        h["a"].utility[0] = 99.0
        h["a"].meta["type"] = "Linear"
        assert g["a"].utility[0] == 1.0 and g["a"].meta["type"] == "Conv2d"
        h.resize("a", 2)
        assert g["a"].nout == 4 and h != g
        check_consistent(h)
        check_consistent(g)

    def test_copy_keeps_edge_order_outputs_and_counter(self):
        g = sample()
        g.set_outputs("c", "fc")
        g.absorb("x", nout=2)
        h = g.copy()
        assert [v.name for v in h["a"].outputs] == [v.name for v in g["a"].outputs]
        assert [v.name for v in h.outputs] == ["c", "fc"]
        assert h.absorb("x", nout=2).name == g.absorb("x", nout=2).name

    def test_copy_module_uses_copy(self):
        g = sample()
        assert copy.deepcopy(g) == g and copy.copy(g) == g
        assert copy.deepcopy(g)["a"] is not g["a"]

    def test_deep_chain_copies(self):
        g = mn.Graph()
        v = g.input(2, name="x")
        for _ in range(5000):
            v = g.invariant(v)
        assert copy.deepcopy(g) == g

    def test_equality_sees_every_difference(self):
        def variants():
            yield lambda g: g.resize("a", 2)
            yield lambda g: setattr(g["a"], "utility", np.array([1.0, 2.0, 3.0, 5.0]))
            yield lambda g: setattr(g["a"], "utility", None)
            yield lambda g: g["a"].meta.update(type="Linear")
            yield lambda g: setattr(g["fc"], "max_nout", 6)
            yield lambda g: g.set_outputs("c")
            yield lambda g: g.absorb("x", nout=2, name="extra")

        for edit in variants():
            g = sample()
            edit(g)
            assert g != sample()
        assert sample() == sample()
        assert sample() != "graph" and (sample() == "graph") is False
        with pytest.raises(TypeError):
            hash(sample())

    def test_signature_is_hashable(self):
        assert hash(sample().signature()) == hash(sample().signature())


# ---------------------------------------------------------------- JSON, networkx
class TestSerialisation:
    def test_json_round_trip(self):
        g = sample()
        g.set_outputs("c", "fc")
        text = g.to_json()
        h = mn.Graph.from_json(text)
        assert h == g and h.to_json() == text
        assert [v.name for v in h["a"].outputs] == [v.name for v in g["a"].outputs]
        assert h["a"].utility.tolist() == [1.0, 2.0, 3.0, 4.0]
        assert h["x"].meta == {"shape": [1, 3, 8, 8]}
        assert mn.graph_from_json(mn.graph_to_json(g, indent=2)) == g
        assert json.loads(text)["format"] == "mutnas.graph"

    def test_round_trip_after_mutations(self):
        g = sample()
        g.resize("a", 2)
        g.insert_after("s", "invariant", name="act")
        g.prune(utility={"fc": np.ones(5)})
        h = mn.graph_from_json(g.to_json())
        assert h == g
        assert h.absorb("x", nout=1).name == g.absorb("x", nout=1).name

    def test_dict_round_trip(self):
        d = graph_to_dict(sample())
        assert graph_from_dict(json.loads(json.dumps(d))) == sample()

    @pytest.mark.parametrize(
        ("edit", "message"),
        [
            (lambda d: d.update(format="onnx"), "not a mutnas graph: format is 'onnx'"),
            (lambda d: d.update(version=99), "graph file version 99 is newer than this mutnas"),
            (lambda d: d["vertices"][1].update(kind="conv"), "vertex 'a' has unknown kind 'conv'"),
            (lambda d: d["vertices"][2].update(name="a"), "duplicate vertex name 'a'"),
            (
                lambda d: d["vertices"][1].update(inputs=["zz"]),
                "vertex 'a' reads 'zz', which is not defined before it",
            ),
            (lambda d: d["vertices"].reverse(), "which is not defined before it"),
        ],
    )
    def test_bad_files(self, edit, message):
        d = graph_to_dict(sample())
        edit(d)
        with pytest.raises(mn.GraphError, match=message):
            graph_from_dict(d)

    def test_inconsistent_file_is_refused(self):
        d = graph_to_dict(sample())
        d["vertices"][5]["nout"] = 11
        with pytest.raises(mn.SizeError, match="concat vertex 'c'"):
            graph_from_dict(d)

    def test_not_json(self):
        with pytest.raises(mn.GraphError, match="graph JSON is not valid JSON"):
            mn.graph_from_json("{nope")

    def test_networkx(self):
        nxg = sample().to_networkx()
        assert list(nxg.nodes) == ["x", "a", "dw", "r", "s", "c", "fc"]
        assert nxg.nodes["c"]["kind"] == "concat" and nxg.nodes["c"]["nout"] == 12
        assert nxg.nodes["dw"]["groups"] == 2 and nxg.nodes["fc"]["fixed"] is True
        edges = sorted((u, v, d["position"]) for u, v, d in nxg.edges(data=True) if v == "c")
        assert edges == [("a", "c", 1), ("s", "c", 0), ("s", "c", 2)]
        assert nxg.number_of_edges() == sum(len(v.inputs) for v in sample().vertices)
