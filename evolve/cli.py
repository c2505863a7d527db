"""The ``mutnas`` command: ``mutnas evolve`` searches, ``mutnas calibrate`` fits energy.

``mutnas evolve`` runs :func:`evolve.fit` on a built-in dataset (MNIST-1D by default, a
few minutes on a laptop CPU) and prints the Pareto front; the run directory (default
``runs/<dataset>-seed<seed>``) holds the checkpoints, the candidate log and the plots, and
``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["evolve_main", "main"]

_USAGE = """usage: mutnas <command> [options]

commands:
  evolve     search a Pareto front of models on a built-in dataset (mutnas evolve --help)
  calibrate  fit the energy predictor to this device (mutnas calibrate --help)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mutnas evolve", description="Evolve a Pareto front of trained models."
    )
    parser.add_argument(
        "--dataset", default="mnist1d", help="a name from evolve.data.list_datasets()"
    )
    parser.add_argument("--objectives", default="accuracy,flops", help="comma-separated names")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--generations", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=None, help="stop after this wall time")
    parser.add_argument("--epochs", type=float, default=3.0, help="training per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument("--resume", action="store_true", help="continue the run directory")
    parser.add_argument("--quiet", action="store_true", help="no per-generation log lines")
    return parser


def evolve_main(argv: list[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Command line of ``mutnas evolve``; returns the exit status.

    Example:
        >>> import io, tempfile
        >>> out = io.StringIO()
        >>> evolve_main(["--dataset", "digits", "--population", "2", "--generations", "1",
        ...              "--epochs", "0.1", "--quiet", "--run-dir", tempfile.mkdtemp()], stdout=out)
        0
        >>> "Pareto front" in out.getvalue()
        True
    """
    import evolve
    from evolve.errors import EvolveError

    stdout = stdout or sys.stdout
    args = _parser().parse_args(argv)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_dir = args.run_dir or Path("runs") / f"{args.dataset}-seed{args.seed}"
    try:
        if args.resume:
            result = evolve.resume(run_dir, device=args.device)
        else:
            stop = evolve.TimeTermination(args.minutes * 60) if args.minutes else None
            result = evolve.fit(
                args.dataset,
                objectives=[name.strip() for name in args.objectives.split(",")],
                population=args.population,
                generations=args.generations,
                termination=stop,
                training=evolve.TrainingConfig(epochs=args.epochs),
                seed=args.seed,
                device=args.device,
                run_dir=run_dir,
            )
    except EvolveError as error:
        stdout.write(f"mutnas evolve: {error}\n")
        return 1
    stdout.write(f"Pareto front after {result.n_generations} generations ({run_dir}):\n")
    stdout.write(result.summary() + "\n")
    return 0


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Entry point of the ``mutnas`` command.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> main(["frobnicate"], stdout=out), out.getvalue().splitlines()[0]
        (2, "mutnas: unknown command 'frobnicate'")
    """
    stdout = stdout or sys.stdout
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        stdout.write(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "evolve":
        return evolve_main(rest, stdout=stdout)
    if command == "calibrate":
        from mutnas_torch.energy.cli import calibrate_main

        return calibrate_main(rest, stdout=stdout)
    stdout.write(f"mutnas: unknown command {command!r}\n{_USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
