"""``mutnas calibrate``: the command-line body the ``mutnas`` CLI dispatches to.

Numeric flags are bounded (:data:`BOUNDS`): a calibration with a million repeats or a
ten-hour measuring window would run on with no output, so it is refused instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from mutnas_torch.energy.calibration import run_calibration
from mutnas_torch.energy.errors import CalibrationError
from mutnas_torch.energy.reference_nets import reference_networks

__all__ = ["BOUNDS", "calibrate_command", "calibrate_main"]

#: Inclusive bounds of the numeric flags (``--networks`` up to the number of networks).
BOUNDS = {
    "batch_size": (1, 65536),
    "networks": (1, len(reference_networks())),
    "min_window_s": (0.001, 600.0),
    "repeats": (1, 100),
}


def _parser(parser_class: type[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = parser_class(
        prog="mutnas calibrate",
        description="Measure reference CNNs on this device and fit the energy predictor.",
    )
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    parser.add_argument("--out", type=Path, default=None, help="predictor JSON path")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--networks", type=int, default=None, help="use the first N networks")
    parser.add_argument("--min-window-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-training", action="store_true", help="inference only")
    parser.add_argument("--report", type=Path, default=None, help="write the report JSON here")
    return parser


def _check_bounds(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name, (low, high) in BOUNDS.items():
        value = getattr(args, name)
        if value is not None and not low <= value <= high:
            word = "an integer" if isinstance(low, int) else "a number"
            flag = "--" + name.replace("_", "-")
            parser.error(f"argument {flag}: expected {word} from {low:g} to {high:g}, got {value}")


def calibrate_command(
    argv: list[str],
    *,
    stdout: TextIO,
    parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
) -> int:
    """Parse ``argv``, calibrate, print the report; errors raise (``CalibrationError``).

    ``parser_class`` is how the ``mutnas`` command makes a bad flag one line (exit 2).

    Example:
        >>> import io
        >>> calibrate_command(["--repeats", "1000000"], stdout=io.StringIO())
        Traceback (most recent call last):
        SystemExit: 2
    """
    parser = _parser(parser_class)
    args = parser.parse_args(argv)
    _check_bounds(parser, args)
    networks = reference_networks()[: args.networks] if args.networks else None
    report = run_calibration(
        args.device, out_path=args.out, networks=networks, batch_size=args.batch_size,
        min_window_s=args.min_window_s, repeats=args.repeats, training=not args.no_training,
    )  # fmt: skip
    stdout.write(report.to_markdown())
    stdout.write(f"saved: {report.path}\n")
    if args.report is not None:
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def calibrate_main(
    argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Command line of ``mutnas calibrate``; returns the exit status.

    A calibration error is one line on ``stderr`` (default ``stdout``), status 1.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> calibrate_main(["--device", "cpu", "--networks", "1"], stdout=out)
        1
        >>> out.getvalue().startswith("mutnas calibrate: ")  # no counter, or too few networks
        True
    """
    stdout = stdout or sys.stdout
    try:
        return calibrate_command(sys.argv[1:] if argv is None else argv, stdout=stdout)
    except CalibrationError as error:
        (stderr or stdout).write(f"mutnas calibrate: {error}\n")
        return 1
