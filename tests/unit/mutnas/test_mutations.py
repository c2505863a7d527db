"""Mutations: sizes, index maps, constraints, refusals (type and message) and atomicity."""

from __future__ import annotations

import numpy as np
import pytest

import mutnas as mn
from mutnas.advanced import default_solver, set_default_solver
from mutnas.testing import check_consistent

MILP = mn.SolverOptions(closed_form=False)


def outs(change: mn.Change, name: str) -> list[int]:
    return change.outputs[name].tolist()


def ins(change: mn.Change, name: str) -> list[list[int]]:
    return [m.tolist() for m in change.inputs[name]]


def chain(*sizes: int, nin: int = 3) -> mn.Graph:
    """x -> a -> b -> ... with the given output sizes."""
    g = mn.Graph()
    v = g.input(nin, name="x")
    for name, n in zip("abcdefgh", sizes, strict=False):
        v = g.absorb(v, nout=n, name=name)
    return g


def residual(width: int = 4) -> mn.Graph:
    """x -> a; a -> r (invariant) ; s = a + r; c = concat(a, s); d reads c."""
    g = mn.Graph()
    a = g.absorb(g.input(3, name="x"), nout=width, name="a")
    r = g.invariant(a, name="r")
    s = g.add(a, r, name="s")
    c = g.concat(a, s, name="c")
    g.absorb(c, nout=2, name="d")
    return g


# ---------------------------------------------------------------- resize
class TestResize:
    def test_grow_appends_new_neurons(self, mutate):
        g = chain(4, 2)
        change = mutate(g, mn.resize, "a", 2)
        assert (g["a"].nout, g["b"].nin) == (6, [6])
        assert outs(change, "a") == [0, 1, 2, 3, -1, -1]
        assert ins(change, "b") == [[0, 1, 2, 3, -1, -1]]
        assert change.nout_before == {"a": 4} and change.nout_after == {"a": 6}
        assert change.kind == "resize" and "b" not in change.outputs

    def test_shrink_keeps_highest_utility(self, mutate):
        g = chain(5, 2)
        change = mutate(g, mn.resize, "a", -2, utility={"a": [5.0, 1.0, 4.0, 2.0, 3.0]})
        assert outs(change, "a") == [0, 2, 4]
        assert ins(change, "b") == [[0, 2, 4]]

    def test_shrink_uses_stored_utility(self, mutate):
        g = mn.Graph()
        a = g.absorb(g.input(2, name="x"), nout=4, name="a", utility=[1.0, 4.0, 3.0, 2.0])
        g.absorb(a, nout=2, name="b")
        change = mutate(g, mn.resize, a, -2)
        assert outs(change, "a") == [1, 2]
        assert a.utility.tolist() == [4.0, 3.0]  # utilities follow their neurons

    def test_utility_callable_returning_none_falls_back(self, mutate):
        g = chain(4, 2)
        change = mutate(g, mn.resize, "a", -1, utility=lambda v: None)
        assert len(outs(change, "a")) == 3

    def test_vertex_objects_and_names_are_interchangeable(self, mutate):
        g = chain(4, 2)
        mutate(g, mn.resize, g["a"], 1)
        mutate(g, mn.resize, {g["a"]: 1, "b": -1})
        assert (g["a"].nout, g["b"].nout) == (6, 1)
        assert g.resize("a", 1).nout_after == {"a": 7}  # the method form

    def test_zero_delta_is_an_empty_change(self, mutate):
        g = chain(4, 2)
        change = mutate(g, mn.resize, "a", 0)
        assert not change and change.vertices == []

    def test_change_spreads_through_transparent_vertices(self, mutate):
        g = residual()
        change = mutate(g, mn.resize, "a", 2)
        assert [g[n].nout for n in "arscd"] == [6, 6, 6, 12, 2]
        grown = [0, 1, 2, 3, -1, -1]
        assert outs(change, "a") == outs(change, "r") == outs(change, "s") == grown
        assert outs(change, "c") == [0, 1, 2, 3, -1, -1, 4, 5, 6, 7, -1, -1]
        assert ins(change, "d") == [outs(change, "c")]
        assert ins(change, "s") == [grown, grown]

    def test_resize_a_transparent_vertex(self, mutate):
        g = residual()
        mutate(g, mn.resize, "c", -4)  # c = 2 * a
        assert [g[n].nout for n in "arsc"] == [2, 2, 2, 4]

    def test_exact_infeasible_raises_with_vertices(self, refuse):
        g = residual()
        err = refuse(g, mn.resize, "c", 1, match=r"no sizes satisfy every constraint")
        assert "'c' -> 9" in str(err) and err.requested == {"c": 9} and err.fixed == ()
        assert "a" in err.vertices
        assert isinstance(err, mn.MutnasError) and not isinstance(err, mn.SolverError)

    def test_relaxed_moves_in_the_requested_direction(self, mutate):
        g = residual()
        mutate(g, mn.resize, "c", 1, relaxed=True)
        assert g["c"].nout == 10
        mutate(g, mn.resize, "c", -1, relaxed=True)
        assert g["c"].nout == 8

    def test_multi_vertex_request(self, mutate):
        g = chain(4, 5, 6)
        change = mutate(g, mn.resize, {"a": 1, "b": -2, "c": 3})
        assert [g[n].nout for n in "abc"] == [5, 3, 9]
        assert change.nout_after == {"a": 5, "b": 3, "c": 9}

    def test_multi_vertex_request_must_agree(self, refuse):
        g = residual()
        err = refuse(g, mn.resize, {"a": 1, "s": 2})
        assert "'a' -> 5" in str(err) and "'s' -> 6" in str(err)

    def test_only_participants_change(self, mutate):
        # a change stops at absorb vertices: their outputs and everything behind them stay
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=4, name="a"), g.absorb(x, nout=4, name="b")
        c = g.absorb(x, nout=5, name="c")
        cat = g.concat(g.add(a, b, name="s"), c, name="cat")
        d = g.absorb(cat, nout=3, name="d")
        e = g.absorb(d, nout=3, name="e")
        change = mutate(g, mn.resize, "cat", 2)
        assert a.nout == b.nout and a.nout + c.nout == 11
        # the max-norm term spreads +2 over both parts instead of putting it all on c
        assert (a.nout, c.nout) == (5, 6)
        assert (d.nout, e.nin, e.nout) == (3, [3], 3)
        assert set(change.vertices) == {"a", "b", "c", "s", "cat", "d"}
        assert change.stats["n_participants"] == 5

    def test_change_is_spread_by_the_max_norm(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=10, name="a"), g.absorb(x, nout=10, name="b")
        g.concat(a, b, name="cat")
        mutate(g, mn.resize, "cat", -4)
        assert (a.nout, b.nout) == (8, 8)

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("a", 1, 2), None),
            (({"a": 1}, 2), "pass either"),
            (("a",), "needs a delta"),
        ],
    )
    def test_argument_errors(self, args, message):
        g = chain(4)
        if message is None:
            with pytest.raises(TypeError):
                mn.resize(g, *args)
        else:
            with pytest.raises(TypeError, match=message):
                mn.resize(g, *args)

    def test_input_and_fixed_vertices_refuse(self, refuse, mutate):
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=4, name="a", fixed=True)
        g.absorb(a, nout=2, name="b")
        refuse(g, mn.resize, "x", 1, match=r"input vertex 'x' is fixed; its size cannot change")
        err = refuse(g, mn.resize, "a", -1, match=r"absorb vertex 'a' is fixed")
        assert err.vertices == ("a",)
        mutate(g, mn.resize, "a", 0)  # asking for no change is fine
        refuse(g, mn.resize, "b", -2, relaxed=False, match=r"cannot resize 'b' from 2 by -2")

    def test_below_one_relaxed_goes_to_one(self, mutate):
        g = chain(3, 2)
        mutate(g, mn.resize, "a", -10, relaxed=True)
        assert g["a"].nout == 1

    def test_relaxed_that_cannot_move_raises(self, refuse):
        g = chain(1, 2)
        refuse(g, mn.resize, "a", -1, relaxed=True, match="'a' -> 0")

    def test_relaxed_that_cannot_move_raises_at_max(self, refuse):
        g = mn.Graph()
        g.absorb(g.input(3, name="x"), nout=4, name="a", max_nout=4)
        refuse(g, mn.resize, "a", 1, relaxed=True, match="'a' -> 5")
        g = mn.Graph()
        g.absorb(g.input(3, name="x"), nout=4, name="a", min_nout=4)
        refuse(g, mn.resize, "a", -1, relaxed=True, match="'a' -> 3")


class TestConstraints:
    def test_multiple_of(self, mutate, refuse):
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=8, name="a", multiple_of=4)
        refuse(g, mn.resize, a, 1, match="'a' -> 9")
        mutate(g, mn.resize, a, 1, relaxed=True)
        assert a.nout == 12
        mutate(g, mn.resize, a, -5, relaxed=True)  # 7 is not allowed: 8 is nearest
        assert a.nout == 8
        mutate(g, mn.resize, a, -5, relaxed=True)
        assert a.nout == 4
        refuse(g, mn.resize, a, -1, relaxed=True)  # 0 is below the minimum size

    def test_multiple_of_on_transparent_vertex(self, mutate):
        # a concat that must stay a multiple of 8 (tensor cores): a + b grows in steps
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=5, name="a"), g.absorb(x, nout=3, name="b", fixed=True)
        c = g.concat(a, b, name="c", multiple_of=8)
        mutate(g, mn.resize, a, 1, relaxed=True)
        assert (a.nout, c.nout) == (13, 16)

    def test_min_and_max(self, mutate, refuse):
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=6, name="a", min_nout=4, max_nout=8)
        refuse(g, mn.resize, a, 3, match="'a' -> 9")
        refuse(g, mn.resize, a, -3, match="'a' -> 3")
        mutate(g, mn.resize, a, 5, relaxed=True)
        assert a.nout == 8
        mutate(g, mn.resize, a, -9, relaxed=True)
        assert a.nout == 4

    def test_min_of_transparent_vertex_binds_its_sources(self, refuse, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=3, name="b")
        c = g.concat(a, b, name="c", min_nout=5)
        refuse(g, mn.resize, {"a": -1, "b": -1})
        mutate(g, mn.resize, a, -1)
        assert c.nout == 5

    def test_fixed_vertex_pins_what_is_aligned_with_it(self, refuse, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=4, name="a", fixed=True)
        b = g.absorb(x, nout=4, name="b")
        g.add(a, b, name="s")
        err = refuse(g, mn.resize, b, 1, relaxed=True)
        assert "b" in err.vertices
        mutate(g, mn.prune, utility={"b": -np.ones(4)})  # a's neurons cannot go
        assert b.nout == 4

    @pytest.mark.parametrize("kind", ["concat", "add", "invariant"])
    def test_fixed_transparent_vertex_is_honoured(self, refuse, mutate, kind):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=4, name="a")
        t = getattr(g, kind)(a, name="t", fixed=True)
        g.absorb(t, nout=2, name="d")
        refuse(g, mn.resize, a, 2)
        refuse(g, mn.resize, a, -1, relaxed=True)
        assert not mutate(g, mn.prune, utility={"a": -np.ones(4)})


class TestGroups:
    @staticmethod
    def grouped(groups: int = 4, width: int = 8) -> mn.Graph:
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=width, name="a")
        conv = g.absorb(a, nout=width, name="conv", groups=groups)
        g.absorb(conv, nout=5, name="b")
        return g

    def test_whole_groups_move(self, mutate, refuse):
        g = self.grouped()
        err = refuse(g, mn.resize, "a", -1)
        assert set(err.vertices) == {"a", "conv"}
        change = mutate(g, mn.resize, "a", -2)
        assert (g["a"].nout, g["conv"].nout, g["conv"].groups) == (6, 6, 3)
        assert change.groups == {"conv": (4, 3)}
        assert outs(change, "a") == outs(change, "conv")

    def test_growing_adds_groups(self, mutate):
        g = self.grouped()
        change = mutate(g, mn.resize, "conv", 2)
        assert (g["a"].nout, g["conv"].groups) == (10, 5)
        assert outs(change, "conv") == [0, 1, 2, 3, 4, 5, 6, 7, -1, -1]
        assert change.groups == {"conv": (4, 5)}

    def test_relaxed_rounds_to_whole_groups(self, mutate):
        g = self.grouped()
        mutate(g, mn.resize, "a", -1, relaxed=True)
        assert (g["a"].nout, g["conv"].groups) == (6, 3)

    def test_prune_drops_whole_groups(self, mutate):
        g = self.grouped()
        utility = {"a": np.array([1, 1, -1, -1, 1, 1, 1, 1.0]), "conv": np.ones(8)}
        change = mutate(g, mn.prune, utility=utility)
        assert outs(change, "a") == outs(change, "conv") == [0, 1, 4, 5, 6, 7]
        # one bad neuron does not sink its group
        g = self.grouped()
        utility["a"] = np.array([1, 1, -1, 1, 1, 1, 1, 1.0])
        assert not mutate(g, mn.prune, utility=utility)

    def test_depthwise_keeps_best_channels(self, mutate):
        g = self.grouped(groups=4, width=4)
        change = mutate(g, mn.resize, "a", -2, utility={"a": np.array([4, 1, 3, 2.0])})
        assert outs(change, "a") == outs(change, "conv") == [0, 2]
        assert g["conv"].groups == 2

    def test_grouped_input_must_divide(self, refuse):
        # a concat feeding a grouped conv: its input must stay divisible by the groups
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=4, name="a", fixed=True)
        b = g.absorb(x, nout=4, name="b")
        conv = g.absorb(g.concat(a, b, name="c"), nout=4, name="conv", groups=2)
        assert conv.groups == 2
        refuse(g, mn.resize, "b", -1, match="no sizes satisfy|groups do not divide")


# ---------------------------------------------------------------- resize_inputs
class TestResizeInputs:
    def test_each_input(self, mutate):
        g = mn.Graph()
        x = g.input(2, name="x")
        a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b")
        c = g.concat(a, b, name="c")
        change = mutate(g, mn.resize_inputs, c, [1, -2])
        assert c.nin == [4, 2]
        assert len(outs(change, "c")) == 6

    def test_none_leaves_input_free(self, mutate):
        g = mn.Graph()
        x = g.input(2, name="x")
        c = g.concat(g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b"), name="c")
        mutate(g, mn.resize_inputs, c, [None, -2])
        assert c.nin == [3, 2]
        assert not mutate(g, mn.resize_inputs, c, [None, None])

    def test_wrong_length(self, refuse):
        g = chain(4, 2)
        refuse(
            g,
            mn.resize_inputs,
            "b",
            [1, 2],
            error=mn.GraphError,
            match=r"'b' has 1 inputs but 2 deltas were given",
        )

    def test_duplicate_input_needs_one_delta(self, refuse, mutate):
        g = mn.Graph()
        a = g.absorb(g.input(2, name="x"), nout=3, name="a")
        c = g.concat(a, a, name="c")
        refuse(g, mn.resize_inputs, c, [1, 2], match="input 'a' is asked for two different")
        mutate(g, mn.resize_inputs, c, [1, 1])
        assert c.nin == [4, 4]


# ---------------------------------------------------------------- prune
class TestPrune:
    def test_negative_utility_goes(self, mutate):
        g = chain(4, 1)
        change = mutate(g, mn.prune, utility={"a": [1.0, -1.0, 2.0, -0.5]})
        assert outs(change, "a") == [0, 2] and ins(change, "b") == [[0, 2]]
        assert change.kind == "prune"

    def test_positive_utilities_change_nothing(self, mutate):
        g = residual()
        assert not mutate(g, mn.prune)

    def test_min_size_is_kept(self, mutate):
        g = mn.Graph()
        g.absorb(g.input(2, name="x"), nout=6, name="a", min_nout=2)
        change = mutate(g, mn.prune, utility={"a": [-5.0, -1.0, -3.0, -2.0, -4.0, -6.0]})
        assert outs(change, "a") == [1, 3]  # the two least bad

    def test_aligned_neurons_are_judged_together(self, mutate):
        # slot 1 is bad for a, good for b: their sum decides (the add aligns them)
        g = mn.Graph()
        x = g.input(2, name="x")
        a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=3, name="b")
        g.add(a, b, name="s")
        change = mutate(g, mn.prune, utility={"a": [1, -1, -1.0], "b": [1, 2, -1.0]})
        assert outs(change, "a") == outs(change, "b") == outs(change, "s") == [0, 1]

    def test_vertices_limit_the_prune(self, mutate):
        g = chain(4, 4)
        utility = {"a": -np.ones(4), "b": -np.ones(4)}
        change = mutate(g, mn.prune, utility=utility, vertices=["b"])
        assert (g["a"].nout, g["b"].nout) == (4, 1) and "a" not in change.outputs

    def test_multiple_of_is_respected(self, mutate):
        g = mn.Graph()
        g.absorb(g.input(2, name="x"), nout=8, name="a", multiple_of=4)
        change = mutate(g, mn.prune, utility={"a": [1, -1, 1, -1, 1, -1, 1, 3.0]})
        assert outs(change, "a") == [0, 2, 4, 7] or len(outs(change, "a")) in (4, 8)
        assert g["a"].nout % 4 == 0

    def test_fixed_and_inputs_are_never_pruned(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=3, name="a", fixed=True)
        g.concat(x, a, name="c")
        assert not mutate(g, mn.prune, utility=lambda v: -np.ones(v.nout))


# ---------------------------------------------------------------- insert_after
class TestInsertAfter:
    @pytest.mark.parametrize("kind", ["absorb", "invariant", "concat", "add"])
    def test_identity_insert(self, mutate, kind):
        g = chain(4, 5)
        a_consumer = g.absorb(g["a"], nout=2, name="c")
        change = mutate(g, mn.insert_after, "a", kind, name="n")
        n = g["n"]
        assert (n.kind, n.nin, n.nout) == (kind, [4], 4)
        assert [v.name for v in n.outputs] == ["b", "c"]
        assert [v.name for v in g["a"].outputs] == ["n"]
        assert a_consumer.inputs == [n]
        assert change.added == ["n"] and not change.outputs
        assert ins(change, "b") == ins(change, "c") == [[0, 1, 2, 3]]
        assert sorted(change.edges_added) == [("a", "n", 0), ("n", "b", 0), ("n", "c", 0)]
        assert sorted(change.edges_removed) == [("a", "b", 0), ("a", "c", 0)]

    def test_insert_with_size(self, mutate):
        g = chain(4, 5)
        change = mutate(g, mn.insert_after, "a", "absorb", nout=7, name="n", multiple_of=7)
        assert (g["n"].nout, g["b"].nin, g["n"].multiple_of) == (7, [7], 7)
        assert ins(change, "b") == [[0, 1, 2, 3, -1, -1, -1]]
        assert change.nout_after == {"n": 7}

    def test_insert_after_input_and_output(self, mutate):
        g = chain(4)
        g.set_outputs("a")
        mutate(g, mn.insert_after, "x", "absorb", name="n")
        assert g["a"].inputs == [g["n"]] and g["n"].nout == 3
        mutate(g, mn.insert_after, "a", "invariant", name="act")
        assert [v.name for v in g.outputs] == ["act"]

    def test_generated_name(self, mutate):
        g = chain(4)
        change = mutate(g, mn.insert_after, "a", "invariant")
        assert change.added[0] in g and change.added[0].startswith("invariant")

    def test_refusals(self, refuse):
        g = chain(4, 5)
        refuse(
            g,
            mn.insert_after,
            "a",
            "input",
            error=mn.GraphError,
            match="cannot insert a vertex of kind 'input'",
        )
        refuse(g, mn.insert_after, "a", "conv", error=mn.GraphError, match="kind 'conv'")
        refuse(
            g,
            mn.insert_after,
            "a",
            "invariant",
            nout=3,
            error=mn.GraphError,
            match="keeps its input's size; nout=3 is not allowed",
        )
        refuse(g, mn.insert_after, "a", name="b", error=mn.GraphError, match="already exists")
        refuse(g, mn.insert_after, "zz", error=KeyError, match="no vertex named 'zz'")

    def test_refused_insert_leaves_generated_names(self, refuse, mutate):
        g = chain(4, 5)
        refuse(g, mn.insert_after, "a", foo=1, error=mn.GraphError, match=r"unknown options")
        assert mutate(g, mn.insert_after, "a", "invariant").added == ["invariant_1"]

    def test_insert_and_shrink_keeps_the_best_slots(self):
        # the new vertex starts as x's identity (3 slots, aligned with b through the add);
        # shrinking it keeps the slot b values most
        g = mn.Graph()
        x = g.input(3, name="x")
        b = g.absorb(x, nout=3, name="b", utility=[0.1, 0.2, 5.0])
        g.add(x, b, name="s")
        change = g.insert_after("x", "absorb", nout=1, name="n")
        check_consistent(g)
        assert outs(change, "n") == outs(change, "b") == outs(change, "s") == [2]
        assert [v.name for v in b.inputs] == ["n"] and ins(change, "b") == [[2]]

    def test_insert_and_shrink_passes_check_change(self, mutate):
        # check_change measures an inserted vertex's map against its producer's old size
        g = mn.Graph()
        x = g.input(3, name="x")
        g.add(x, g.absorb(x, nout=3, name="b", utility=[0.1, 0.2, 5.0]), name="s")
        mutate(g, mn.insert_after, "x", "absorb", nout=1, name="n")

    def test_infeasible_size_rolls_back(self, refuse):
        g = chain(4, 5)
        refuse(g, mn.insert_after, "a", "absorb", nout=5, multiple_of=2, match="-> 5")
        assert [v.name for v in g["a"].outputs] == ["b"] and len(g) == 3

    def test_invalid_groups_roll_back(self, refuse):
        g = chain(4, 5)
        refuse(g, mn.insert_after, "a", groups=3, error=mn.GraphError, match="groups=3")


# ---------------------------------------------------------------- remove
class TestRemove:
    def test_remove_same_size_layer(self, mutate):
        g = chain(4, 4, 2)
        change = mutate(g, mn.remove, "b")
        assert [v.name for v in g.vertices] == ["x", "a", "c"] and g["c"].nin == [4]
        assert change.removed == ["b"] and not change.outputs
        assert change.edges_removed == [("a", "b", 0), ("b", "c", 0)]
        assert change.edges_added == [("a", "c", 0)]

    def test_remove_equalizes_first(self, mutate):
        # as NaiveNASlib's default RemoveStrategy: first the smaller side grows to the
        # bigger (a 4 -> 6 here), then c takes b's old columns one to one
        g = chain(4, 6, 2)
        change = mutate(g, mn.remove, "b")
        assert g["a"].nout == 6 and g["c"].nin == [6]
        assert outs(change, "a") == [0, 1, 2, 3, -1, -1]
        assert ins(change, "c") == [[0, 1, 2, 3, 4, 5]]
        # (b 4 -> 6, so c gets two new columns, then reads a)
        g = chain(6, 4, 2)
        change = mutate(g, mn.remove, "b")
        assert g["a"].nout == 6 and g["c"].nin == [6] and "a" not in change.outputs
        assert ins(change, "c") == [[0, 1, 2, 3, -1, -1]]

    def test_remove_decreases_when_growth_is_impossible(self, mutate):
        # DecreaseBigger: x is immutable, so b's side shrinks to 3 and c drops columns
        g = chain(5, 2)
        change = mutate(g, mn.remove, "a")
        assert g["b"].nin == [3] and len(ins(change, "b")[0]) == 3

    def test_remove_invariant_inside_add(self, mutate):
        g = residual()
        change = mutate(g, mn.remove, "r")
        assert [v.name for v in g["s"].inputs] == ["a", "a"]
        assert ins(change, "s") == [[0, 1, 2, 3]] * 2

    def test_remove_output_vertex(self, mutate):
        g = chain(4, 5)
        g.set_outputs("b")
        mutate(g, mn.remove, "b")
        assert [v.name for v in g.outputs] == ["a"] and "b" not in g

    def test_remove_next_to_immutable_forces_sizes(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=5, name="a")
        b = g.absorb(x, nout=5, name="b")
        s = g.add(a, b, name="s")
        mutate(g, mn.remove, "a")
        assert s.nin == [3, 3] and b.nout == 3

    def test_refusals(self, refuse):
        g = residual()
        refuse(g, mn.remove, "x", error=mn.GraphError, match="cannot remove input vertex 'x'")
        refuse(
            g,
            mn.remove,
            "s",
            error=mn.GraphError,
            match=r"cannot remove 's': it has 2 inputs; disconnect all but one first",
        )

    def test_impossible_removal_rolls_back(self, refuse):
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=5, name="a")
        g.add(a, g.input(5, name="y"), name="s")
        refuse(
            g,
            mn.remove,
            "a",
            match=r"cannot remove 'a': its input 'x' \(3\) and its output \(5\) must end up "
            r"the same size, and no sizes allow it",
        )
        assert g["s"].inputs == [g["a"], g["y"]]


# ---------------------------------------------------------------- connect / disconnect
class TestConnect:
    def test_into_concat_at_position(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=4, name="a")
        g.absorb(x, nout=2, name="b")
        c = g.concat(a, name="c")
        g.absorb(c, nout=3, name="d")
        change = mutate(g, mn.connect, "b", "c", 0)
        assert [v.name for v in c.inputs] == ["b", "a"] and c.nout == 6
        assert outs(change, "c") == [-1, -1, 0, 1, 2, 3]
        assert ins(change, "c") == [[-1, -1], [0, 1, 2, 3]]
        assert ins(change, "d") == [[-1, -1, 0, 1, 2, 3]]
        assert change.edges_added == [("b", "c", 0)]
        assert change.nout_after == {"c": 6} and "b" not in change.outputs

    def test_into_add_aligns(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        s = g.add(g.absorb(x, nout=4, name="a"), name="s")
        b = g.absorb(x, nout=4, name="b")
        change = mutate(g, mn.connect, b, s)
        assert s.nin == [4, 4] and not change.outputs
        assert ins(change, "s")[0] == [0, 1, 2, 3]

    def test_refusals(self, refuse):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=4, name="a")
        c = g.concat(a, name="c")
        g.absorb(c, nout=3, name="d")
        refuse(
            g, mn.connect, "d", "c", error=mn.GraphError, match="'d' -> 'c' would create a cycle"
        )
        refuse(g, mn.connect, "c", "c", error=mn.GraphError, match="would create a cycle")
        refuse(
            g,
            mn.connect,
            "a",
            "c",
            5,
            error=mn.GraphError,
            match=r"position 5 is out of range for 'c' \(0..1\)",
        )
        refuse(g, mn.connect, "a", "c", -1, error=mn.GraphError, match="out of range")
        refuse(
            g,
            mn.connect,
            "a",
            "d",
            error=mn.GraphError,
            match="can only connect into add or concat vertices; 'd' is absorb",
        )

    def test_infeasible_rolls_back(self, refuse):
        g = mn.Graph()
        s = g.add(g.input(3, name="x"), name="s")
        g.absorb(s, nout=2, name="d")
        refuse(g, mn.connect, g.input(4, name="y"), s, match="no sizes satisfy")
        assert s.inputs == [g["x"]] and g["y"].outputs == []

    def test_size_cycle(self, refuse):
        g = mn.Graph()
        a = g.absorb(g.input(3, name="x"), nout=4, name="a")
        b = g.absorb(a, nout=2, name="b")
        c = g.concat(a, b, name="c")
        s = g.add(g.absorb(a, nout=6, name="e"), c, name="s")
        err = refuse(g, mn.connect, "a", s, error=mn.SizeCycleError)
        assert "size cycle" in str(err) and "remove the edge that closes the loop" in str(err)
        assert "c" in err.vertices
        assert isinstance(err, mn.SizeError)

    def test_into_a_concat_feeding_a_fixed_vertex_refuses(self, refuse, mutate):
        """Regression: the new edge's neurons flowed into the fixed output (2 -> 4)."""
        g = mn.Graph()
        x = g.input(2, name="x")
        a = g.absorb(x, nout=2, name="a")
        c = g.concat(g.absorb(a, nout=2, name="b"), name="c")
        g.set_outputs(g.invariant(c, name="out", fixed=True))
        err = refuse(g, mn.connect, a, c, match=r"^connect would change the neurons of fixed "
                     r"vertex 'out' \(2 -> 4\); fixed vertices \(graph outputs")  # fmt: skip
        assert err.vertices == ("out",)
        g["out"].fixed = False
        mutate(g, mn.connect, a, c)
        assert g["out"].nout == 4


class TestDisconnect:
    def test_from_concat_drops_exactly_its_columns(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=3, name="a"), g.absorb(x, nout=4, name="b")
        c = g.concat(a, b, a, name="c")
        g.absorb(c, nout=2, name="d")
        change = mutate(g, mn.disconnect, a, c)
        assert [v.name for v in c.inputs] == ["b", "a"] and c.nout == 7
        assert outs(change, "c") == [3, 4, 5, 6, 7, 8, 9]
        assert ins(change, "d") == [outs(change, "c")]
        assert ins(change, "c") == [[0, 1, 2, 3], [0, 1, 2]]
        assert change.edges_removed == [("a", "c", 0)]
        assert not any(name.startswith("<") for name in change.vertices)

    def test_from_concat_drops_aligned_slots_downstream(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        a, b = g.absorb(x, nout=4, name="a"), g.absorb(x, nout=2, name="b")
        c = g.concat(a, b, name="c")
        e = g.absorb(x, nout=6, name="e")
        s = g.add(c, e, name="s")
        g.absorb(s, nout=3, name="f")
        change = mutate(g, mn.disconnect, a, c)
        # e loses the slots that were aligned with a (0..3) and keeps b's partners 4, 5
        assert outs(change, "e")[:2] == [4, 5]
        assert outs(change, "b")[:2] == [0, 1]
        assert e.nout == b.nout == s.nout

    def test_from_add(self, mutate):
        g = mn.Graph()
        x = g.input(3, name="x")
        s = g.add(g.absorb(x, nout=4, name="a"), g.absorb(x, nout=4, name="b"), name="s")
        g.absorb(s, nout=3, name="f")
        change = mutate(g, mn.disconnect, "a", s)
        assert [v.name for v in s.inputs] == ["b"] and not change.outputs
        assert g["a"].outputs == []

    def test_from_a_concat_feeding_a_fixed_vertex_refuses(self, refuse):
        g = mn.Graph()
        x = g.input(3, name="x")
        c = g.concat(g.absorb(x, nout=4, name="a"), g.absorb(x, nout=2, name="b"), name="c")
        g.set_outputs(g.invariant(c, name="out", fixed=True))
        err = refuse(g, mn.disconnect, "a", c, match=r"^cannot disconnect 'a' -> 'c': no sizes "
                     r"satisfy every constraint once the 4 neurons of 'a' leave 'c'; fixed "
                     r"vertices that keep their neurons: 'out' \[vertices: 'a', 'c'")  # fmt: skip
        assert "<" not in str(err)
        assert err.requested == {} and err.fixed == ("out",)

    def test_refusals(self, refuse):
        g = mn.Graph()
        x = g.input(3, name="x")
        g.concat(g.absorb(x, nout=4, name="a"), name="c")
        refuse(g, mn.disconnect, "x", "c", error=mn.GraphError, match="no edge 'x' -> 'c'")
        refuse(
            g,
            mn.disconnect,
            "a",
            "c",
            error=mn.GraphError,
            match="cannot disconnect the only input of 'c'; remove the vertex instead",
        )

    def test_infeasible_rolls_back(self, refuse):
        g = mn.Graph()
        x = g.input(3, name="x")
        a = g.absorb(x, nout=3, name="a", fixed=True)
        b = g.absorb(x, nout=3, name="b")
        c = g.concat(a, b, name="c")
        g.add(c, g.input(6, name="y"), name="s")
        refuse(g, mn.disconnect, b, c, match="no sizes satisfy")
        assert c.inputs == [a, b] and b.outputs == [c]


# ---------------------------------------------------------------- transactions, records
class TestTransactions:
    def test_every_kind_of_failure_leaves_the_graph(self, refuse):
        g = residual()
        g["a"].utility = np.arange(4.0)
        refuse(g, mn.resize, "c", 3)
        refuse(g, mn.resize_inputs, "c", [1, 2])
        refuse(g, mn.insert_after, "a", "absorb", nout=3, multiple_of=2)
        refuse(g, mn.remove, "s", error=mn.GraphError)
        refuse(g, mn.connect, "d", "s", error=mn.GraphError)
        refuse(g, mn.disconnect, "x", "s", error=mn.GraphError)
        assert g["a"].utility.tolist() == [0, 1, 2, 3]

    def test_failure_after_success_is_independent(self, mutate, refuse):
        g = residual()
        mutate(g, mn.resize, "a", 1)
        refuse(g, mn.resize, "c", 1)
        mutate(g, mn.resize, "c", 2)
        assert g["a"].nout == 6

    def test_solver_error_is_a_size_error(self):
        assert issubclass(mn.SolverError, mn.SizeError)
        assert issubclass(mn.SizeCycleError, mn.SizeError)
        assert issubclass(mn.GraphError, ValueError)
        err = mn.SizeError("boom", [f"v{i}" for i in range(20)])
        assert "(20 in all)" in str(err) and len(err.vertices) == 20


class TestChangeRecord:
    def test_index_maps_accept_vertices(self):
        g = chain(4, 2)
        change = g.resize("a", 1)
        assert change.outputs[g["a"]].tolist() == change.outputs["a"].tolist()
        assert g["a"] in change.outputs and change.inputs.get(g["b"]) is not None
        assert change.outputs.get("zz") is None and "zz" not in change.outputs

    def test_vertices_bool_and_repr(self):
        g = chain(4, 2)
        change = g.resize("a", 1)
        assert change and change.vertices == ["a", "b"]
        assert repr(change) == "Change(resize, {a: 4->5}, added=[], removed=[])"
        assert set(change.stats) >= {"build_s", "solve_s", "n_participants", "n_classes"}
        assert change.stats["n_participants"] == 1

    def test_merge_chains_maps(self):
        g = chain(4, 2)
        first = g.resize("a", 2, utility={"a": [4.0, 3.0, 2.0, 1.0]})
        second = g.resize("a", -3, utility={"a": [1.0, 2.0, 0.5, 5.0, 6.0, 0.0]})
        merged = first.merge(second)
        assert first.outputs["a"].tolist() == [0, 1, 2, 3, -1, -1]
        assert second.outputs["a"].tolist() == [1, 3, 4]
        assert merged.outputs["a"].tolist() == [1, 3, -1]
        assert merged.inputs["b"][0].tolist() == [1, 3, -1]
        assert merged.nout_before == {"a": 4} and merged.nout_after == {"a": 3}

    def test_merge_with_structural_change(self):
        g = chain(4, 2)
        first = g.insert_after("a", "absorb", name="n")
        second = g.resize("n", 1)
        merged = first.merge(second)
        assert merged.added == ["n"] and merged.outputs["n"].tolist() == [0, 1, 2, 3, -1]
        assert merged.inputs["b"][0].tolist() == [0, 1, 2, 3, -1]
        assert merged.edges_added == first.edges_added

    def test_utilities_follow_neurons_on_every_participant(self):
        g = residual()
        g["a"].utility = np.array([1.0, 2.0, 3.0, 4.0])
        g["s"].utility = np.array([10.0, 20.0, 30.0, 40.0])
        change = g.resize("a", -1)
        kept = change.outputs["a"]
        assert g["a"].utility.tolist() == (kept + 1.0).tolist()
        assert g["s"].utility.tolist() == ((kept + 1.0) * 10).tolist()
        g.resize("a", 1)
        assert g["a"].utility[-1] == 0.0  # new neurons start at zero utility


class TestSolverChoice:
    @pytest.mark.parametrize(
        "mutation",
        [
            lambda g: g.resize("c", 4),
            lambda g: g.resize("c", 1, relaxed=True),
            lambda g: g.prune(utility={"a": [1.0, -1.0, 2.0, -2.0]}),
            lambda g: g.insert_after("a", "absorb", nout=6),
            lambda g: g.remove("r"),
            lambda g: g.disconnect("a", "c"),
        ],
    )
    def test_closed_form_and_milp_agree(self, mutation):
        g1, g2 = residual(), residual()
        previous = default_solver()
        change1 = mutation(g1)
        try:
            set_default_solver(MILP)
            change2 = mutation(g2)
        finally:
            set_default_solver(previous)
        assert g1 == g2
        assert {k: v.tolist() for k, v in change1.outputs.items()} == {
            k: v.tolist() for k, v in change2.outputs.items()
        }
        check_consistent(g2)
