"""``MutableModel``: a traced model, its mutnas graph, and mutations that keep both in step.

Every mutation goes through the core (one MILP, transactional) and then through surgery
on the live module, so the model is always an ordinary, runnable ``nn.Module``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from torch import fx, nn

import mutnas as mn
from mutnas_torch.analyze import Analysis, analyze
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.surgery import apply_change, rewrite_literals, sync_attributes, sync_owners
from mutnas_torch.trace import propagate_shapes, trace

__all__ = ["MutableModel", "mutable"]

log = logging.getLogger(__name__)


def mutable(
    model: nn.Module,
    example_inputs: Any,
    *,
    leaf_modules: Sequence[type[nn.Module]] = (),
    strict: bool = False,
    growth: str = "exact",
    copy: bool = True,
) -> MutableModel:
    """Trace ``model`` into a :class:`MutableModel` (by default the model is not modified).

    Args:
        model: any ``nn.Module`` that ``torch.fx`` can trace.
        example_inputs: a tensor or a tuple of positional inputs (small is fine).
        leaf_modules: module types the tracer must keep opaque.
        strict: raise :class:`~mutnas_torch.UnsupportedLayerError` on any op whose channel
            semantics are unknown, instead of freezing (pinning) the channels it touches.
        growth: how new neurons start. ``"exact"`` (default): random outgoing rows,
            zero incoming columns downstream, and LayerNorm-normalised streams started at
            their mean with compensated scales — outputs unchanged. ``"net2net"``: new
            neurons copy old ones and consumers split the copied columns (Net2WiderNet) —
            outputs unchanged, every new neuron active. ``"trainable"``: like exact but
            without the LayerNorm construction (which leaves new stream channels silent).
        copy: trace a deep copy of ``model`` (default). ``False`` traces the model itself,
            as in-place pruners do: no copy of every weight, but the traced module shares
            ``model``'s submodules, so mutations change them and ``model`` should not be
            used afterwards (use ``mm.module`` or ``mm.to_module()``).

    Example:
        >>> import torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> mm = mt.mutable(net, torch.randn(3, 4))
        >>> x = torch.randn(3, 4)
        >>> before = mm(x)
        >>> _ = mm.resize("0", 4)  # widen the first layer by 4 neurons
        >>> mm.module.get_submodule("0").out_features, torch.allclose(mm(x), before)
        (12, True)
        >>> net[0].out_features  # a copy was traced
        8
        >>> in_place = mt.mutable(net, torch.randn(3, 4), copy=False)
        >>> _ = in_place.resize("0", -2)
        >>> net[0].out_features  # the model's own layers were traced and pruned
        6
    """
    inputs = (
        (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    )
    gm = trace(deepcopy(model) if copy else model, inputs, leaf_modules=leaf_modules)
    if growth not in ("exact", "net2net", "trainable"):
        raise ValueError(f"growth must be 'exact', 'net2net' or 'trainable', got {growth!r}")
    mm = MutableModel(gm, analyze(gm, strict=strict), inputs)
    mm.growth = growth
    return mm


class MutableModel(nn.Module):
    """A traced model whose architecture can be mutated consistently.

    Attributes:
        module: the ``torch.fx.GraphModule`` holding the parameters.
        graph: the :class:`mutnas.Graph` of its channel sizes (vertex names are module
            qualified names, or fx node names for functional ops).
    """

    def __init__(self, gm: fx.GraphModule, analysis: Analysis, example_inputs: tuple):
        super().__init__()
        self.module = gm
        self.graph = analysis.graph
        self.bindings = analysis.bindings
        self.literals = analysis.literals
        self.pinned = analysis.pinned
        self.refs = analysis.refs
        self.example_inputs = tuple(
            t.detach().to("cpu") if torch.is_tensor(t) else t for t in example_inputs
        )
        self.optimizers: list[torch.optim.Optimizer] = []
        self.history: list[mn.Change] = []
        self.growth = "exact"  # see mutable(growth=...)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    # ------------------------------------------------------------ queries
    def layers(self, kind: str | None = "absorb") -> list[str]:
        """Names of mutable vertices (default: layers with weights whose size is free)."""
        return [
            v.name
            for v in self.graph.vertices
            if (kind is None or v.kind == kind) and not v.fixed and v.name in self.bindings
        ]

    def attach_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Keep ``optimizer``'s state (momentum, moments) in step with future mutations."""
        self.optimizers.append(optimizer)

    def to_module(self) -> fx.GraphModule:
        """A plain ``torch.fx.GraphModule`` copy with no dependency on mutnas."""
        module = deepcopy(self.module)
        module._tracer_cls = None  # our tracer class would make pickles need mutnas
        module.graph._tracer_cls = None
        return module

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    # ------------------------------------------------------------ mutations
    def resize(
        self,
        target: str | Mapping[str, int],
        delta: int | None = None,
        *,
        relaxed: bool = False,
        utility: Any = None,
        solver: mn.SolverOptions | None = None,
    ) -> mn.Change:
        """Change output sizes (see :meth:`mutnas.Graph.resize`) and apply the surgery."""
        change = self.graph.resize(
            target, delta, relaxed=relaxed, utility=self._utility(utility), solver=solver
        )
        return self.apply(change)

    def prune_neurons(self, *, utility: Any, solver: mn.SolverOptions | None = None) -> mn.Change:
        """Drop every neuron with negative utility (see :meth:`mutnas.Graph.prune`)."""
        change = self.graph.prune(utility=self._utility(utility), solver=solver)
        return self.apply(change)

    def prune(
        self,
        fraction: float | None = None,
        *,
        utility: str | Callable | Mapping | None = "l1",
        flops: float | None = None,
        solver: mn.SolverOptions | None = None,
    ) -> mn.Change:
        """Shrink every mutable layer by ``fraction``, or until the FLOPs fit ``flops``.

        Args:
            fraction: share of each layer's neurons to remove (0.5 halves every layer).
            utility: ``"l1"``, ``"l2"``, ``"bn"`` (BatchNorm scale), ``"taylor"`` (needs a
                :class:`~mutnas_torch.utility.TaylorUtility` attached), a callable
                ``vertex -> array`` or a mapping by vertex name.
            flops: a FLOP budget per forward pass on the example inputs, instead of
                ``fraction``.

        Example:
            >>> import torch, mutnas_torch as mt
            >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(),
            ...                           torch.nn.Conv2d(8, 8, 3), torch.nn.Flatten(),
            ...                           torch.nn.LazyLinear(2))
            >>> _ = net(torch.randn(1, 3, 8, 8))
            >>> mm = mt.mutable(net, torch.randn(1, 3, 8, 8))
            >>> _ = mm.prune(0.5)
            >>> [mm.module.get_submodule(n).out_channels for n in ("0", "2")]
            [4, 4]
        """
        from mutnas_torch.pruning import prune_to

        return prune_to(self, fraction=fraction, utility=utility, flops=flops, solver=solver)

    # ------------------------------------------------------------ structure
    def insert_layer(self, after: str, kind: str = "auto", **kwargs: Any) -> mn.Change:
        """Insert an identity-initialised layer; see :func:`mutnas_torch.structure.insert_layer`."""
        from mutnas_torch.structure import insert_layer

        return insert_layer(self, after, kind, **kwargs)

    def insert_residual(self, after: str, **kwargs: Any) -> mn.Change:
        """Insert ``x + f(x)`` with ``f`` zero at first; see :mod:`mutnas_torch.structure`."""
        from mutnas_torch.structure import insert_residual

        return insert_residual(self, after, **kwargs)

    def remove_layer(self, name: str) -> mn.Change:
        """Remove a shape-preserving layer; its neighbours are re-sized by the solver."""
        from mutnas_torch.structure import remove_layer

        return remove_layer(self, name)

    def remove_branch(self, add: str, branch: int = 1) -> mn.Change:
        """Drop one input branch of a residual add (the branch's layers are deleted)."""
        from mutnas_torch.structure import remove_branch

        return remove_branch(self, add, branch)

    def connect(self, src: str, dst: str) -> mn.Change:
        """Add an edge into an add or concat vertex (shapes must agree outside channels)."""
        from mutnas_torch.structure import connect

        return connect(self, src, dst)

    def disconnect(self, src: str, dst: str) -> mn.Change:
        """Remove an edge into an add or concat vertex."""
        from mutnas_torch.structure import disconnect

        return disconnect(self, src, dst)

    def apply(self, change: mn.Change, *, generator: torch.Generator | None = None) -> mn.Change:
        """Perform the weight surgery a core change record asks for (already solved).

        The module's code is regenerated after structural changes and when a literal
        (a reshape size...) changed; a ``"resize"`` or ``"prune"`` that changes no literal
        leaves the code as it is.
        """
        edits = apply_change(
            self.module,
            self.bindings,
            change,
            optimizers=self.optimizers,
            generator=generator,
            graph=self.graph,
            growth=self.growth,
        )
        sync_owners(self.module, edits)
        sync_attributes(self.module, self.bindings, self.graph, change.vertices)
        literals = rewrite_literals(self.module, self.literals, self.graph)
        if literals or change.kind not in ("resize", "prune"):
            self.module.recompile()  # structural edits and literals change the code
        self.history.append(change)
        return change

    def _utility(self, utility: Any) -> Any:
        if isinstance(utility, str):
            from mutnas_torch.utility import utility_function

            return utility_function(self, utility)
        return utility

    # ------------------------------------------------------------ checks
    def verify(self) -> None:
        """Run the example inputs and check every tensor's channels against the graph.

        Raises:
            MutnasTorchError: naming the first layer whose shape disagrees.
        """
        try:
            propagate_shapes(self.module, self.example_inputs)
        except Exception as err:
            raise MutnasTorchError(f"the mutated model no longer runs: {err}") from err
        fresh = analyze(self.module)
        mine = {n: v.nout for n, v in self.graph._vertices.items() if n in self.bindings}
        for name, size in mine.items():
            if name in fresh.graph and fresh.graph[name].nout != size:
                raise MutnasTorchError(
                    f"layer {name!r} has {fresh.graph[name].nout} channels but the graph says {size}"
                )


def as_array(values: Any) -> np.ndarray:
    if torch.is_tensor(values):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float)
