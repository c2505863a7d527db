"""Parallel and distributed evaluation: local worker processes and Ray, faults survived.

Training candidates is nearly all of a search's cost and each candidate trains on its
own, so the evaluators here train many at once, in persistent workers that load the data
once and receive each candidate as a model file::

    evolve.fit(..., evaluator="processes")             # one worker per core, or k per GPU
    evolve.fit(..., evaluator="ray")                   # Ray actors, local or a cluster
    evaluator = make_evaluator("ray", address="auto", num_gpus=0.25, timeout_s=600)
    evolve.fit(..., evaluator=evaluator)               # same history as the serial run

The data reach each worker once, at its start (a file, Ray's object store, or a
:class:`DatasetFactory` each worker calls), never with each candidate.
``fit(..., asynchronous=True)`` (:func:`run_async`) drops the generation barrier
(regularized evolution: a child is bred as soon as a worker is free). Workers that die
have their candidate retried once on another worker; ``timeout_s`` bounds each
candidate's training.
"""

from evolve.parallel.backends import (
    EVALUATORS,
    add_evaluator_arguments,
    evaluator_from_args,
    make_evaluator,
)
from evolve.parallel.dispatch import ParallelEvaluator, PoolEvent, WorkerError, WorkerPool
from evolve.parallel.processes import ProcessEvaluator, ProcessPool, plan_workers
from evolve.parallel.ray_backend import RayEvaluator
from evolve.parallel.scheduler import run_async
from evolve.parallel.worker import DatasetFactory, JobRunner, TensorFile, WorkerSpec

__all__ = [
    "EVALUATORS",
    "DatasetFactory",
    "JobRunner",
    "ParallelEvaluator",
    "PoolEvent",
    "ProcessEvaluator",
    "ProcessPool",
    "RayEvaluator",
    "TensorFile",
    "WorkerError",
    "WorkerPool",
    "WorkerSpec",
    "add_evaluator_arguments",
    "evaluator_from_args",
    "make_evaluator",
    "plan_workers",
    "run_async",
]
