"""The default operators, built from a search space's choices."""

from __future__ import annotations

from evolve.operators import (
    ActivationMutation,
    AddEdgeMutation,
    AddLayerMutation,
    BatchSizeMutation,
    ChooseMutation,
    HyperparamCrossover,
    KernelSizeMutation,
    LearningRateMutation,
    OptimizerMutation,
    RemoveEdgeMutation,
    RemoveLayerMutation,
    ResizeMutation,
    SegmentCrossover,
)
from evolve.search_space import SearchSpace

__all__ = ["default_crossovers", "default_mutation", "default_objectives"]


def default_objectives(task: str) -> tuple[str, ...]:
    """Accuracy (or R²) against FLOPs per sample.

    Example:
        >>> default_objectives("regression")
        ('r2', 'flops')
    """
    return ("accuracy", "flops") if task == "classification" else ("r2", "flops")


def default_mutation(space: SearchSpace) -> ChooseMutation:
    """One mutation per child, drawn by weight: mostly size changes, then structure,
    kernels, activations and training settings.

    Example:
        >>> m = default_mutation(SearchSpace())
        >>> len(m.mutations), m.n
        (10, 1)
    """
    odd = tuple(k for k in space.kernel_sizes if k % 2) or (3,)
    act = space.activations[0]
    weighted = [
        (ResizeMutation(min_width=space.min_width, max_width=space.max_width), 3.0),
        (AddLayerMutation(space.layer_kinds, kernel_sizes=odd, activation=act), 1.0),
        (RemoveLayerMutation(), 1.0),
        (AddEdgeMutation(activation=act), 0.5),
        (RemoveEdgeMutation(), 0.5),
        (KernelSizeMutation(tuple(sorted({1, *space.kernel_sizes}))), 1.0),
        (LearningRateMutation(), 1.0),
        (BatchSizeMutation(space.batch_sizes), 0.5),
        (OptimizerMutation(), 0.25),
    ]
    if len(space.activations) >= 2:
        weighted.append((ActivationMutation(space.activations), 0.5))
    mutations, weights = zip(*weighted, strict=True)
    return ChooseMutation(mutations, weights=weights)


def default_crossovers() -> tuple:
    """Segment swap and hyper-parameter mixing, each for 10 % of the children."""
    return (SegmentCrossover(prob=0.1), HyperparamCrossover(prob=0.1))
