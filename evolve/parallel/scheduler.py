"""Asynchronous evolution: a child is bred as soon as a worker is free (no generation barrier).

In synchronous mode every worker waits for the slowest candidate of its generation
before the next generation is bred. :func:`run_async` keeps every worker busy instead:
whenever one is free, it breeds one child from the population as it stands and sends it
off. The bookkeeping is the synchronous one, so the run directory, the candidate log,
the history and :func:`evolve.resume` work unchanged: a *generation* is the next
``tell_every`` children proposed (default the generation size), and it is told
(candidate log lines, survival, archive, history, checkpoint) once all its children are
in, in generation order. So a checkpoint holds exactly the candidates of the generations
told so far, as in a synchronous run; children of later generations that were bred
before it are bred anew by :func:`evolve.resume` (their ids are skipped). With
``tell_every=1`` and :class:`~evolve.AgingSelection` survival this is regularized
evolution (Real et al. 2019). Children are not bred ahead of what the termination allows
(exactly so for generation and evaluation limits).

The order results come back in depends on timing, so unlike the synchronous mode an
asynchronous run is not reproducible from its seed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from evolve.candidate import Candidate
from evolve.errors import ConfigError
from evolve.parallel.dispatch import ParallelEvaluator
from evolve.result import SearchResult

__all__ = ["run_async"]

log = logging.getLogger(__name__)


def _later(candidate: Candidate) -> None:
    """A result's notification: nothing yet, its generation's ``tell`` logs it."""


@dataclass
class _Generation:
    start: float = field(default_factory=time.perf_counter)
    proposals: int = 0
    batch: list[Candidate] = field(default_factory=list)
    refused: list[Candidate] = field(default_factory=list)

    def complete(self, size: int) -> bool:
        return self.proposals >= size and all(c.status != "pending" for c in self.batch)


class _AsyncRun:
    def __init__(self, algorithm, size: int, max_ahead: int | None):
        self.algorithm, self.size = algorithm, size
        self.evaluator: ParallelEvaluator = algorithm.evaluator
        self.problem = algorithm.problem
        self.evaluator.start(self.problem)
        self.max_ahead = max_ahead or math.ceil(self.evaluator.n_slots / size) + 1
        self.told = algorithm.generation
        self.generations: dict[int, _Generation] = {}
        self.stopped = False

    # ------------------------------------------------------------ proposing
    def _open(self) -> int | None:
        """The generation the next child belongs to, or ``None`` if none may be bred now."""
        g = self.told
        while g in self.generations and self.generations[g].proposals >= self.size:
            g += 1
        if self.stopped or g - self.told >= self.max_ahead or not self._would_run(g):
            return None
        return g

    def _would_run(self, g: int) -> bool:
        """Whether the search still runs generation ``g`` once the earlier ones are told."""
        algorithm = self.algorithm
        if g == self.told:
            return algorithm.has_next()
        termination = getattr(algorithm, "_termination", None) or algorithm.termination
        if termination is None:
            return True
        pending = sum(len(self.generations[i].batch) for i in range(self.told, g))
        view = SimpleNamespace(
            generation=g,
            n_evaluations=algorithm.n_evaluations + pending,
            elapsed_s=algorithm.elapsed_s,
            history=algorithm.history,
        )
        try:
            return not termination.has_terminated(view)
        except AttributeError:  # a termination looking at more than that: assume it runs
            return True

    def propose(self, g: int) -> None:
        algorithm = self.algorithm
        generation = self.generations.setdefault(g, _Generation())
        saved = algorithm.n_offspring, algorithm.generation
        algorithm.n_offspring, algorithm.generation = 1, g
        try:
            children = algorithm.ask()
        finally:
            algorithm.n_offspring, algorithm.generation = saved
        generation.proposals += 1
        generation.refused += getattr(algorithm, "_refused", [])
        for child in children:
            generation.batch.append(child)
            self.evaluator._screen(child, self.problem, _later)
            if child.status == "pending":
                job = self.evaluator._job(child, self.problem, algorithm.seed, False)
                self.evaluator.submit(job, child, self.problem)

    # ------------------------------------------------------------ results
    def collect(self) -> None:
        for candidate, result in self.evaluator.wait(timeout=1.0):
            self.evaluator._record(candidate, result, self.problem, _later)

    def tell_complete(self) -> None:
        algorithm = self.algorithm
        while not self.stopped and self.told in self.generations:
            generation = self.generations[self.told]
            if not generation.complete(self.size):
                return
            del self.generations[self.told]
            algorithm._refused = generation.refused
            algorithm._generation_start = generation.start
            algorithm.tell(generation.batch)
            self.told += 1
            if algorithm.has_next():
                algorithm.callbacks.on_generation_start(algorithm)
            else:
                self.stopped = True

    def loop(self) -> None:
        while True:
            while self.evaluator.n_idle > 0 and (g := self._open()) is not None:
                self.propose(g)
            self.tell_complete()
            if self.evaluator.n_running == 0 and (self.stopped or self._open() is None):
                break
            self.collect()
            self.tell_complete()
        for generation in self.generations.values():  # bred, never told: logged all the same
            for candidate in generation.batch:
                self.algorithm.finish(candidate)


def run_async(algorithm, *, tell_every: int | None = None, max_ahead: int | None = None):
    """Run a :meth:`~evolve.GeneticAlgorithm.setup` algorithm without generation barriers.

    Args:
        algorithm: set up with a :class:`~evolve.parallel.ParallelEvaluator` (with the
            serial evaluator there is nothing to overlap and the synchronous
            :meth:`~evolve.GeneticAlgorithm.run` is used).
        tell_every: children per generation (survival, history record, checkpoint);
            default the algorithm's ``n_offspring`` (or ``pop_size``). ``1`` with
            :class:`~evolve.AgingSelection` survival is regularized evolution.
        max_ahead: generations that may be bred before the oldest open one is told
            (default: enough to keep every worker busy, plus one).

    Returns:
        The :class:`~evolve.SearchResult`, as :meth:`~evolve.GeneticAlgorithm.run` gives.

    Raises:
        ConfigError: culling is on (it ranks a whole generation at once).

    Example:
        >>> import torch, evolve
        >>> from evolve.data import as_splits
        >>> data = as_splits((torch.randn(40, 4), torch.arange(40) % 2))
        >>> problem = evolve.Problem(data, evolve.ObjectiveSet(["accuracy"]),
        ...                          evolve.TrainingConfig(steps=2), device="cpu")
        >>> algorithm = evolve.GeneticAlgorithm(
        ...     pop_size=2, termination=evolve.MaxGenerationsTermination(2))
        >>> result = run_async(algorithm.setup(problem, progress=False))  # serial: sync
        >>> result.n_generations
        2
    """
    if tell_every is not None and (not isinstance(tell_every, int) or tell_every < 1):
        raise ConfigError(f"tell_every must be a positive integer, got {tell_every!r}")
    if algorithm.problem.training.cull_fraction > 0:
        raise ConfigError(
            "culling ranks a whole generation's candidates at once, and asynchronous runs "
            "have no generation barrier: set TrainingConfig(cull_fraction=0)"
        )
    if not isinstance(algorithm.evaluator, ParallelEvaluator):
        log.info(
            "run_async with %r: nothing to overlap, running synchronously", algorithm.evaluator
        )
        return algorithm.run()
    size = tell_every or algorithm.n_offspring or algorithm.pop_size
    algorithm.callbacks.on_search_start(algorithm)
    if algorithm.generation == 0 and algorithm.has_next():  # selection needs a population
        algorithm.callbacks.on_generation_start(algorithm)
        batch = algorithm.ask()
        algorithm.evaluator.evaluate(
            batch,
            algorithm.problem,
            seed=algorithm.seed,
            initial=True,
            on_result=algorithm.finish,
        )
        algorithm.tell(batch)
    if algorithm.has_next():
        algorithm.callbacks.on_generation_start(algorithm)
        _AsyncRun(algorithm, size, max_ahead).loop()
    return _end(algorithm)


def _end(algorithm) -> SearchResult:
    result = algorithm.result()
    if algorithm.run_dir is not None:
        from evolve.plots import save_plots

        save_plots(result, Path(algorithm.run_dir))
    algorithm.callbacks.on_search_end(algorithm)
    return result
