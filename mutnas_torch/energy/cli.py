"""``mutnas calibrate``: the command-line body the ``mutnas`` CLI dispatches to."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from mutnas_torch.energy.calibration import run_calibration
from mutnas_torch.energy.errors import CalibrationError
from mutnas_torch.energy.reference_nets import reference_networks

__all__ = ["calibrate_main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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


def calibrate_main(argv: list[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Command line of ``mutnas calibrate``; returns the exit status.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> calibrate_main(["--device", "cpu", "--networks", "1"], stdout=out)
        1
        >>> out.getvalue().startswith("mutnas calibrate: ")  # no counter, or too few networks
        True
    """
    stdout = stdout or sys.stdout
    args = _parser().parse_args(argv)
    networks = reference_networks()[: args.networks] if args.networks else None
    try:
        report = run_calibration(
            args.device, out_path=args.out, networks=networks, batch_size=args.batch_size,
            min_window_s=args.min_window_s, repeats=args.repeats, training=not args.no_training,
        )  # fmt: skip
    except CalibrationError as error:
        stdout.write(f"mutnas calibrate: {error}\n")
        return 1
    stdout.write(report.to_markdown())
    stdout.write(f"saved: {report.path}\n")
    if args.report is not None:
        args.report.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
