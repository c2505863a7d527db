"""Crossover: swap compatible graph segments, or mix training settings.

:class:`SegmentCrossover` cuts each parent's graph at a *cut point* (a node every later
node depends on only through it: the output of a block) and joins the first parent's
head to the second parent's tail, both with their trained weights. The cut points must
carry tensors of the same shape outside the channel dimension; a channel mismatch is
solved by the core, resizing the second parent's cut layer so its tail takes the head's
channels (or the head's, if that is infeasible).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
from torch import fx

import mutnas as mn
from evolve.candidate import Candidate
from evolve.operators.mutation import _check_prob, guarded
from mutnas_torch import mutable
from mutnas_torch.analyze import Ref
from mutnas_torch.trace import node_shape

__all__ = ["Crossover", "HyperparamCrossover", "SegmentCrossover", "cut_points", "splice"]


class Crossover:
    """Base class: ``do(a, b, rng)`` returns a child of ``a`` and ``b`` (copies), with
    probability ``prob``, else a plain copy of ``a``; subclasses write ``_do``.

    Args:
        prob: chance that the crossover is applied.
    """

    def __init__(self, *, prob: float = 0.5):
        _check_prob(prob)
        self.prob = prob

    def do(self, a: Candidate, b: Candidate, rng: np.random.Generator, *, copy: bool = True):
        """A child of ``a`` and ``b`` (``a`` untouched when ``copy``).

        Raises:
            CandidateFailedError: the segments could not be joined.
        """
        child = a.spawn() if copy else a
        if rng.random() < self.prob and guarded(self, child, lambda: self._do(child, b, rng), rng):
            child.parents = tuple(dict.fromkeys((*child.parents, b.id)))
        return child

    def _do(self, child: Candidate, other: Candidate, rng: np.random.Generator) -> str | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(prob={self.prob})"


class HyperparamCrossover(Crossover):
    """Each training setting from one parent or the other (uniform crossover).

    Example:
        >>> import numpy as np
        >>> from evolve.config import Hyperparams
        >>> a, b = Candidate(0, None), Candidate(1, None, Hyperparams("sgd", 0.1, 32))
        >>> child = HyperparamCrossover(prob=1.0).do(a, b, np.random.default_rng(3))
        >>> child.parents, child.hparams
        ((0, 1), Hyperparams(optimizer='adam', lr=0.01, batch_size=32, weight_decay=0.0))
    """

    def _do(self, child: Candidate, other: Candidate, rng: np.random.Generator) -> str | None:
        mine, theirs = child.hparams.to_dict(), other.hparams.to_dict()
        mixed = {k: theirs[k] if rng.random() < 0.5 else mine[k] for k in mine}
        if mixed == mine:
            return None
        child.hparams = dataclasses.replace(child.hparams, **mixed)
        changed = ", ".join(f"{k}={mixed[k]}" for k in mine if mixed[k] != mine[k])
        return f"hparams from {other.id}: {changed}"


def cut_points(mm) -> list[fx.Node]:
    """Nodes that separate the graph: every later node reads earlier values only through
    them (parameters aside). The last node before the output is excluded."""
    nodes = [n for n in mm.module.graph.nodes if n.op != "output"]
    position = {n: i for i, n in enumerate(nodes)}
    # for each position, the earliest value read by any node after it
    earliest = [len(nodes)] * (len(nodes) + 1)
    for i in range(len(nodes) - 1, -1, -1):
        reads = [position[a] for a in nodes[i].all_input_nodes if a.op != "get_attr"]
        earliest[i] = min([earliest[i + 1], *reads])
    out = []
    for i, node in enumerate(nodes[:-1]):
        ref = mm.refs.get(node.name)
        if node.op in ("placeholder", "get_attr") or earliest[i + 1] < i:
            continue
        if isinstance(ref, Ref) and ref.outer == ref.inner == 1 and node_shape(node):
            out.append(node)
    return out


def _compatible(mm_a, a: fx.Node, mm_b, b: fx.Node) -> bool:
    ra, rb = mm_a.refs[a.name], mm_b.refs[b.name]
    sa, sb = node_shape(a), node_shape(b)
    return (
        ra.dim == rb.dim
        and len(sa) == len(sb)
        and all(x == y for d, (x, y) in enumerate(zip(sa, sb, strict=True)) if d != ra.dim)
    )


def _match_channels(mm_a, a: fx.Node, mm_b, b: fx.Node) -> None:
    """Resize the second parent's cut layer (else the first's) so the channels agree."""
    va, vb = mm_a.refs[a.name].vertex, mm_b.refs[b.name].vertex
    na, nb = mm_a.graph[va].nout, mm_b.graph[vb].nout
    if na == nb:
        return
    try:
        mm_b.resize(vb, na - nb)
    except mn.MutnasError:
        mm_a.resize(va, nb - na)


def splice(mm_a, a: str, mm_b, b: str) -> fx.GraphModule:
    """``mm_a``'s graph up to node ``a``, then ``mm_b``'s graph after node ``b``.

    Modules and attributes are deep-copied; names of the second part are renamed where
    they clash with the first.
    """
    graph, attrs = fx.Graph(), {}
    env: dict[fx.Node, fx.Node] = {}
    for node in mm_a.module.graph.nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
        if node.op in ("call_module", "get_attr"):
            attrs[node.target] = _fetch(mm_a.module, node.target)
        if node.name == a:
            break
    nodes_b = list(mm_b.module.graph.nodes)
    cut = next(i for i, n in enumerate(nodes_b) if n.name == b)
    env_b = {nodes_b[cut]: env[next(n for n in env if n.name == a)]}
    renames: dict[str, str] = {}
    for i, node in enumerate(nodes_b):
        if node.op != "get_attr" and i <= cut:
            continue
        if node.op == "output":
            graph.output(fx.map_arg(node.args[0], lambda n: env_b[n]))
            break
        new = graph.node_copy(node, lambda n: env_b[n])
        if node.op in ("call_module", "get_attr"):
            new.target = renames.setdefault(node.target, _free_name(node.target, attrs))
            attrs[new.target] = _fetch(mm_b.module, node.target)
        env_b[node] = new
    gm = fx.GraphModule(attrs, graph, class_name=type(mm_a.module).__name__)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm.train(mm_a.training)


def _fetch(module, target: str):
    return copy.deepcopy(
        module.get_submodule(target) if _is_module(module, target) else _attr(module, target)
    )


def _is_module(module, target: str) -> bool:
    try:
        module.get_submodule(target)
        return True
    except AttributeError:
        return False


def _attr(module, target: str):
    owner, _, name = target.rpartition(".")
    return getattr(module.get_submodule(owner) if owner else module, name)


def _clashes(target: str, taken: dict) -> bool:
    return any(
        t == target or t.startswith(target + ".") or target.startswith(t + ".") for t in taken
    )


def _free_name(target: str, taken: dict) -> str:
    if not _clashes(target, taken):
        return target
    base, k = target.replace(".", "_") + "_b", 1
    while _clashes(f"{base}{k}", taken):
        k += 1
    return f"{base}{k}"


class SegmentCrossover(Crossover):
    """Join the first parent's head to the second parent's tail at compatible cut points.

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> def net(w):
        ...     return torch.nn.Sequential(torch.nn.Linear(3, w), torch.nn.ReLU(),
        ...                                torch.nn.Linear(w, w), torch.nn.ReLU(), torch.nn.Linear(w, 2))
        >>> a = Candidate(0, mt.mutable(net(4), torch.zeros(1, 3)))
        >>> b = Candidate(1, mt.mutable(net(9), torch.zeros(1, 3)))
        >>> child = SegmentCrossover(prob=1.0).do(a, b, np.random.default_rng(0))
        >>> child.parents, child.model(torch.zeros(5, 3)).shape
        ((0, 1), torch.Size([5, 2]))
    """

    def _do(self, child: Candidate, other: Candidate, rng: np.random.Generator) -> str | None:
        mm_a, mm_b = child.model, copy.deepcopy(other.model)
        pairs = [
            (a.name, b.name)
            for a in cut_points(mm_a)
            for b in cut_points(mm_b)
            if _compatible(mm_a, a, mm_b, b)
        ]
        if not pairs:
            return None
        a, b = pairs[int(rng.integers(len(pairs)))]
        nodes_a = {n.name: n for n in mm_a.module.graph.nodes}
        nodes_b = {n.name: n for n in mm_b.module.graph.nodes}
        _match_channels(mm_a, nodes_a[a], mm_b, nodes_b[b])
        gm = splice(mm_a, a, mm_b, b)
        child.model = mutable(gm, mm_a.example_inputs, growth=mm_a.growth)
        child.model.train(mm_a.training)
        return f"crossover {child.parents[0]}[..{a}] + {other.id}[{b}..]"
