"""Choosing a backend by name: :func:`make_evaluator` and the command-line options."""

from __future__ import annotations

import argparse
from typing import Any

from evolve.errors import ConfigError
from evolve.evaluator import Evaluator, SerialEvaluator

__all__ = ["EVALUATORS", "add_evaluator_arguments", "evaluator_from_args", "make_evaluator"]

#: Backend names :func:`make_evaluator` knows.
EVALUATORS = ("serial", "processes", "ray")


def make_evaluator(evaluator: str | Evaluator | None = "serial", **options: Any) -> Evaluator:
    """The evaluator a name stands for (an :class:`~evolve.Evaluator` is returned as is).

    Args:
        evaluator: ``"serial"`` (in this process, one candidate at a time),
            ``"processes"`` (:class:`~evolve.parallel.ProcessEvaluator`: local worker
            processes, one per core or k per GPU) or ``"ray"``
            (:class:`~evolve.parallel.RayEvaluator`: Ray actors, local or on a cluster).
        **options: the backend's keyword arguments (``n_workers``, ``timeout_s``,
            ``data``, ``address``...).

    Raises:
        ConfigError: an unknown name, or options given to ``"serial"``.

    Example:
        >>> make_evaluator("serial")
        SerialEvaluator()
        >>> make_evaluator("processes", n_workers=2)
        ProcessEvaluator(n_workers=2, device=None, per_gpu='auto')
        >>> make_evaluator("gpu")
        Traceback (most recent call last):
        ...
        evolve.errors.ConfigError: unknown evaluator 'gpu'; use one of serial, processes, ray
    """
    if isinstance(evaluator, Evaluator):
        return evaluator
    if evaluator is None or evaluator == "serial":
        if options:
            raise ConfigError(f"the serial evaluator takes no options, got {sorted(options)}")
        return SerialEvaluator()
    if evaluator == "processes":
        from evolve.parallel.processes import ProcessEvaluator

        return ProcessEvaluator(**options)
    if evaluator == "ray":
        from evolve.parallel.ray_backend import RayEvaluator

        return RayEvaluator(**options)
    raise ConfigError(f"unknown evaluator {evaluator!r}; use one of {', '.join(EVALUATORS)}")


def add_evaluator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--evaluator``, ``--workers``, ``--per-gpu``, ``--num-gpus``,
    ``--ray-address``, ``--timeout`` and ``--async`` to a command's parser.

    :func:`evaluator_from_args` turns them into an evaluator; pass ``args.asynchronous``
    to :func:`evolve.fit` (``asynchronous=``) yourself.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_evaluator_arguments(parser)
        >>> args = parser.parse_args(["--evaluator", "processes", "--workers", "2"])
        >>> evaluator_from_args(args)
        ProcessEvaluator(n_workers=2, device=None, per_gpu='auto')
    """
    group = parser.add_argument_group("evaluation")
    group.add_argument(
        "--evaluator",
        choices=EVALUATORS,
        default="serial",
        help="where candidates train (default: serial, in this process)",
    )
    group.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers (default: one per CPU core, or per_gpu per GPU)",
    )
    group.add_argument(
        "--per-gpu",
        default="auto",
        help="workers sharing each GPU (processes; default auto, from free memory)",
    )
    group.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        help="GPUs per Ray worker (0.25 packs four on a GPU)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address ('auto', 'ray://head:10001'); default local",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds one candidate may train before it fails",
    )
    group.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="breed a child as soon as a worker is free (fit(asynchronous=True))",
    )


def evaluator_from_args(args: argparse.Namespace) -> Evaluator:
    """The evaluator :func:`add_evaluator_arguments`' options ask for (it reads
    ``evaluator``, ``workers``, ``per_gpu``, ``num_gpus``, ``ray_address``, ``timeout``).

    The caller owns a parallel evaluator: call its ``shutdown()`` when the search ends
    (or use it as a context manager); otherwise its workers stop when the program ends.
    """
    if args.evaluator == "serial":
        return SerialEvaluator()
    options: dict[str, Any] = {"n_workers": args.workers}
    if args.timeout is not None:
        options["timeout_s"] = args.timeout
    if args.evaluator == "processes":
        per_gpu = args.per_gpu if args.per_gpu == "auto" else int(args.per_gpu)
        if per_gpu != "auto":
            options["per_gpu"] = per_gpu
    else:
        options.update(address=args.ray_address, num_gpus=args.num_gpus)
    return make_evaluator(args.evaluator, **options)
