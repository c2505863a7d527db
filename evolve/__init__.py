"""evolve: population-based genetic architecture search over mutable torch models.

Give it data, get back a Pareto front of trained models trading accuracy against FLOPs,
size, latency or energy::

    result = evolve.fit((X, y), objectives=("accuracy", "flops"), population=16,
                        generations=20, seed=0, run_dir="runs/demo")
    result.best.model, result.pareto, result.history
    evolve.resume("runs/demo")                       # after a crash, continues exactly

Underneath, :class:`GeneticAlgorithm` has an ask/tell interface for custom loops, and
every piece (mutation, crossover, selection, termination, objective, evaluator,
callback) is a small class you can swap.
"""

from evolve import data, errors
from evolve.algorithm import GeneticAlgorithm
from evolve.callbacks import Callback, CallbackList, PlotCallback, ProgressBarCallback
from evolve.candidate import Candidate, architecture_fingerprint, candidate_seed
from evolve.config import Hyperparams, TrainingConfig
from evolve.errors import (
    CandidateFailedError,
    ConfigError,
    DatasetError,
    EvolveError,
    RunInUseError,
)
from evolve.evaluator import Evaluator, JobResult, SerialEvaluator, TrainJob
from evolve.fit import fit, resume
from evolve.objectives import (
    AccuracyObjective,
    EnergyObjective,
    FlopsObjective,
    LatencyObjective,
    MSEObjective,
    Objective,
    ObjectiveSet,
    ParametersObjective,
    R2Objective,
    register_objective,
)
from evolve.operators import (
    ActivationMutation,
    AddEdgeMutation,
    AddLayerMutation,
    BatchSizeMutation,
    ChooseMutation,
    Crossover,
    HyperparamCrossover,
    KernelSizeMutation,
    LearningRateMutation,
    Mutation,
    OptimizerMutation,
    RemoveEdgeMutation,
    RemoveLayerMutation,
    ResizeMutation,
    SegmentCrossover,
    SequenceMutation,
)
from evolve.problem import Problem
from evolve.result import SearchResult
from evolve.rundir import RunDirectory
from evolve.search_space import SearchSpace
from evolve.selection import (
    AgingSelection,
    EliteSelection,
    NSGA2Selection,
    RandomSelection,
    Selection,
    TournamentSelection,
)
from evolve.termination import (
    AnyTermination,
    MaxEvaluationsTermination,
    MaxGenerationsTermination,
    PlateauTermination,
    Termination,
    TimeTermination,
)

__all__ = [
    "AccuracyObjective",
    "ActivationMutation",
    "AddEdgeMutation",
    "AddLayerMutation",
    "AgingSelection",
    "AnyTermination",
    "BatchSizeMutation",
    "Callback",
    "CallbackList",
    "Candidate",
    "CandidateFailedError",
    "ChooseMutation",
    "ConfigError",
    "Crossover",
    "DatasetError",
    "EliteSelection",
    "EnergyObjective",
    "Evaluator",
    "EvolveError",
    "FlopsObjective",
    "GeneticAlgorithm",
    "HyperparamCrossover",
    "Hyperparams",
    "JobResult",
    "KernelSizeMutation",
    "LatencyObjective",
    "LearningRateMutation",
    "MSEObjective",
    "MaxEvaluationsTermination",
    "MaxGenerationsTermination",
    "Mutation",
    "NSGA2Selection",
    "Objective",
    "ObjectiveSet",
    "OptimizerMutation",
    "ParametersObjective",
    "PlateauTermination",
    "PlotCallback",
    "Problem",
    "ProgressBarCallback",
    "R2Objective",
    "RandomSelection",
    "RemoveEdgeMutation",
    "RemoveLayerMutation",
    "ResizeMutation",
    "RunDirectory",
    "RunInUseError",
    "SearchResult",
    "SearchSpace",
    "SegmentCrossover",
    "Selection",
    "SequenceMutation",
    "SerialEvaluator",
    "Termination",
    "TimeTermination",
    "TournamentSelection",
    "TrainJob",
    "TrainingConfig",
    "architecture_fingerprint",
    "candidate_seed",
    "data",
    "errors",
    "fit",
    "register_objective",
    "resume",
]
