"""Variation operators: graph and hyper-parameter mutations, crossover."""

from evolve.operators.crossover import Crossover, HyperparamCrossover, SegmentCrossover
from evolve.operators.fx_mutations import ActivationMutation, KernelSizeMutation
from evolve.operators.graph_mutations import (
    AddEdgeMutation,
    AddLayerMutation,
    RemoveEdgeMutation,
    RemoveLayerMutation,
    ResizeMutation,
)
from evolve.operators.hparam_mutations import (
    BatchSizeMutation,
    LearningRateMutation,
    OptimizerMutation,
)
from evolve.operators.mutation import ChooseMutation, Mutation, SequenceMutation

__all__ = [
    "ActivationMutation",
    "AddEdgeMutation",
    "AddLayerMutation",
    "BatchSizeMutation",
    "ChooseMutation",
    "Crossover",
    "HyperparamCrossover",
    "KernelSizeMutation",
    "LearningRateMutation",
    "Mutation",
    "OptimizerMutation",
    "RemoveEdgeMutation",
    "RemoveLayerMutation",
    "ResizeMutation",
    "SegmentCrossover",
    "SequenceMutation",
]
