"""``mutnas`` (the framework-agnostic core) must import and work where torch cannot."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

BLOCKED = ("torch", "torchvision", "mutnas_torch", "evolve")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import json
    import sys

    BLOCKED = {blocked!r}
    attempts = []


    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ModuleNotFoundError(f"{{name}} is blocked in this test", name=name)
            return None


    sys.meta_path.insert(0, Block())
    for name in BLOCKED:
        sys.modules.pop(name, None)

    import mutnas as mn
    import mutnas.advanced
    import mutnas.serialize
    import mutnas.testing
    import mutnas.testing.strategies as strategies
    from hypothesis import given, settings

    g = mn.Graph()
    x = g.input(3, name="x")
    a = g.absorb(x, nout=4, name="a")
    s = g.add(a, g.invariant(a, name="r"), name="s")
    change = g.resize("a", 2)
    g.connect(g.absorb(x, nout=6, name="b"), s)
    g.prune(utility={{"a": [1.0, -1.0, 1.0, 1.0, 1.0, 1.0]}})
    mn.testing.check_consistent(g)
    assert mn.graph_from_json(g.to_json()) == g
    g.to_networkx()
    milp = mn.SolverOptions(closed_form=False)
    g.resize("s", 1, solver=milp)


    @settings(max_examples=5, database=None, deadline=None)
    @given(strategies.graphs(max_vertices=6))
    def drawn(graph):
        graph.check()


    drawn()
    print(json.dumps({{
        "sizes": g.sizes(),
        "outputs_a": change.outputs["a"].tolist(),
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
        "attempts": attempts,
    }}))
    """
).format(blocked=BLOCKED)


def test_mutnas_imports_and_mutates_without_torch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    assert report["outputs_a"] == [0, 1, 2, 3, -1, -1]
    assert report["sizes"]["s"] == report["sizes"]["a"] == report["sizes"]["b"]
    # nothing in mutnas even tries: an optional "try: import torch" would be a smell here
    assert report["attempts"] == []


def test_blocking_works():
    # the guard itself: with the finder in place, importing torch fails
    script = SCRIPT.split("import mutnas as mn")[0] + "import torch\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode != 0
    assert "torch is blocked in this test" in result.stderr
