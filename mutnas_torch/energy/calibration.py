"""Calibration: measure reference networks on this device, fit the predictor, save it.

``mutnas calibrate`` calls :func:`~mutnas_torch.energy.cli.calibrate_main`. Each
reference network is measured
for inference (eval, no gradients) and for one SGD training step, by
:func:`~mutnas_torch.energy.protocol.measure`; the predictor is fitted per phase by
non-negative least squares on relative error and judged by leave-one-out RMSPE
(``sqrt(mean(((predicted - measured) / measured) ** 2))``, NeuralPower's metric) and
Spearman's rank correlation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutnas_torch.energy.counting import Costs, count_costs
from mutnas_torch.energy.devices import default_predictor_path, device_name, device_spec
from mutnas_torch.energy.errors import CalibrationError
from mutnas_torch.energy.evaluation import LooResult, leave_one_out, spearman
from mutnas_torch.energy.fallback import EstimatedMeter, auto_meter
from mutnas_torch.energy.meters import EnergyMeter, Measurement
from mutnas_torch.energy.objectives import training_step
from mutnas_torch.energy.predictors import AnalyticPredictor
from mutnas_torch.energy.protocol import measure, time_per_call
from mutnas_torch.energy.reference_nets import ReferenceNetwork, reference_networks

__all__ = [
    "CalibrationReport",
    "NetworkRecord",
    "PhaseReport",
    "calibrate",
    "measure_networks",
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
    inference_latency_s: float
    training_costs: Costs | None = None
    training: Measurement | None = None
    training_latency_s: float | None = None


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

    Energy comes from :func:`measure` with ``meter``; latencies from a separate short
    :func:`time_per_call` run, as a search would time a candidate before predicting.

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
    sync = meter.synchronize
    model.eval()
    with torch.no_grad():
        inference = measure(lambda: model(x), meter, **kwargs)
        latency = time_per_call(lambda: model(x), synchronize=sync)
    record = NetworkRecord(name, len(x), count_costs(model, x), inference, latency)
    if not training:
        return record
    model.train()
    step = training_step(model, x)
    train = measure(step, meter, **kwargs)
    return dataclasses.replace(
        record,
        training_costs=count_costs(model, x, training=True),
        training=train,
        training_latency_s=time_per_call(step, synchronize=sync),
    )


@dataclasses.dataclass(frozen=True)
class PhaseReport:
    """Leave-one-out quality of one phase's fit (inference or training step).

    Attributes:
        loo: the cost-only predictor (FLOPs, bytes, launches).
        loo_timed: the latency-informed predictor, given each network's measured latency.
        uncalibrated_spearman: rank correlation of the spec defaults with measurements.
    """

    loo: LooResult
    loo_timed: LooResult
    uncalibrated_spearman: float


@dataclasses.dataclass(frozen=True)
class CalibrationReport:
    """What :func:`run_calibration` measured, fitted and judged."""

    device: str
    source: str
    predictor: AnalyticPredictor
    records: tuple[NetworkRecord, ...]
    inference: PhaseReport
    training: PhaseReport | None
    path: Path | None = None

    def phases(self) -> dict[str, PhaseReport]:
        """The judged phases by name."""
        found = {"inference": self.inference, "training": self.training}
        return {name: report for name, report in found.items() if report is not None}

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
            }
            for phase, report in self.phases().items():
                measured: Measurement = getattr(r, phase)
                row[f"{phase}_j_per_sample"] = measured.total_j / r.batch_size
                row[f"{phase}_loo_j_per_sample"] = report.loo.predicted[i] / r.batch_size
                row[f"{phase}_loo_timed_j_per_sample"] = (
                    report.loo_timed.predicted[i] / r.batch_size
                )
                row[f"{phase}_power_w"] = measured.power_w
                row[f"{phase}_spread"] = measured.spread
                row[f"{phase}_latency_ms"] = getattr(r, f"{phase}_latency_s") * 1e3
            rows.append(row)
        metrics = {
            f"{phase}_{name}": value
            for phase, report in self.phases().items()
            for name, value in [
                ("loo_rmspe", report.loo.rmspe),
                ("loo_spearman", report.loo.spearman),
                ("loo_timed_rmspe", report.loo_timed.rmspe),
                ("loo_timed_spearman", report.loo_timed.spearman),
                ("uncalibrated_spearman", report.uncalibrated_spearman),
            ]
        }
        return {
            "device": self.device,
            "source": self.source,
            **metrics,
            "predictor": self.predictor.to_dict(),
            "networks": rows,
        }

    def to_markdown(self) -> str:
        """A table of measured vs leave-one-out predicted energy per sample."""
        phases = self.phases()
        header = "| network | GFLOP/sample | MB/sample | launches |"
        for phase in phases:
            header += f" {phase} J/sample | LOO | LOO timed | avg W |"
        lines = [
            f"device: {self.device}; source: {self.source}; {len(self.records)} networks",
            "",
            header,
            "|" + " --- |" + " ---: |" * (header.count("|") - 2),
        ]
        for row in self.to_dict()["networks"]:
            line = (
                f"| {row['name']} | {row['gflops_per_sample']:.4g} | "
                f"{row['mbytes_per_sample']:.4g} | {row['launches']} |"
            )
            for phase in phases:
                line += "".join(
                    f" {row[f'{phase}_{key}']:.4g} |"
                    for key in ("j_per_sample", "loo_j_per_sample", "loo_timed_j_per_sample")
                )
                line += f" {row[f'{phase}_power_w']:.0f} |"
            lines.append(line)
        lines.append("")
        for phase, report in phases.items():
            lines.append(
                f"{phase}: LOO RMSPE {report.loo.rmspe:.1%} (Spearman {report.loo.spearman:.3f}); "
                f"latency-informed {report.loo_timed.rmspe:.1%} "
                f"({report.loo_timed.spearman:.3f}); uncalibrated Spearman "
                f"{report.uncalibrated_spearman:.3f}"
            )
        return "\n".join(lines) + "\n"


def _fit_phase(
    predictor: AnalyticPredictor, costs: list[Costs], energy: list[float], latency: list[float]
) -> PhaseReport:
    predictor.fit(costs, energy, time_s=latency)
    spec = predictor.device
    default = AnalyticPredictor(spec)
    return PhaseReport(
        leave_one_out(costs, energy, spec=spec),
        leave_one_out(costs, energy, time_s=latency, spec=spec),
        spearman([default.predict_energy(c) for c in costs], energy),
    )


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
    predictor = AnalyticPredictor(device_spec(device))
    reports = {}
    for phase in ("inference", "training") if training else ("inference",):
        reports[phase] = _fit_phase(
            predictor,
            [getattr(r, f"{phase}_costs") for r in records],
            [getattr(r, phase).total_j for r in records],
            [getattr(r, f"{phase}_latency_s") for r in records],
        )
    path = None
    if save:
        path = predictor.save(out_path or default_predictor_path(device))
        logger.info("saved the calibrated predictor to %s", path)
    return CalibrationReport(
        device_name(device), meter.source, predictor, tuple(records),
        reports["inference"], reports.get("training"), path,
    )  # fmt: skip


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
