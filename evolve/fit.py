"""The one-call entry points: :func:`fit` a search, :func:`resume` a run directory."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evolve import runfiles
from evolve.algorithm import GeneticAlgorithm
from evolve.callbacks import Callback
from evolve.components import build, describe
from evolve.config import Hyperparams, TrainingConfig
from evolve.data import DataSplits, as_splits, load_dataset
from evolve.defaults import default_crossovers, default_mutation, default_objectives
from evolve.errors import ConfigError
from evolve.evaluator import Evaluator, SerialEvaluator
from evolve.objectives import Objective, ObjectiveSet
from evolve.operators import Crossover, Mutation
from evolve.problem import Problem
from evolve.result import SearchResult
from evolve.rundir import RunDirectory
from evolve.search_space import SearchSpace
from evolve.selection import EliteSelection, NSGA2Selection, Selection, TournamentSelection
from evolve.termination import AnyTermination, MaxGenerationsTermination, Termination

__all__ = ["fit", "resume"]


def _splits(train, valid, task, seed, valid_fraction):
    """The splits, the dataset record, and ``valid_fraction`` if it made the split (else None)."""
    if isinstance(train, str):
        if valid is not None:
            raise ConfigError("a dataset name brings its own validation split: do not pass valid=")
        dataset = {"name": train, "seed": seed, "valid_fraction": valid_fraction}
        splits = load_dataset(train, seed=seed, valid_fraction=valid_fraction)
        return splits, dataset, valid_fraction
    carved = valid is None and not isinstance(train, DataSplits)
    splits = as_splits(train, valid=valid, task=task, seed=seed, valid_fraction=valid_fraction)
    return splits, None, valid_fraction if carved else None


def _unknown(kwargs: Mapping[str, Any]) -> None:
    if not kwargs:
        return
    name = next(iter(kwargs))
    close = difflib.get_close_matches(name, _FIT_KEYWORDS, n=1)
    hint = f"; did you mean {close[0]}=?" if close else f"; known: {', '.join(_FIT_KEYWORDS)}"
    raise ConfigError(f"fit() got an unknown keyword argument {name!r}{hint}")


def fit(
    train,
    valid=None,
    *,
    task: str | None = None,
    objectives: Sequence[str | Objective] | None = None,
    weights: Sequence[float] | Mapping[str, float] | None = None,
    population: int = 16,
    generations: int = 10,
    seed: int = 0,
    run_dir: str | Path | RunDirectory | None = None,
    device: str | None = None,
    model=None,
    search_space: SearchSpace | None = None,
    training: TrainingConfig | None = None,
    hparams: Hyperparams | None = None,
    mutation: Mutation | None = None,
    crossover: Crossover | Sequence[Crossover] | None = None,
    selection: Selection | None = None,
    survival: Selection | None = None,
    termination: Termination | None = None,
    n_offspring: int | None = None,
    evaluator: Evaluator | str | None = None,
    asynchronous: bool = False,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    valid_fraction: float = 0.1,
    growth: str = "exact",
    **unknown: Any,
) -> SearchResult:
    """Evolve a Pareto front of trained models on ``train`` (scored on ``valid``).

    Args:
        train: ``(X, y)`` arrays or tensors, a torch ``Dataset``, a
            :class:`~evolve.data.DataSplits`, or a dataset name (``"mnist1d"``).
        valid: validation data of the same kind; ``None`` carves ``valid_fraction`` of
            ``train`` (stratified), with ``seed``.
        task: ``"classification"`` or ``"regression"``; ``None`` infers it from the labels.
        objectives: names (``accuracy``, ``r2``, ``mse``, ``parameters``, ``flops``,
            ``latency``, ``energy``) or :class:`~evolve.objectives.Objective` objects
            (with ``max_value=`` budgets); default accuracy (or R²) and FLOPs.
        weights: scalarized mode (one weight per objective); ``None``: Pareto mode.
        population: survivors per generation; generations: generations to run (the
            initial population's evaluation counts as the first).
        seed: drives everything: data split, initial models, operators, data order.
        run_dir: checkpoint here after every generation (resume with :func:`resume`),
            with the candidate log, ``config.json`` and plots: a new or empty folder,
            locked while the search runs (or a :class:`~evolve.rundir.RunDirectory` you
            created, which stays open).
        device: where candidates train, one at a time (default CUDA if available).
        model: start from this model (the initial population is mutated copies of it)
            instead of the built-in search space.
        search_space, training, hparams, mutation, crossover, selection, survival,
        termination, n_offspring, growth: see :class:`~evolve.GeneticAlgorithm`,
            :class:`~evolve.TrainingConfig`; ``termination`` ends the run early (the
            ``generations`` limit still holds).
        evaluator: where candidates train: ``"serial"`` (default, in this process),
            ``"processes"`` (local worker processes: one per core, or k per GPU),
            ``"ray"`` (Ray actors, local or on a cluster), or an
            :class:`~evolve.Evaluator` such as
            :func:`evolve.parallel.make_evaluator`'s (to set workers, GPUs, time-outs). A
            backend named here is shut down when the search ends; one passed as an object
            is left running for the caller to reuse.
        asynchronous: no generation barrier: a child is bred as soon as a worker is free
            (:func:`evolve.parallel.run_async`; with ``n_offspring=1`` and
            :class:`~evolve.AgingSelection` survival, regularized evolution). Needs a
            parallel evaluator and ``cull_fraction=0``; not reproducible from the seed.
        callbacks: :class:`~evolve.callbacks.Callback` objects.
        progress: tqdm bars; ``None`` shows them on a terminal only.

    Returns:
        A :class:`~evolve.SearchResult` (``.best``, ``.pareto``, ``.history``).

    Raises:
        ConfigError: a bad setting (the message says how to fix it), including an
            unknown keyword argument, or a ``run_dir`` that is not empty.
        RunInUseError: another process holds ``run_dir``.

    Example:
        >>> import torch, evolve
        >>> X, y = torch.randn(64, 6), (torch.arange(64) % 2)
        >>> result = evolve.fit((X, y), population=2, generations=1, progress=False,
        ...                     training=evolve.TrainingConfig(steps=2))
        >>> result.n_generations, sorted(result.best.scores)
        (1, ['accuracy', 'flops'])
    """
    _unknown(unknown)
    _check_generations(generations)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    splits, dataset, valid_fraction = _splits(train, valid, task, seed, valid_fraction)
    objective_set = ObjectiveSet(objectives or default_objectives(splits.task), weights)
    training = training or TrainingConfig()
    problem = Problem(splits, objective_set, training, device=device)
    space = search_space or SearchSpace()
    stop = MaxGenerationsTermination(generations)
    algorithm = GeneticAlgorithm(
        pop_size=population,
        n_offspring=n_offspring,
        search_space=space,
        hparams=hparams or Hyperparams(),
        mutation=mutation or default_mutation(space),
        crossover=default_crossovers() if crossover is None else crossover,
        selection=selection or TournamentSelection(2),
        survival=survival or (NSGA2Selection() if weights is None else EliteSelection()),
        termination=stop if termination is None else AnyTermination([stop, termination]),
        growth=growth,
    )
    backend, owned = _evaluator(evaluator)
    try:
        algorithm.setup(
            problem,
            seed=seed,
            run_dir=run_dir,
            model=model,
            evaluator=backend,
            callbacks=callbacks,
            progress=progress,
        )
        if algorithm.run_directory is not None:
            algorithm.run_directory.write_json(
                "config.json", _config(algorithm, problem, seed, dataset, valid_fraction)
            )
        return _run(algorithm, asynchronous)
    finally:
        algorithm.close()
        if owned:
            backend.shutdown()


_FIT_KEYWORDS = [
    p.name for p in inspect.signature(fit).parameters.values() if p.kind is p.KEYWORD_ONLY
]


def _evaluator(evaluator) -> tuple[Evaluator, bool]:
    """The evaluator to use, and whether the search owns it (made here from a name)."""
    if evaluator is None or isinstance(evaluator, Evaluator):
        return evaluator or SerialEvaluator(), False
    if not isinstance(evaluator, str):
        raise ConfigError(
            f"evaluator must be 'serial', 'processes', 'ray' or an Evaluator, "
            f"not {type(evaluator).__name__}"
        )
    from evolve.parallel import make_evaluator

    backend = make_evaluator(evaluator)
    return backend, hasattr(backend, "shutdown")


def _run(algorithm: GeneticAlgorithm, asynchronous: bool) -> SearchResult:
    if not asynchronous:
        return algorithm.run()
    from evolve.parallel import ParallelEvaluator, run_async

    if not isinstance(algorithm.evaluator, ParallelEvaluator):
        raise ConfigError(
            "asynchronous=True needs a parallel evaluator (evaluator='processes' or 'ray'); "
            f"{algorithm.evaluator!r} trains one candidate at a time"
        )
    return run_async(algorithm)


def _check_generations(generations) -> None:
    if not isinstance(generations, int) or isinstance(generations, bool) or generations < 1:
        raise ConfigError(f"generations must be an integer >= 1, got {generations!r}")


def _config(algorithm, problem: Problem, seed: int, dataset, valid_fraction: float | None) -> dict:
    objs = problem.objectives
    return {
        "version": runfiles.CONFIG_VERSION,
        "seed": seed,
        "device": str(problem.device),
        "data": {
            "dataset": dataset,
            "fingerprint": problem.fingerprint(),
            "task": problem.task,
            "n_train": problem.n_train,
            "n_valid": len(problem.x_valid),
            "input_shape": list(problem.input_shape),
            "n_outputs": problem.n_outputs,
            "valid_fraction": valid_fraction,
        },
        "objectives": [describe(o) for o in objs.objectives],
        "weights": None if objs.weights is None else objs.weights.tolist(),
        "training": problem.training.to_dict(),
        "algorithm": describe(algorithm),
    }


def resume(
    run_dir: str | Path | RunDirectory,
    train=None,
    valid=None,
    *,
    callbacks: Sequence[Callback] = (),
    evaluator: Evaluator | str | None = None,
    asynchronous: bool = False,
    progress: bool | None = None,
    device: str | None = None,
    termination: Termination | None = None,
    extra: Sequence[type] = (),
) -> SearchResult:
    """Continue the run in ``run_dir`` from its last completed generation.

    Every file of the run is checked first (one run id throughout, a log that matches the
    checkpoint, a model folder for every candidate, components that are registered
    classes of their role); a refusal changes nothing. The run is locked while it runs.

    Args:
        run_dir: a run directory written by :func:`fit` (or a
            :class:`~evolve.rundir.RunDirectory` you opened, which stays open).
        train, valid: the data again, unless the run used a dataset name (checked
            against the recorded fingerprint).
        callbacks, evaluator, asynchronous, progress: as in :func:`fit` (not stored in
            the run; any evaluator continues any run).
        device: default the recorded one.
        termination: replaces the recorded one (to extend a finished run).
        extra: your own component classes named in the run's config.

    Raises:
        ConfigError: no run there, different data, malformed or mismatched files, or a
            component that cannot be rebuilt.
        RunInUseError: another process holds the run.

    Example:
        >>> import tempfile, torch, evolve
        >>> X, y, run = torch.randn(40, 6), torch.arange(40) % 2, tempfile.mkdtemp()
        >>> tiny = evolve.TrainingConfig(steps=2)
        >>> _ = evolve.fit((X, y), population=2, generations=1, run_dir=run, training=tiny,
        ...                progress=False)
        >>> more = evolve.MaxGenerationsTermination(2)
        >>> evolve.resume(run, (X, y), termination=more, progress=False).n_generations
        2
    """
    run = run_dir if isinstance(run_dir, RunDirectory) else RunDirectory.open(run_dir)
    try:
        config = runfiles.read_config(run.path)
        problem = _recorded_problem(config, run.path, train, valid, device, extra)
        where = f"{run.path / 'config.json'}: algorithm"
        algorithm = build(config["algorithm"], GeneticAlgorithm, extra=extra, where=where)
        if termination is not None:
            algorithm.termination = termination
        backend, owned = _evaluator(evaluator)
        try:
            algorithm.setup(
                problem,
                seed=config["seed"],
                run_dir=run,
                evaluator=backend,
                callbacks=callbacks,
                progress=progress,
                resume=True,
            )
            return _run(algorithm, asynchronous)
        finally:
            if owned:
                backend.shutdown()
    finally:
        if run is not run_dir:
            run.close()


def _recorded_problem(config: dict, run_dir: Path, train, valid, device, extra) -> Problem:
    """The problem ``config.json`` describes, on the data given again (or its dataset)."""
    path = run_dir / "config.json"
    data, seed = config["data"], config["seed"]
    if data["dataset"] is not None:
        splits = load_dataset(
            data["dataset"]["name"], seed=seed, valid_fraction=data["valid_fraction"]
        )
    elif train is None:
        raise ConfigError(
            f"the run in {run_dir} used your own data: pass it again, resume(run_dir, train, valid)"
        )
    else:
        fraction = data["valid_fraction"] or 0.1  # None: the run was given its split
        splits = as_splits(
            train, valid=valid, task=data["task"], seed=seed, valid_fraction=fraction
        )
    objectives = [
        build(o, Objective, extra=extra, where=f"{path}: objectives[{i}]")
        for i, o in enumerate(config["objectives"])
    ]
    try:
        objective_set = ObjectiveSet(objectives, config["weights"])
        training = TrainingConfig.from_dict(config["training"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    problem = Problem(splits, objective_set, training, device=device or config["device"])
    if problem.fingerprint() != data["fingerprint"]:
        raise ConfigError(
            f"the data differ from those the run in {run_dir} was started with; pass the same "
            f"train and valid data"
        )
    return problem
