"""The genetic algorithm, with an ask/tell interface for custom loops.

Generation 0 evaluates an initial population; every later generation breeds offspring
(selection, crossover, mutation, screening, deduplication), evaluates them, and keeps
``pop_size`` survivors of parents and offspring. Children inherit their parents' trained
weights, so training continues from generation to generation. With a run directory the
whole state is checkpointed after every generation (see :mod:`evolve.run_state`).

Custom loop::

    algorithm.setup(problem, seed=0)
    while algorithm.has_next():
        batch = algorithm.ask()
        my_evaluator.evaluate(batch, problem, seed=0)     # or set scores yourself
        algorithm.tell(batch)
    result = algorithm.result()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evolve import run_state
from evolve.callbacks import Callback, CallbackList, ProgressBarCallback
from evolve.candidate import Candidate
from evolve.config import Hyperparams
from evolve.defaults import default_crossovers, default_mutation
from evolve.errors import ConfigError, EvolveError
from evolve.evaluator import Evaluator, SerialEvaluator
from evolve.logs import generation_line
from evolve.operators import Crossover, Mutation
from evolve.population import HypervolumeScale, generation_record, update_archive
from evolve.problem import Problem
from evolve.reproduction import breed, initial_candidate
from evolve.result import SearchResult
from evolve.rundir import RunDirectory
from evolve.search_space import SearchSpace
from evolve.selection import EliteSelection, NSGA2Selection, Selection, TournamentSelection
from evolve.termination import MaxGenerationsTermination, Termination
from mutnas_torch import mutable

__all__ = ["GeneticAlgorithm"]

log = logging.getLogger(__name__)


def _check_int(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


class GeneticAlgorithm:
    """Generational evolution over mutable models (constructor arguments are stored as given).

    Args:
        pop_size: survivors per generation (and size of the initial population).
        n_offspring: children per generation (default ``pop_size``).
        search_space: initial models and operator choices (default :class:`SearchSpace`).
        hparams: training settings of the initial population.
        mutation: default :func:`evolve.defaults.default_mutation` of the search space.
        crossover: a :class:`Crossover` or a sequence of them, applied in turn
            (default segment swap and hyper-parameter mixing, 10 % each); ``()`` for none.
        selection: parent selection (default binary tournament).
        survival: survivor selection (default NSGA-II, or elitism in weighted mode).
        termination: default 10 generations.
        max_attempts: tries per child before a generation makes do with fewer.
        growth: how new neurons start (``mutnas_torch.mutable(growth=...)``).

    Example:
        >>> import torch, evolve
        >>> from evolve.data import as_splits
        >>> data = as_splits((torch.randn(40, 6), torch.arange(40) % 2))
        >>> objectives = evolve.ObjectiveSet(["accuracy", "parameters"])
        >>> problem = evolve.Problem(data, objectives, evolve.TrainingConfig(steps=2), device="cpu")
        >>> algorithm = GeneticAlgorithm(pop_size=2, termination=evolve.MaxGenerationsTermination(2))
        >>> algorithm = algorithm.setup(problem, seed=0, progress=False)
        >>> while algorithm.has_next():
        ...     batch = algorithm.ask()
        ...     first = algorithm.generation == 0
        ...     evolve.SerialEvaluator().evaluate(batch, problem, seed=0, initial=first)
        ...     algorithm.tell(batch)
        >>> algorithm.result().n_generations
        2
    """

    #: the open run directory while a search with ``run_dir`` is set up (see :meth:`close`)
    run_directory: RunDirectory | None = None
    run_dir: Path | None = None
    _owns_run = False

    def __init__(
        self,
        *,
        pop_size: int = 16,
        n_offspring: int | None = None,
        search_space: SearchSpace | None = None,
        hparams: Hyperparams | None = None,
        mutation: Mutation | None = None,
        crossover: Crossover | Sequence[Crossover] | None = None,
        selection: Selection | None = None,
        survival: Selection | None = None,
        termination: Termination | None = None,
        max_attempts: int = 5,
        growth: str = "exact",
    ):
        self.pop_size = pop_size
        self.n_offspring = n_offspring
        self.search_space = search_space
        self.hparams = hparams
        self.mutation = mutation
        self.crossover = crossover
        self.selection = selection
        self.survival = survival
        self.termination = termination
        self.max_attempts = max_attempts
        self.growth = growth

    # ------------------------------------------------------------ setup
    def _resolve(self, problem: Problem) -> None:
        _check_int("pop_size (population)", self.pop_size, 1)
        _check_int("n_offspring", self.n_offspring if self.n_offspring is not None else 1, 1)
        _check_int("max_attempts", self.max_attempts, 1)
        if self.growth not in ("exact", "net2net", "trainable"):
            raise ConfigError(
                f"growth must be 'exact', 'net2net' or 'trainable', not {self.growth!r}"
            )
        self._space = self.search_space or SearchSpace()
        self._hparams = self.hparams or Hyperparams()
        self._mutation = self.mutation or default_mutation(self._space)
        cx = default_crossovers() if self.crossover is None else self.crossover
        self._crossovers = (cx,) if isinstance(cx, Crossover) else tuple(cx)
        self._selection = self.selection or TournamentSelection(2)
        pareto = problem.objectives.mode == "pareto"
        self._survival = self.survival or (NSGA2Selection() if pareto else EliteSelection())
        self._termination = self.termination or MaxGenerationsTermination(10)
        for name, value, kind in (
            ("mutation", self._mutation, Mutation),
            ("selection", self._selection, Selection),
            ("survival", self._survival, Selection),
            ("termination", self._termination, Termination),
        ):
            if not isinstance(value, kind):
                raise ConfigError(f"{name} must be a {kind.__name__}, got {type(value).__name__}")

    def setup(
        self,
        problem: Problem,
        *,
        seed: int = 0,
        run_dir: str | Path | RunDirectory | None = None,
        model=None,
        evaluator: Evaluator | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        resume: bool = False,
    ) -> GeneticAlgorithm:
        """Prepare a search (or, with ``resume``, load the run directory's last state).

        ``run_dir`` is a new or empty folder (or, with ``resume``, a run directory), locked
        until :meth:`close`; or a :class:`~evolve.rundir.RunDirectory` the caller opened
        and closes.
        """
        _check_int("seed", seed, 0)
        self._resolve(problem)
        self.problem, self.seed = problem, seed
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self.evaluator = evaluator or SerialEvaluator()
        self.callbacks = CallbackList([*callbacks, ProgressBarCallback(progress)])
        self.run_dir: Path | None = None
        self.run_directory: RunDirectory | None = None
        self._owns_run = False
        self.generation = self.n_evaluations = self.next_id = 0
        self.population: list[Candidate] = []
        self.archive: list[Candidate] = []
        self.history: list[dict] = []
        self.records: list[dict] = []
        self.scale: HypervolumeScale | None = None
        self._fingerprints: dict[int, str] = {}
        self._logged: set[int] = set()
        self._elapsed_before, self._start = 0.0, time.perf_counter()
        self._log = None
        self._saved_models: set[int] = set()
        self.seed_model = None
        if model is not None:
            problem.check_model(model)
            self.seed_model = mutable(model, problem.example_input, growth=self.growth).eval()
        if run_dir is not None:
            self._open_run_dir(run_dir, resume)
        return self

    def _open_run_dir(self, run_dir, resume: bool) -> None:
        run_state.open_run(self, run_dir, resume)

    def close(self) -> None:
        """Release the run directory (its lock) if :meth:`setup` opened it; idempotent.

        :func:`evolve.fit` and :func:`evolve.resume` call it; a custom ask/tell loop with a
        ``run_dir`` should too (else the lock lasts until the object is collected).
        """
        if self.run_directory is not None and self._owns_run:
            self.run_directory.close()

    # ------------------------------------------------------------ ask / tell
    @property
    def elapsed_s(self) -> float:
        """Wall time of the search so far, across resumes."""
        return self._elapsed_before + time.perf_counter() - self._start

    def progress(self) -> float:
        """Progress in [0, 1] by the termination."""
        return self._termination.progress(self)

    def has_next(self) -> bool:
        """Whether another generation should run."""
        return not self._termination.has_terminated(self)

    def ask(self) -> list[Candidate]:
        """The next batch to evaluate (pending candidates with ids)."""
        self._generation_start = time.perf_counter()
        self._refused: list[Candidate] = []
        if self.generation == 0:
            make = lambda i: initial_candidate(  # noqa: E731
                i,
                self.rng,
                self.problem,
                search_space=self._space,
                hparams=self._hparams,
                mutation=self._mutation,
                seed_model=self.seed_model,
                growth=self.growth,
            )
            return self._fill(self.pop_size, make)
        make = lambda i: breed(  # noqa: E731
            self.population,
            self.rng,
            self.problem,
            selection=self._selection,
            crossovers=self._crossovers,
            mutation=self._mutation,
        )
        return self._fill(self.n_offspring or self.pop_size, make)

    def _fill(self, target: int, make) -> list[Candidate]:
        seen = {self._fingerprints[c.id] for c in self.population}
        batch: list[Candidate] = []
        for _ in range(target * self.max_attempts):
            if len(batch) >= target:
                break
            child = make(len(batch))
            child.generation = self.generation
            if child.status == "failed":  # logged when its generation is told
                self._assign(child)
                self._refused.append(child)
                continue
            fingerprint = child.fingerprint()
            if fingerprint in seen:
                log.debug("dropped a duplicate child (%s)", ", ".join(child.mutations))
                continue
            seen.add(fingerprint)
            self._assign(child)
            self._fingerprints[child.id] = fingerprint
            batch.append(child)
        if len(batch) < target:
            log.warning(
                "generation %d: only %d of %d children were new and valid",
                self.generation,
                len(batch),
                target,
            )
        return batch

    def _assign(self, child: Candidate) -> None:
        child.id = self.next_id
        self.next_id += 1

    def finish(self, candidate: Candidate) -> None:
        """Record a candidate whose outcome is final (log line, callbacks); idempotent."""
        if candidate.id in self._logged:
            return
        self._logged.add(candidate.id)
        record = candidate.record()
        self.records.append(record)
        if self._log is not None:
            self._log.append(record)
        self.callbacks.on_candidate_end(self, candidate)

    def tell(self, batch: Sequence[Candidate]) -> None:
        """Take back the evaluated batch: survival, archive, history, checkpoint."""
        objs = self.problem.objectives
        for c in [*batch, *self._refused]:
            if c.status == "pending":
                c.fail("not evaluated (tell() received it pending)")
            self.finish(c)
        ok = [c for c in batch if c.ok]
        if self.generation == 0:
            if not ok:
                reasons = sorted({c.reason for c in batch if c.reason})[:3]
                raise EvolveError(f"every initial candidate failed: {'; '.join(reasons)}")
            self.scale = HypervolumeScale.fit(objs, objs.matrix([c.scores for c in ok]))
        self.n_evaluations += len(batch)
        self.population = self._survival.do(self.population + ok, self.pop_size, self.rng, objs)
        self.archive = update_archive(self.archive, ok, objs)
        hv = self.scale.hypervolume(objs.matrix([c.scores for c in self.archive]))
        all_done = list(batch) + self._refused
        record = generation_record(
            self.generation, all_done, self.population, self.archive, objs, hv
        )
        record.update(
            n_refused=len(self._refused),
            n_evaluations=self.n_evaluations,
            seconds=time.perf_counter() - self._generation_start,
            elapsed_s=self.elapsed_s,
        )
        self.history.append(record)
        self.generation += 1
        log.info(generation_line(record, self.progress()))
        if self.run_dir is not None:
            self._save_state()
        self.callbacks.on_generation_end(self)

    def run(self) -> SearchResult:
        """Run generations until the termination says stop; the result."""
        self.callbacks.on_search_start(self)
        while self.has_next():
            self.callbacks.on_generation_start(self)
            batch = self.ask()
            self.evaluator.evaluate(
                batch,
                self.problem,
                seed=self.seed,
                initial=self.generation == 0,
                on_result=self.finish,
            )
            self.tell(batch)
        result = self.result()
        if self.run_dir is not None:
            from evolve.plots import save_plots

            save_plots(result, self.run_dir)
        self.callbacks.on_search_end(self)
        return result

    # ------------------------------------------------------------ result
    def result(self) -> SearchResult:
        """The search's outcome so far."""
        objs = self.problem.objectives
        order = np.lexsort(objs.matrix([c.scores for c in self.archive]).T[::-1])
        pareto = [self.archive[int(i)] for i in order]
        best = pareto[0] if pareto else None
        if objs.mode == "weighted":
            pool = self.archive + [c for c in self.population if c not in self.archive]
            violation = objs.violation([c.scores for c in pool])
            feasible = [c for c, v in zip(pool, violation, strict=True) if v == 0] or pool
            best = max(feasible, key=lambda c: objs.fitness(c.scores)) if feasible else None
        return SearchResult(
            best,
            pareto,
            list(self.history),
            list(self.records),
            objs.names,
            self.run_dir,
            self.seed,
        )

    # ------------------------------------------------------------ state
    def _save_state(self) -> None:
        run_state.save_state(self)
