"""Calibration: measure reference networks on this device, fit the predictor, save it.

``mutnas calibrate`` calls :func:`calibrate_main`. Each reference network is measured
for inference (eval, no gradients) and for one SGD training step, by
:func:`~mutnas_torch.energy.protocol.measure`; the predictor is fitted per phase by
non-negative least squares on relative error and judged by leave-one-out RMSPE
(``sqrt(mean(((predicted - measured) / measured) ** 2))``, NeuralPower's metric) and
Spearman's rank correlation.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from mutnas_torch.energy.counting import Costs, count_costs
from mutnas_torch.energy.errors import CalibrationError
from mutnas_torch.energy.fallback import EstimatedMeter, auto_meter
from mutnas_torch.energy.meters import EnergyMeter, Measurement
from mutnas_torch.energy.objectives import training_step
from mutnas_torch.energy.predictors import (
    FEATURES,
    AnalyticPredictor,
    default_predictor_path,
    device_name,
    device_spec,
)
from mutnas_torch.energy.protocol import measure
from mutnas_torch.energy.reference_nets import ReferenceNetwork, reference_networks

__all__ = [
    "CalibrationReport",
    "LooResult",
    "NetworkRecord",
    "calibrate",
    "calibrate_main",
    "leave_one_out",
    "measure_networks",
    "rmspe",
    "run_calibration",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NetworkRecord:
    """Costs and per-batch measurements of one reference network."""

    name: str
    batch_size: int
    inference_costs: Costs
    inference: Measurement
    training_costs: Costs | None = None
    training: Measurement | None = None


@dataclasses.dataclass(frozen=True)
class LooResult:
    """Leave-one-out predictions and their RMSPE and Spearman rank correlation."""

    rmspe: float
    spearman: float
    predicted: tuple[float, ...]


def rmspe(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Root mean square percentage error, as a fraction.

    Example:
        >>> round(rmspe([1.1, 0.9], [1.0, 1.0]), 3)
        0.1
    """
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    return float(np.sqrt(np.mean(((p - m) / m) ** 2)))


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def leave_one_out(
    costs_list: Sequence[Costs],
    measured: Sequence[float],
    *,
    spec: Any = "cpu",
    features: Sequence[str] = FEATURES,
) -> LooResult:
    """Predict each network from a predictor fitted on all the others.

    Example:
        >>> costs = [Costs(f, 0, 0, 10) for f in (1e9, 2e9, 4e9, 8e9)]
        >>> energy = [2e-9 * c.flops + 1.0 for c in costs]
        >>> round(leave_one_out(costs, energy).rmspe, 6)
        0.0
    """
    predicted = []
    for index in range(len(costs_list)):
        rest = [i for i in range(len(costs_list)) if i != index]
        predictor = AnalyticPredictor(spec).fit(
            [costs_list[i] for i in rest], [measured[i] for i in rest], features=features
        )
        predicted.append(predictor.predict_energy(costs_list[index]))
    return LooResult(rmspe(predicted, measured), _spearman(predicted, measured), tuple(predicted))


@contextlib.contextmanager
def _seeded(rng: np.random.Generator):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(rng.integers(2**31)))
        yield


def measure_networks(
    networks: Sequence[ReferenceNetwork],
    device: str | torch.device,
    meter: EnergyMeter,
    *,
    batch_size: int,
    min_window_s: float = 1.0,
    repeats: int = 3,
    training: bool = True,
    rng: np.random.Generator | None = None,
) -> list[NetworkRecord]:
    """Count and measure each network's inference pass (and training step) per batch.

    Example:
        >>> from mutnas_torch.energy import EstimatedMeter
        >>> [r] = measure_networks(reference_networks()[:1], "cpu", EstimatedMeter("cpu"),
        ...                        batch_size=2, min_window_s=0.01, repeats=1)
        >>> r.name, r.inference.source, r.training.time_s > 0
        ('plain_w16_d2_k3_r32', 'estimated', True)
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    device = torch.device(device)
    kwargs = {"min_window_s": min_window_s, "repeats": repeats}
    records = []
    for net in networks:
        with _seeded(rng):
            model = net.build().to(device)
            x = torch.randn(net.input_shape(batch_size), device=device)
        records.append(_measure_one(net.name, model, x, meter, training, kwargs))
        logger.info("%s: %.4g J/sample", net.name, records[-1].inference.total_j / batch_size)
        del model, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return records


def _measure_one(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    meter: EnergyMeter,
    training: bool,
    kwargs: dict[str, Any],
) -> NetworkRecord:
    model.eval()
    with torch.no_grad():
        inference = measure(lambda: model(x), meter, **kwargs)
    train_costs = train = None
    if training:
        model.train()
        train = measure(training_step(model, x), meter, **kwargs)
        train_costs = count_costs(model, x, training=True)
    return NetworkRecord(name, len(x), count_costs(model, x), inference, train_costs, train)


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """What :func:`run_calibration` measured, fitted and judged."""

    device: str
    source: str
    predictor: AnalyticPredictor
    records: tuple[NetworkRecord, ...]
    inference_loo: LooResult
    training_loo: LooResult | None
    uncalibrated_spearman: float
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: metrics and, per network, measured and LOO-predicted J/sample."""
        rows = []
        for i, r in enumerate(self.records):
            row = {
                "name": r.name,
                "batch_size": r.batch_size,
                "gflops_per_sample": r.inference_costs.flops / r.batch_size / 1e9,
                "mbytes_per_sample": r.inference_costs.bytes_moved / r.batch_size / 1e6,
                "launches": r.inference_costs.launches,
                "inference_j_per_sample": r.inference.total_j / r.batch_size,
                "inference_loo_j_per_sample": self.inference_loo.predicted[i] / r.batch_size,
                "inference_power_w": r.inference.power_w,
                "inference_spread": r.inference.spread,
            }
            if r.training is not None and self.training_loo is not None:
                row["training_j_per_sample"] = r.training.total_j / r.batch_size
                row["training_loo_j_per_sample"] = self.training_loo.predicted[i] / r.batch_size
            rows.append(row)
        return {
            "device": self.device,
            "source": self.source,
            "inference_loo_rmspe": self.inference_loo.rmspe,
            "inference_loo_spearman": self.inference_loo.spearman,
            "training_loo_rmspe": self.training_loo and self.training_loo.rmspe,
            "training_loo_spearman": self.training_loo and self.training_loo.spearman,
            "uncalibrated_spearman": self.uncalibrated_spearman,
            "predictor": self.predictor.to_dict(),
            "networks": rows,
        }

    def to_markdown(self) -> str:
        """A table of measured vs leave-one-out predicted energy per sample."""
        data = self.to_dict()
        lines = [
            f"device: {self.device}; source: {self.source}; {len(self.records)} networks",
            "",
            "| network | GFLOP/sample | MB/sample | launches | inference J/sample | LOO "
            "predicted | avg W | training J/sample | LOO predicted |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in data["networks"]:
            train = row.get("training_j_per_sample", math.nan)
            train_loo = row.get("training_loo_j_per_sample", math.nan)
            lines.append(
                f"| {row['name']} | {row['gflops_per_sample']:.4g} | "
                f"{row['mbytes_per_sample']:.4g} | {row['launches']} | "
                f"{row['inference_j_per_sample']:.4g} | {row['inference_loo_j_per_sample']:.4g} | "
                f"{row['inference_power_w']:.0f} | {train:.4g} | {train_loo:.4g} |"
            )
        lines += ["", f"inference: LOO RMSPE {self.inference_loo.rmspe:.1%}, Spearman "
                  f"{self.inference_loo.spearman:.3f}; uncalibrated Spearman "
                  f"{self.uncalibrated_spearman:.3f}"]  # fmt: skip
        if self.training_loo is not None:
            lines.append(
                f"training step: LOO RMSPE {self.training_loo.rmspe:.1%}, Spearman "
                f"{self.training_loo.spearman:.3f}"
            )
        return "\n".join(lines) + "\n"


def run_calibration(
    device: str | torch.device | None = None,
    *,
    out_path: str | Path | None = None,
    save: bool = True,
    networks: Sequence[ReferenceNetwork] | None = None,
    batch_size: int | None = None,
    meter: EnergyMeter | None = None,
    min_window_s: float = 1.0,
    repeats: int = 3,
    training: bool = True,
    allow_estimated: bool = False,
    rng: np.random.Generator | None = None,
) -> CalibrationReport:
    """Measure, fit and judge; see :func:`calibrate` (which returns only the predictor).

    ``allow_estimated`` lets the pipeline run against an :class:`EstimatedMeter`, for
    testing the plumbing on machines without counters; nothing is saved then.

    Example:
        >>> report = run_calibration("cpu", networks=reference_networks()[:3], batch_size=1,
        ...     min_window_s=0.01, repeats=1, training=False, allow_estimated=True)
        >>> report.source, report.path is None, len(report.records)
        ('estimated', True, 3)
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meter = meter if meter is not None else auto_meter(device)
    if isinstance(meter, EstimatedMeter):
        if not allow_estimated:
            raise CalibrationError(
                f"no energy counter is readable on {device} ({meter.reason}); calibration "
                "needs measured energy: run on a machine with NVML (NVIDIA GPU, "
                "nvidia-ml-py) or readable RAPL counters"
            )
        save = False
    networks = tuple(networks if networks is not None else reference_networks())
    if len(networks) < 3:
        raise CalibrationError(f"calibration needs at least 3 networks, got {len(networks)}")
    batch_size = batch_size or (128 if device.type == "cuda" else 8)
    records = measure_networks(
        networks, device, meter, batch_size=batch_size, min_window_s=min_window_s,
        repeats=repeats, training=training, rng=rng,
    )  # fmt: skip
    spec = device_spec(device)
    predictor = AnalyticPredictor(spec)
    costs = [r.inference_costs for r in records]
    energy = [r.inference.total_j for r in records]
    predictor.fit(costs, energy, time_s=[r.inference.time_s for r in records])
    inference_loo = leave_one_out(costs, energy, spec=spec)
    uncalibrated = AnalyticPredictor(spec)
    rho = _spearman([uncalibrated.predict_energy(c) for c in costs], energy)
    training_loo = None
    if training:
        train_costs = [r.training_costs for r in records]
        train_energy = [r.training.total_j for r in records]
        predictor.fit(train_costs, train_energy, time_s=[r.training.time_s for r in records])
        training_loo = leave_one_out(train_costs, train_energy, spec=spec)
    path = None
    if save:
        path = predictor.save(out_path or default_predictor_path(device))
        logger.info("saved the calibrated predictor to %s", path)
    name = device_name(device)
    return CalibrationReport(
        name, meter.source, predictor, tuple(records), inference_loo, training_loo, rho, path
    )


def calibrate(
    device: str | torch.device | None = None,
    *,
    out_path: str | Path | None = None,
    networks: Sequence[ReferenceNetwork] | None = None,
    batch_size: int | None = None,
    meter: EnergyMeter | None = None,
    min_window_s: float = 1.0,
    repeats: int = 3,
    training: bool = True,
) -> AnalyticPredictor:
    """Measure 10-20 reference CNNs on ``device``, fit the predictor and save it.

    Args:
        device: default CUDA when available, else the CPU.
        out_path: JSON file (default :func:`default_predictor_path`).
        networks: default :func:`reference_networks` (20 CNNs).
        batch_size: default 128 on CUDA, 8 on the CPU.
        meter: default :func:`auto_meter`.
        min_window_s, repeats: the measurement protocol.
        training: also measure and fit the training step.

    Returns:
        The fitted predictor (also saved).

    Raises:
        CalibrationError: no energy counter is readable (only an estimate), or fewer
            than 3 networks.

    Example:
        >>> try:
        ...     calibrate("cpu", meter=EstimatedMeter("cpu"))
        ... except CalibrationError as error:
        ...     "no energy counter" in str(error)
        True
    """
    return run_calibration(
        device, out_path=out_path, networks=networks, batch_size=batch_size, meter=meter,
        min_window_s=min_window_s, repeats=repeats, training=training,
    ).predictor  # fmt: skip


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
        >>> "no energy counter" in out.getvalue()
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
