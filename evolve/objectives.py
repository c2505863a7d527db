"""Objectives: what a candidate is scored on, each maximized or minimized.

Task metrics (accuracy, R², MSE) need the trained model's validation predictions; cost
objectives (parameters, FLOPs, latency, energy) need only the model, so they are computed
*before* training too, to screen offspring against budgets (``max_value``) without
spending any training on them. Objectives are looked up by name in a registry
(:func:`get_objective`) or passed as objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from evolve.errors import ConfigError
from evolve.pareto import preference_ranks

__all__ = [
    "OBJECTIVES",
    "AccuracyObjective",
    "EnergyObjective",
    "EvalContext",
    "FlopsObjective",
    "LatencyObjective",
    "MSEObjective",
    "Objective",
    "ObjectiveSet",
    "ParametersObjective",
    "R2Objective",
    "count_flops",
    "get_objective",
    "register_objective",
]

OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make an objective available by ``name`` (timm-style registry)."""

    def decorator(cls: type[Objective]) -> type[Objective]:
        OBJECTIVES[name] = cls
        cls.name = name
        return cls

    return decorator


@dataclass
class EvalContext:
    """What an objective may look at: the model (eval mode), data, validation outputs."""

    model: torch.nn.Module
    example_input: torch.Tensor
    task: str = "classification"
    outputs: torch.Tensor | None = None  # validation predictions (None before training)
    targets: torch.Tensor | None = None


class Objective:
    """Base class: subclasses set ``direction`` and write ``_evaluate``.

    Args:
        max_value: an upper bound. For a cost objective (computed before training) it is a
            budget: an offspring over it is repaired (pruned) or rejected before any
            training. For a trained metric it is a constraint: a candidate beyond it stays
            in the search but ranks after every candidate within the bounds (constraint
            domination) and never enters the Pareto front.
        min_value: a lower bound, likewise (``AccuracyObjective(min_value=0.9)``).
    """

    name = "objective"
    direction = "max"  # "max" or "min"
    needs_training = True
    #: (best possible, reference for the hypervolume) in the objective's own units
    bounds: tuple[float | None, float | None] = (None, None)

    def __init__(self, *, max_value: float | None = None, min_value: float | None = None):
        self.max_value = max_value
        self.min_value = min_value

    def evaluate(self, ctx: EvalContext) -> float:
        """The objective's value for the model in ``ctx``."""
        with torch.no_grad():
            return float(self._evaluate(ctx))

    def _evaluate(self, ctx: EvalContext) -> float:
        raise NotImplementedError

    def violation(self, value: float) -> str | None:
        """Why ``value`` breaks a bound, or ``None``."""
        if self.max_value is not None and value > self.max_value:
            return f"{self.name} {value:,.6g} > max_value {self.max_value:,.6g}"
        if self.min_value is not None and value < self.min_value:
            return f"{self.name} {value:,.6g} < min_value {self.min_value:,.6g}"
        return None

    def excess(self, value: float) -> float:
        """How far ``value`` lies beyond a bound, relative to it (0 within the bounds)."""
        out = 0.0
        if self.max_value is not None and value > self.max_value:
            out += (value - self.max_value) / max(abs(self.max_value), 1e-12)
        if self.min_value is not None and value < self.min_value:
            out += (self.min_value - value) / max(abs(self.min_value), 1e-12)
        return out

    def repair(self, mm: Any) -> bool:
        """Try to bring a model within the bound in place; ``True`` if something changed."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_value={self.max_value}, min_value={self.min_value})"


@register_objective("accuracy")
class AccuracyObjective(Objective):
    """Validation accuracy (classification), in [0, 1]."""

    direction = "max"
    bounds = (1.0, 0.0)

    def _evaluate(self, ctx: EvalContext) -> float:
        return (ctx.outputs.argmax(dim=1) == ctx.targets).float().mean().item()


@register_objective("r2")
class R2Objective(Objective):
    """Validation coefficient of determination (regression), averaged over targets."""

    direction = "max"
    bounds = (1.0, 0.0)

    def _evaluate(self, ctx: EvalContext) -> float:
        y = ctx.targets.reshape(ctx.outputs.shape).double()
        residual = (ctx.outputs.double() - y).pow(2).sum(dim=0)
        total = (y - y.mean(dim=0)).pow(2).sum(dim=0).clamp_min(1e-12)
        return (1.0 - residual / total).mean().item()


@register_objective("mse")
class MSEObjective(Objective):
    """Validation mean squared error (regression)."""

    direction = "min"
    bounds = (0.0, None)

    def _evaluate(self, ctx: EvalContext) -> float:
        y = ctx.targets.reshape(ctx.outputs.shape)
        return (ctx.outputs.float() - y.float()).pow(2).mean().item()


@register_objective("parameters")
class ParametersObjective(Objective):
    """Number of trainable parameters; ``repair`` prunes to fit ``max_value``."""

    direction = "min"
    needs_training = False
    bounds = (0.0, None)

    def _evaluate(self, ctx: EvalContext) -> float:
        return sum(p.numel() for p in ctx.model.parameters() if p.requires_grad)

    def repair(self, mm: Any) -> bool:
        if self.max_value is None or mm.n_parameters() <= self.max_value:
            return False
        for _ in range(10):
            mm.prune(0.2)
            if mm.n_parameters() <= self.max_value:
                break
        return True


def count_flops(model: torch.nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one inference forward on one sample (``torch.utils.flop_counter``).

    Example:
        >>> count_flops(torch.nn.Linear(10, 5), torch.zeros(1, 10))
        100
    """
    x = example_input[:1]
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x.to(next(iter(model.parameters()), x).device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@register_objective("flops")
class FlopsObjective(Objective):
    """FLOPs per sample of an inference forward (2 per multiply-add; batch of 1).

    ``repair`` prunes a model over ``max_value`` down to it (utility-ranked channels).
    """

    direction = "min"
    needs_training = False
    bounds = (0.0, None)

    def _evaluate(self, ctx: EvalContext) -> float:
        return count_flops(ctx.model, ctx.example_input)

    def repair(self, mm: Any) -> bool:
        if self.max_value is None or count_flops(mm, mm.example_inputs[0]) <= self.max_value:
            return False
        batch = int(mm.example_inputs[0].shape[0])
        mm.prune(flops=self.max_value * batch)
        return True


@register_objective("latency")
class LatencyObjective(Objective):
    """Measured milliseconds of a batch-1 forward on the evaluation device (noisy)."""

    direction = "min"
    needs_training = False
    bounds = (0.0, None)

    def _evaluate(self, ctx: EvalContext) -> float:
        from mutnas_torch.energy import latency_ms

        return latency_ms(ctx.model, ctx.example_input[:1], repeats=3, min_time_s=0.01).value


@register_objective("energy")
class EnergyObjective(Objective):
    """Joules per inference sample: measured with a real meter if ``measure``, else
    predicted from counted costs (deterministic, cheap; the default)."""

    direction = "min"
    needs_training = False
    bounds = (0.0, None)

    def __init__(self, *, measure: bool = False, max_value=None, min_value=None):
        super().__init__(max_value=max_value, min_value=min_value)
        self.measure = measure

    def _evaluate(self, ctx: EvalContext) -> float:
        from mutnas_torch import energy

        if self.measure:
            return energy.energy_per_inference_j(ctx.model, ctx.example_input).value
        device = next(iter(ctx.model.parameters()), ctx.example_input).device.type
        predictor = energy.AnalyticPredictor(device)
        return energy.energy_per_inference_j(
            ctx.model, ctx.example_input[:1], predictor=predictor
        ).value


def get_objective(spec: str | Objective) -> Objective:
    """An objective by registered name, or the object itself.

    Example:
        >>> get_objective("flops").direction
        'min'
        >>> get_objective("acuracy")
        Traceback (most recent call last):
        ...
        evolve.errors.ConfigError: unknown objective 'acuracy'; use one of accuracy, energy, flops, latency, mse, parameters, r2 or an Objective object
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str) and spec in OBJECTIVES:
        return OBJECTIVES[spec]()
    raise ConfigError(
        f"unknown objective {spec!r}; use one of {', '.join(sorted(OBJECTIVES))} "
        f"or an Objective object"
    )


class ObjectiveSet:
    """The objectives of a search and how candidates compare on them.

    Args:
        objectives: names or :class:`Objective` objects; the first is the primary one
            (``result.best`` in Pareto mode).
        weights: ``None`` for Pareto mode (NSGA-II ranks); else one weight per objective
            for scalarized mode: fitness = sum(w * value), maximized objectives counted
            positive and minimized ones negative.

    Example:
        >>> objs = ObjectiveSet(["accuracy", "flops"])
        >>> objs.names, objs.mode
        (('accuracy', 'flops'), 'pareto')
        >>> objs.matrix([{"accuracy": 0.9, "flops": 100.0}, None]).tolist()
        [[-0.9, 100.0], [inf, inf]]
    """

    def __init__(self, objectives: Sequence[str | Objective], weights=None):
        if isinstance(objectives, str | Objective):
            objectives = [objectives]
        if not objectives:
            raise ConfigError("objectives is empty; name at least one, e.g. ('accuracy',)")
        self.objectives = tuple(get_objective(o) for o in objectives)
        self.names = tuple(o.name for o in self.objectives)
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"objectives repeat a name: {self.names}")
        self.weights = None if weights is None else self._weights(weights)
        self.mode = "pareto" if self.weights is None else "weighted"
        self.signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in self.objectives])

    def _weights(self, weights) -> np.ndarray:
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(self.names))
            if unknown:
                raise ConfigError(f"weights name unknown objectives {unknown}; use {self.names}")
            weights = [weights.get(n, 0.0) for n in self.names]
        w = np.asarray(weights, dtype=float)
        if w.shape != (len(self.names),) or not np.all(np.isfinite(w)) or np.all(w == 0):
            raise ConfigError(
                f"weights must give one finite number per objective {self.names}, not all zero"
            )
        return w

    def matrix(self, scores: Sequence[Mapping[str, float] | None]) -> np.ndarray:
        """Scores as a minimization matrix (maximized objectives negated; missing: inf)."""
        F = np.full((len(scores), len(self.names)), np.inf)
        for i, s in enumerate(scores):
            if s is not None and all(_finite(s.get(n)) for n in self.names):
                F[i] = [s[n] for n in self.names]
                F[i] *= self.signs
        return F

    def fitness(self, scores: Mapping[str, float]) -> float:
        """Scalar fitness (higher is better): the weighted sum, or the primary objective."""
        row = self.matrix([scores])[0]
        if not np.all(np.isfinite(row)):
            return -math.inf
        if self.weights is None:
            return float(-row[0])
        return float(-(row @ self.weights))

    def violation(self, scores: Sequence[Mapping[str, float] | None]) -> np.ndarray:
        """Total relative bound violation of each score dict (0: feasible)."""
        out = np.zeros(len(scores))
        for i, s in enumerate(scores):
            for o in self.objectives:
                if s is not None and _finite(s.get(o.name)):
                    out[i] += o.excess(s[o.name])
        return out

    def ranks(self, scores: Sequence[Mapping[str, float] | None], *, pareto=None) -> np.ndarray:
        """Preference rank of each score dict (0 = best); see :func:`preference_ranks`."""
        pareto = self.mode == "pareto" if pareto is None else pareto
        return preference_ranks(
            self.matrix(scores), None if pareto else self.weights, self.violation(scores)
        )

    def cheap(self) -> tuple[Objective, ...]:
        """Objectives computable without training."""
        return tuple(o for o in self.objectives if not o.needs_training)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
