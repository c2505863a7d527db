"""Judging predictors: RMSPE (NeuralPower's metric), Spearman's rho, leave-one-out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from mutnas_torch.energy.counting import Costs
from mutnas_torch.energy.predictors import FEATURES, AnalyticPredictor

__all__ = ["LooResult", "leave_one_out", "rmspe", "spearman"]


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


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation.

    Example:
        >>> spearman([1, 2, 3], [10, 30, 20])
        0.5
    """
    from scipy.stats import spearmanr

    return float(spearmanr(a, b)[0])


def leave_one_out(
    costs_list: Sequence[Costs],
    measured: Sequence[float],
    *,
    time_s: Sequence[float] | None = None,
    spec: Any = "cpu",
    features: Sequence[str] = FEATURES,
) -> LooResult:
    """Predict each network from a predictor fitted on all the others.

    With ``time_s`` (each pass's measured seconds) the latency-informed model is
    judged: it is fitted with the others' times and predicts from the left-out time.

    Example:
        >>> costs = [Costs(f, 0, 0, 10) for f in (1e9, 2e9, 4e9, 8e9)]
        >>> energy = [2e-9 * c.flops + 1.0 for c in costs]
        >>> round(leave_one_out(costs, energy).rmspe, 6)
        0.0
    """
    predicted = []
    for index in range(len(costs_list)):
        rest = [i for i in range(len(costs_list)) if i != index]
        times = None if time_s is None else [time_s[i] for i in rest]
        predictor = AnalyticPredictor(spec).fit(
            [costs_list[i] for i in rest],
            [measured[i] for i in rest],
            time_s=times,
            features=features,
        )
        left_out = None if time_s is None else time_s[index]
        predicted.append(predictor.predict_energy(costs_list[index], time_s=left_out))
    return LooResult(rmspe(predicted, measured), spearman(predicted, measured), tuple(predicted))
