"""Mutations of the model graph through the adapter (:class:`mutnas_torch.MutableModel`).

Every size change is solved by the core, so adds and concats stay consistent, and is
function-preserving where it can be: growing a layer (new neurons get zero weights in
their consumers), inserting an identity layer, a residual branch ``x + f(x)`` with ``f``
starting at zero. Shrinking, removing and rewiring change the function (the child then
trains on from the inherited weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evolve.candidate import Candidate
from evolve.errors import ConfigError
from evolve.operators import fx_edits
from evolve.operators.mutation import Mutation
from evolve.search_space import ACTIVATIONS
from mutnas.advanced import frozen_vertices

__all__ = [
    "AddEdgeMutation",
    "AddLayerMutation",
    "RemoveEdgeMutation",
    "RemoveLayerMutation",
    "ResizeMutation",
]

_KINDS = ("block", "conv", "linear", "norm", "pool", *ACTIVATIONS)


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _free_layers(mm) -> list[str]:
    frozen = frozen_vertices(mm.graph)
    return [name for name in mm.layers() if name not in frozen]


class ResizeMutation(Mutation):
    """Grow or shrink one layer's output size; the kept neurons are the most useful.

    Args:
        min_fraction, max_fraction: relative size of the change.
        grow_prob: chance of growing rather than shrinking.
        min_width, max_width: bounds of the layer's size.
        utility: neuron utility for the solver: ``"l1"``, ``"l2"``, ``"bn"``...

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 3)))
        >>> child = ResizeMutation(grow_prob=1.0).do(parent, np.random.default_rng(0))
        >>> child.mutations, child.model.graph["0"].nout
        (['resize 0 8 -> 9'], 9)
    """

    def __init__(
        self,
        *,
        min_fraction: float = 0.1,
        max_fraction: float = 0.5,
        grow_prob: float = 0.5,
        min_width: int = 2,
        max_width: int = 256,
        utility: str = "l1",
        prob: float = 1.0,
    ):
        super().__init__(prob=prob)
        if not 0 < min_fraction <= max_fraction:
            raise ConfigError(
                f"need 0 < min_fraction <= max_fraction, got {min_fraction}, {max_fraction}"
            )
        if not 1 <= min_width <= max_width:
            raise ConfigError(f"need 1 <= min_width <= max_width, got {min_width}, {max_width}")
        self.min_fraction, self.max_fraction = min_fraction, max_fraction
        self.grow_prob = grow_prob
        self.min_width, self.max_width = min_width, max_width
        self.utility = utility

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        mm = child.model
        names = _free_layers(mm)
        if not names:
            return None
        name = _pick(rng, names)
        n = mm.graph[name].nout
        k = max(1, round(n * rng.uniform(self.min_fraction, self.max_fraction)))
        grow = rng.random() < self.grow_prob
        delta = min(k, self.max_width - n) if grow else -min(k, n - self.min_width)
        if delta == 0:
            return None
        mm.resize(name, delta, relaxed=True, utility=self.utility)
        return f"resize {name} {n} -> {mm.graph[name].nout}"


class AddLayerMutation(Mutation):
    """Insert a layer after a random layer.

    Kinds: ``"conv"``, ``"linear"`` (identity-initialised: exact), ``"norm"`` (BatchNorm,
    identity in eval mode: exact), ``"block"`` (conv or linear + norm + ``activation``:
    exact after a ReLU), an activation name (exact for ReLU after ReLU), ``"pool"``
    (max-pool halving the spatial size: changes the function and the downstream shapes;
    refused where the head cannot take it, fine before an adaptive pool). With
    ``exact_only``, only insertions that keep the model's function are made.

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 3)))
        >>> child = AddLayerMutation(kinds=("linear",)).do(parent, np.random.default_rng(0))
        >>> x = torch.randn(4, 3)
        >>> child.mutations, torch.allclose(child.model(x), parent.model(x))
        (['add linear after 0'], True)
    """

    def __init__(
        self,
        kinds: Sequence[str] = ("block", "conv", "norm", "pool", "relu"),
        *,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        activation: str = "relu",
        exact_only: bool = False,
        prob: float = 1.0,
    ):
        super().__init__(prob=prob)
        bad = [k for k in kinds if k not in _KINDS]
        if not kinds or bad:
            raise ConfigError(f"kinds must be chosen from {_KINDS}; unknown: {bad}")
        if not kernel_sizes or any(k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise ConfigError(f"kernel_sizes must be odd positive sizes, got {kernel_sizes}")
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.kinds = tuple(kinds)
        self.kernel_sizes = tuple(kernel_sizes)
        self.activation = activation
        self.exact_only = exact_only

    def _fits(self, kind: str, point) -> bool:
        if self.exact_only and not fx_edits.exact_insert(kind, point):
            return False
        return fx_edits.can_insert(kind, point)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        mm = child.model
        frozen = frozen_vertices(mm.graph)
        options: dict[str, list[str]] = {}
        for name in mm.layers(None):
            point = fx_edits.layer_output(mm, name)
            if name in frozen or point is None:
                continue
            for kind in self.kinds:
                if self._fits(kind, point):
                    options.setdefault(kind, []).append(name)
        if not options:
            return None
        kind = _pick(rng, sorted(options))
        after = _pick(rng, options[kind])
        if kind == "pool":
            child.model = fx_edits.insert_pool(mm, after)
        elif kind == "block":
            self._block(mm, after, rng)
        elif kind == "conv":
            mm.insert_layer(after, "conv", kernel_size=int(_pick(rng, self.kernel_sizes)))
        else:
            mm.insert_layer(after, kind)
        return f"add {kind} after {after}"

    def _block(self, mm, after: str, rng: np.random.Generator) -> None:
        point = fx_edits.layer_output(mm, after)
        if fx_edits.can_insert("conv", point):
            change = mm.insert_layer(after, "conv", kernel_size=int(_pick(rng, self.kernel_sizes)))
        else:
            change = mm.insert_layer(after, "linear")
        layer = change.added[0]
        norm = mm.insert_layer(layer, "norm").added[0]
        mm.insert_layer(norm, self.activation)


class RemoveLayerMutation(Mutation):
    """Remove a layer that keeps the tensor shape (its neighbours are re-sized), or an
    activation or pooling module.

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
        ...                           torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 3)))
        >>> child = RemoveLayerMutation().do(parent, np.random.default_rng(1))
        >>> child.mutations, child.model(torch.zeros(2, 3)).shape
        (['remove 0'], torch.Size([2, 2]))
    """

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        mm = child.model
        frozen = frozen_vertices(mm.graph)
        vertices = [
            n
            for n in mm.layers(None)
            if n not in frozen and len(mm.graph[n].inputs) == 1 and fx_edits.keeps_shape(mm, n)
        ]
        modules = fx_edits.removable_modules(mm)
        choices = [("vertex", n) for n in vertices] + [("module", n) for n in modules]
        if not choices:
            return None
        what, name = _pick(rng, choices)
        if what == "vertex":
            mm.remove_layer(name)
        else:
            child.model = fx_edits.remove_module(mm, name)
        return f"remove {name}"


class AddEdgeMutation(Mutation):
    """Add a skip connection: a new operand of an existing add or concat whose shapes
    agree (with ``connect_prob``), else a residual branch ``x + f(x)`` (exact).

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 3)))
        >>> child = AddEdgeMutation().do(parent, np.random.default_rng(0))
        >>> x = torch.randn(4, 3)
        >>> child.mutations, torch.allclose(child.model(x), parent.model(x))
        (['add residual after 0'], True)
    """

    def __init__(self, *, connect_prob: float = 0.5, activation: str = "relu", prob: float = 1.0):
        super().__init__(prob=prob)
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}"
            )
        self.connect_prob = connect_prob
        self.activation = activation

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        mm = child.model
        pairs = fx_edits.connectable_pairs(mm)
        if pairs and rng.random() < self.connect_prob:
            src, dst = _pick(rng, pairs)
            mm.connect(src, dst)
            return f"connect {src} -> {dst}"
        frozen = frozen_vertices(mm.graph)
        points = [
            n
            for n in mm.layers(None)
            if n not in frozen
            and fx_edits.can_insert("residual", fx_edits.layer_output(mm, n))
            # the adapter names the branch "<after>_residual_in" ...: one branch per layer
            and f"{n.replace('.', '_')}_residual_in" not in mm.graph
        ]
        if not points:
            return None
        after = _pick(rng, points)
        mm.insert_residual(after, activation=self.activation)
        return f"add residual after {after}"


class RemoveEdgeMutation(Mutation):
    """Remove one operand of an add or concat with two or more (dead branches are deleted).

    Example:
        >>> import numpy as np, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> mm = mt.mutable(net, torch.zeros(1, 3))
        >>> _ = mm.insert_residual("0")
        >>> child = RemoveEdgeMutation().do(Candidate(0, mm), np.random.default_rng(1))
        >>> child.mutations[0].startswith("disconnect"), child.model(torch.zeros(2, 3)).shape
        (True, torch.Size([2, 2]))
    """

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        mm = child.model
        edges = [
            (u.name, v.name)
            for v in mm.graph.vertices
            if v.kind in ("add", "concat") and len(v.inputs) >= 2 and v.name in mm.bindings
            for u in v.inputs
        ]
        if not edges:
            return None
        src, dst = _pick(rng, edges)
        mm.disconnect(src, dst)
        return f"disconnect {src} -> {dst}"
