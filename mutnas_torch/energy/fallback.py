"""The estimated meter, and :func:`auto_meter`, which degrades to it cleanly."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from mutnas_torch.energy.counting import Costs
from mutnas_torch.energy.errors import MeterUnavailableError
from mutnas_torch.energy.meters import EnergyMeter, ZeusMeter
from mutnas_torch.energy.nvml import NvmlMeter
from mutnas_torch.energy.predictors import AnalyticPredictor, load_predictor
from mutnas_torch.energy.rapl import RaplMeter

__all__ = ["EstimatedMeter", "auto_meter"]

logger = logging.getLogger(__name__)


class EstimatedMeter(EnergyMeter):
    """Measures time only and estimates energy; every result says ``source="estimated"``.

    Power over a window is the predictor's average power for ``costs`` (predicted
    energy / predicted time of one pass) when costs are given; otherwise, on a CPU,
    CodeCarbon's ``TDP * (0.1 + 0.9 * load**3)`` with ``load`` this process's CPU time
    over wall time and cores, and on a GPU the midpoint between idle power and TDP.
    Objective helpers given this meter skip the run and predict from counted costs.

    Args:
        device: the device whose energy is estimated.
        predictor: defaults to :func:`load_predictor` (calibrated if saved).
        costs: costs of the pass that windows will repeat, if known.
        reason: why no real counter was used (set by :func:`auto_meter`).

    Example:
        >>> meter = EstimatedMeter("cpu")
        >>> with meter.window() as w:
        ...     _ = sum(range(10_000))
        >>> w.result.source, w.result.cpu_j > 0, w.result.gpu_j
        ('estimated', True, None)
    """

    source = "estimated"

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        predictor: AnalyticPredictor | None = None,
        costs: Costs | None = None,
        reason: str = "",
    ) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.predictor = predictor if predictor is not None else load_predictor(self.device)
        self.costs = costs
        self.reason = reason

    def synchronize(self) -> None:
        if self.device.type == "cuda" and torch.cuda.is_initialized():
            torch.cuda.synchronize(self.device)

    def _power_w(self, load: float) -> float:
        spec = self.predictor.device
        if self.costs is not None:
            prediction = self.predictor.predict(self.costs)
            if prediction.time_s > 0:
                return prediction.energy_j / prediction.time_s
        if spec.kind == "cpu":
            return spec.tdp_w * (0.1 + 0.9 * load**3)
        return (spec.idle_w + spec.tdp_w) / 2

    def idle_power_w(self, duration_s: float = 1.0, *, refresh: bool = False) -> float:
        """The spec's idle power (nothing to measure, so no waiting)."""
        return self.predictor.device.idle_w

    def _begin(self) -> Any:
        return time.process_time()

    def _end(self, token: Any, elapsed_s: float) -> tuple[float | None, float | None, None]:
        busy_s = time.process_time() - token
        load = min(1.0, busy_s / max(elapsed_s * (os.cpu_count() or 1), 1e-12))
        joules = self._power_w(load) * elapsed_s
        if self.predictor.device.kind == "gpu":
            return joules, None, None
        return None, joules, None


def _factories(device: torch.device) -> dict[str, Callable[[], EnergyMeter]]:
    if device.type == "cuda":
        index = device.index or 0
        return {
            "nvml": lambda: NvmlMeter(index),
            "zeus": lambda: ZeusMeter(gpu_indices=[index], cpu_indices=[]),
        }
    return {"rapl": RaplMeter, "zeus": lambda: ZeusMeter(gpu_indices=[])}


def auto_meter(
    device: str | torch.device | None = None,
    *,
    prefer: Sequence[str] = ("nvml", "rapl", "zeus"),
    predictor: AnalyticPredictor | None = None,
) -> EnergyMeter:
    """The best readable meter for ``device``, else an :class:`EstimatedMeter`.

    A CUDA device tries NVML then Zeus; the CPU tries RAPL then Zeus (in the order of
    ``prefer``, skipping names not listed). Each counter that cannot be read is logged
    at INFO with the reason, which the estimated meter also keeps in ``reason``.

    Args:
        device: ``"cuda:1"``, ``"cpu"``...; default CUDA when available.
        prefer: backends to try, best first.
        predictor: for the estimated fallback (default: :func:`load_predictor`).

    Returns:
        A ready meter.

    Example:
        >>> meter = auto_meter("cpu", prefer=())
        >>> meter.source
        'estimated'
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    factories = _factories(device)
    reasons = []
    for name in prefer:
        if name not in factories:
            continue
        try:
            meter = factories[name]()
        except MeterUnavailableError as error:
            reasons.append(f"{name}: {error}")
            logger.info("auto_meter(%s): %s unavailable: %s", device, name, error)
            continue
        logger.info("auto_meter(%s): measuring with %s", device, name)
        return meter
    reason = "; ".join(reasons) or "no counter backend requested"
    logger.info("auto_meter(%s): no energy counter readable, energy is estimated", device)
    return EstimatedMeter(device, predictor=predictor, reason=reason)
