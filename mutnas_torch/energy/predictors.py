"""Paleo-style analytic predictors of time and energy from :class:`Costs`.

Per pass, with F FLOPs, B bytes moved (read + written) and L launches::

    time   = F / (peak * eta_c) + B / (bandwidth * eta_m) + L * t_launch + t_0
    energy = alpha * F + beta * B + gamma * L + delta

and, when the pass's time T was measured (a cheap latency run, no energy counter),
the latency-informed form ``energy = p * T + alpha' * F + beta' * B + gamma' * L +
delta'`` (static power times time plus dynamic work), which absorbs the kernel
efficiencies that FLOPs and bytes cannot see: on an H100 it cut the leave-one-out
RMSPE over 20 reference CNNs from 16 % to 11 % (inference) and from 23 % to 16 %
(training step); see ``benchmarks/results/energy.md``.

Defaults come from a small table of device specs (Paleo's 0.62 / 0.72 "percent of
peak"; power between idle and TDP). They rank candidates but are off in absolute terms
(up to 12x on an H100) until fitted by :meth:`AnalyticPredictor.fit` on measured
networks (non-negative least squares on relative error), which ``calibrate`` does and
saves as JSON per device. Inference and training are fitted separately: a predictor
picks the coefficients of the phase that :attr:`Costs.training` names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mutnas_torch.energy.counting import Costs
from mutnas_torch.energy.devices import DeviceSpec, default_predictor_path, device_spec
from mutnas_torch.energy.errors import CalibrationError

__all__ = ["FEATURES", "AnalyticPredictor", "Prediction", "load_predictor"]

logger = logging.getLogger(__name__)

FEATURES = ("flops", "bytes", "launches", "constant")
"""The predictors' features, in coefficient order (``"energy"`` and ``"time"``); the
latency-informed ``"energy_timed"`` coefficients are for ``("seconds", *FEATURES)``."""

_FORMAT = "mutnas.energy.analytic-predictor"
_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Prediction:
    """Predicted time and energy of one pass."""

    time_s: float
    energy_j: float
    source: str = "estimated"


def _features(costs: Costs) -> np.ndarray:
    return np.array([costs.flops, costs.bytes_moved, costs.launches, 1.0], dtype=float)


def _phase(costs: Costs) -> str:
    return "training" if costs.training else "inference"


def _nnls(rows: np.ndarray, target: np.ndarray, used: np.ndarray, relative: bool) -> list[float]:
    """Non-negative least squares on the used columns, on relative error if asked."""
    from scipy.optimize import nnls

    design = rows[:, used]
    rhs = target.copy()
    if relative:
        design = design / target[:, None]
        rhs = np.ones_like(target)
    scale = np.abs(design).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(design / scale, rhs)
    coef = np.zeros(rows.shape[1])
    coef[used] = solution / scale
    return [float(c) for c in coef]


class AnalyticPredictor:
    """Paleo-style time and energy from FLOPs, bytes and launches.

    Args:
        spec: a :class:`DeviceSpec`, a :data:`DEVICE_SPECS` key or a device name.
        coef: fitted coefficients to start from, ``{phase: {"time": [...],
            "energy": [...]}}`` in :data:`FEATURES` order (as :meth:`fit` writes them).

    Attributes:
        coef_: fitted coefficients per phase (``"inference"``/``"training"``); a phase
            absent here uses the spec's defaults.

    Example:
        >>> from mutnas_torch.energy import Costs
        >>> predictor = AnalyticPredictor("h100")
        >>> costs = Costs(flops=10**12, bytes_read=10**9, bytes_written=10**9, launches=100)
        >>> round(predictor.predict(costs).time_s * 1e3, 1)  # ms, uncalibrated
        25.3
        >>> predictor.calibrated
        False
    """

    def __init__(
        self,
        spec: DeviceSpec | str = "cpu",
        *,
        coef: dict[str, dict[str, list[float]]] | None = None,
    ) -> None:
        self.spec = spec
        self.coef = coef
        self.coef_: dict[str, dict[str, list[float]]] = {
            k: dict(v) for k, v in (coef or {}).items()
        }

    @property
    def device(self) -> DeviceSpec:
        """The resolved device spec."""
        return device_spec(self.spec)

    @property
    def calibrated(self) -> bool:
        """Whether any phase has fitted coefficients."""
        return bool(self.coef_)

    def default_coefficients(self) -> dict[str, list[float]]:
        """Uncalibrated ``time``, ``energy`` and ``energy_timed`` coefficients from the spec."""
        d = self.device
        per_flop = 1.0 / (d.peak_flops * d.eta_compute)
        per_byte = 1.0 / (d.memory_bandwidth * d.eta_memory)
        memory_w = d.idle_w + 0.6 * (d.tdp_w - d.idle_w)
        launch_w = d.idle_w + 0.1 * (d.tdp_w - d.idle_w)
        dynamic = [d.tdp_w - d.idle_w, memory_w - d.idle_w, launch_w - d.idle_w]
        return {
            "time": [per_flop, per_byte, d.launch_s, 0.0],
            "energy": [d.tdp_w * per_flop, memory_w * per_byte, launch_w * d.launch_s, 0.0],
            "energy_timed": [
                d.idle_w,
                dynamic[0] * per_flop,
                dynamic[1] * per_byte,
                dynamic[2] * d.launch_s,
                0.0,
            ],
        }

    def coefficients(self, phase: str = "inference") -> dict[str, list[float]]:
        """Coefficients used for ``phase``: fitted where available, else defaults."""
        coef = dict(self.default_coefficients())
        coef.update(self.coef_.get(phase, {}))
        return coef

    def predict(self, costs: Costs, *, time_s: float | None = None) -> Prediction:
        """Time and energy of the pass that ``costs`` describes.

        Args:
            costs: from :func:`count_costs` (its ``training`` flag picks the phase).
            time_s: the pass's measured seconds, if known: energy then comes from the
                latency-informed coefficients (unless the phase was fitted without
                times, in which case the fitted cost-only ones are kept).
        """
        phase = _phase(costs)
        coef = self.coefficients(phase)
        x = _features(costs)
        fitted = self.coef_.get(phase, {})
        if time_s is None or ("energy" in fitted and "energy_timed" not in fitted):
            predicted = float(x @ coef["time"])
            return Prediction(predicted if time_s is None else time_s, float(x @ coef["energy"]))
        return Prediction(time_s, float(np.r_[time_s, x] @ coef["energy_timed"]))

    def predict_energy(self, costs: Costs, *, time_s: float | None = None) -> float:
        """Joules of the pass that ``costs`` describes (see :meth:`predict`)."""
        return self.predict(costs, time_s=time_s).energy_j

    def predict_time(self, costs: Costs) -> float:
        """Seconds of the pass that ``costs`` describes."""
        return self.predict(costs).time_s

    def fit(
        self,
        costs_list: Sequence[Costs],
        energy_j: Sequence[float],
        *,
        time_s: Sequence[float] | None = None,
        features: Sequence[str] = FEATURES,
        relative: bool = True,
    ) -> AnalyticPredictor:
        """Fit the phase's coefficients by non-negative least squares.

        Args:
            costs_list: costs of the measured passes (all inference or all training).
            energy_j: measured joules of each pass.
            time_s: measured seconds of each pass; fits the time model and the
                latency-informed energy model too.
            features: subset of :data:`FEATURES` to use (others get 0).
            relative: minimise relative rather than absolute squared error.

        Returns:
            ``self``, with ``coef_`` set for the phase.

        Raises:
            CalibrationError: mismatched lengths, fewer than 2 passes, mixed phases,
                non-positive targets or unknown features.

        Example:
            >>> from mutnas_torch.energy import Costs
            >>> costs = [Costs(f, b, 0, n) for f, b, n in [(1e9, 1e6, 10), (4e9, 2e6, 30),
            ...     (2e9, 8e6, 20), (9e9, 3e6, 90), (5e9, 5e6, 50)]]
            >>> energy = [1e-9 * c.flops + 1e-7 * c.bytes_read + 0.5 for c in costs]
            >>> p = AnalyticPredictor("cpu").fit(costs, energy)
            >>> [round(v, 12) for v in p.coef_["inference"]["energy"]]
            [1e-09, 1e-07, 0.0, 0.5]
        """
        rows, targets = self._check(costs_list, energy_j, features)
        used = np.array([name in features for name in FEATURES])
        fitted = {"energy": _nnls(rows, targets, used, relative)}
        if time_s is not None:
            _, times = self._check(costs_list, time_s, features)
            fitted["time"] = _nnls(rows, times, used, relative)
            timed_rows = np.c_[times, rows]
            fitted["energy_timed"] = _nnls(timed_rows, targets, np.r_[True, used], relative)
        self.coef_[_phase(costs_list[0])] = fitted
        return self

    @staticmethod
    def _check(
        costs_list: Sequence[Costs], values: Sequence[float], features: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        unknown = sorted(set(features) - set(FEATURES))
        if unknown:
            raise CalibrationError(f"unknown features {unknown}; choose among {FEATURES}")
        if len(costs_list) != len(values) or len(costs_list) < 2:
            raise CalibrationError(
                f"fit needs as many measurements as costs, at least 2; got {len(costs_list)} "
                f"costs and {len(values)} measurements"
            )
        if len({c.training for c in costs_list}) != 1:
            raise CalibrationError("fit got inference and training costs mixed: fit each alone")
        targets = np.asarray(values, dtype=float)
        if not np.all(np.isfinite(targets)) or np.any(targets <= 0):
            raise CalibrationError(f"measured values must be finite and positive, got {values}")
        return np.stack([_features(c) for c in costs_list]), targets

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (spec, features and fitted coefficients)."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "spec": dataclasses.asdict(self.device),
            "features": list(FEATURES),
            "coef": self.coef_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalyticPredictor:
        """The inverse of :meth:`to_dict`.

        Raises:
            CalibrationError: not a predictor description of a known version.
        """
        if data.get("format") != _FORMAT or data.get("version") != _VERSION:
            raise CalibrationError(
                f"not a mutnas predictor file (format {data.get('format')!r}, version "
                f"{data.get('version')!r}; expected {_FORMAT!r} version {_VERSION}): recalibrate"
            )
        if list(data.get("features", [])) != list(FEATURES):
            raise CalibrationError(f"predictor features {data.get('features')} != {FEATURES}")
        return cls(DeviceSpec(**data["spec"]), coef=data.get("coef") or None)

    def save(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON (parent folders are created).

        Example:
            >>> import tempfile
            >>> with tempfile.TemporaryDirectory() as tmp:
            ...     path = AnalyticPredictor("h100").save(Path(tmp) / "h100.json")
            ...     AnalyticPredictor.load(path).device.name
            'NVIDIA H100 SXM'
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> AnalyticPredictor:
        """Read a file written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CalibrationError(f"cannot read predictor file {path}: {error}") from error
        return cls.from_dict(data)

    def __repr__(self) -> str:
        phases = ",".join(sorted(self.coef_)) or "uncalibrated"
        return f"AnalyticPredictor({self.device.name!r}, {phases})"


def load_predictor(
    device: str | torch.device = "cpu", *, path: str | Path | None = None
) -> AnalyticPredictor:
    """The calibrated predictor saved for ``device``, else its uncalibrated defaults.

    Example:
        >>> load_predictor("cpu", path="/nonexistent.json").calibrated
        False
    """
    path = Path(path) if path is not None else default_predictor_path(device)
    if path.is_file():
        return AnalyticPredictor.load(path)
    logger.info("no calibration at %s: using uncalibrated defaults for %s", path, device)
    return AnalyticPredictor(device_spec(device))
