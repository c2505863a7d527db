"""Objective helpers a search calls per candidate: energy and latency, with their source.

Each returns an :class:`ObjectiveValue` ``(value, source)``: ``source`` is the meter's
(``"nvml"``, ``"rapl"``, ``"zeus"``) when the candidate was run and measured, and
``"estimated"`` when the value was predicted from counted costs (no run at all, so it
is cheap enough to screen offspring before training them).

To measure the energy of a candidate's own training, wrap the training loop::

    meter = auto_meter(device)
    with meter.window() as w:
        train(candidate)
    training_j = w.result.total_j   # w.result.source says how it was obtained
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch.utils._pytree import tree_flatten, tree_map

from mutnas_torch.energy.counting import count_costs
from mutnas_torch.energy.fallback import EstimatedMeter, auto_meter
from mutnas_torch.energy.meters import EnergyMeter
from mutnas_torch.energy.predictors import AnalyticPredictor
from mutnas_torch.energy.protocol import measure, time_per_call

__all__ = [
    "ObjectiveValue",
    "energy_per_inference_j",
    "latency_ms",
    "training_energy_j",
    "training_step",
]


class ObjectiveValue(NamedTuple):
    """An objective's value and how it was obtained (a meter's source or ``"estimated"``)."""

    value: float
    source: str


def _args(example_inputs: Any) -> tuple[Any, ...]:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _batch_size(example_inputs: Any) -> int:
    for leaf in tree_flatten(example_inputs)[0]:
        if isinstance(leaf, torch.Tensor) and leaf.dim() > 0:
            return int(leaf.shape[0])
    return 1


def _model_device(model: torch.nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _on(example_inputs: Any, device: torch.device) -> tuple[Any, ...]:
    return tree_map(
        lambda x: x.to(device) if isinstance(x, torch.Tensor) else x, _args(example_inputs)
    )


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for module, flag in flags.items():
            module.training = flag


def _resolve(
    model: torch.nn.Module, meter: EnergyMeter | None, predictor: AnalyticPredictor | None
) -> tuple[EnergyMeter | None, AnalyticPredictor | None]:
    """``(meter, None)`` to measure, ``(None, predictor)`` to predict."""
    if meter is None and predictor is not None:
        return None, predictor
    meter = meter if meter is not None else auto_meter(_model_device(model))
    if isinstance(meter, EstimatedMeter):
        return None, predictor if predictor is not None else meter.predictor
    return meter, None


def energy_per_inference_j(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    meter: EnergyMeter | None = None,
    predictor: AnalyticPredictor | None = None,
    timed: bool = False,
    min_window_s: float = 1.0,
    repeats: int = 3,
) -> ObjectiveValue:
    """Joules per sample of an inference forward (batch = first dim of the first input).

    With a real meter (given, or found by :func:`auto_meter` on the model's device)
    the model runs in eval mode without gradients under :func:`measure`; with a
    predictor alone, or when only an estimated meter is available, the value is
    predicted from :func:`count_costs` and nothing runs, unless ``timed``: then the
    forward is timed briefly (no energy counter, ~0.3 s) and the latency-informed
    model predicts, which is markedly more accurate once calibrated.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
        >>> value, source = energy_per_inference_j(net, torch.zeros(4, 3, 32, 32),
        ...                                        predictor=AnalyticPredictor("cpu"))
        >>> source, value > 0
        ('estimated', True)
    """
    batch = _batch_size(example_inputs)
    meter, predictor = _resolve(model, meter, predictor)
    args = _on(example_inputs, _model_device(model))
    with _eval_mode(model), torch.no_grad():
        if predictor is not None:
            costs = count_costs(model, example_inputs)
            seconds = _time(lambda: model(*args), model) if timed else None
            return ObjectiveValue(
                predictor.predict_energy(costs, time_s=seconds) / batch, "estimated"
            )
        result = measure(lambda: model(*args), meter, min_window_s=min_window_s, repeats=repeats)
    return ObjectiveValue(result.total_j / batch, result.source)


def _time(fn: Callable[[], object], model: torch.nn.Module) -> float:
    device = _model_device(model)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return time_per_call(fn, synchronize=synchronize)


def _sum_loss(output: Any) -> torch.Tensor:
    leaves = [x for x in tree_flatten(output)[0] if isinstance(x, torch.Tensor)]
    return sum(x.float().mean() for x in leaves if x.is_floating_point())


def training_step(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    lr: float = 0.01,
) -> Callable[[], None]:
    """A function doing one SGD step (momentum 0.9) of ``model`` on fixed inputs.

    The loss is ``loss_fn(output)``, by default the sum of the means of the floating
    outputs; inputs are moved to the model's device once.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> before = net.weight.detach().clone()
        >>> training_step(net, torch.ones(3, 4))()
        >>> bool((net.weight != before).any())
        True
    """
    args = _on(example_inputs, _model_device(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = loss_fn or _sum_loss

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(*args)).backward()
        optimizer.step()

    return step


def training_energy_j(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    n_samples: int = 1,
    meter: EnergyMeter | None = None,
    predictor: AnalyticPredictor | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    timed: bool = False,
    min_window_s: float = 1.0,
    repeats: int = 3,
) -> ObjectiveValue:
    """Joules to train on ``n_samples`` samples: per-sample step energy times ``n_samples``.

    Measured with a real meter on a deep copy of the model (SGD with momentum, loss
    ``loss_fn(output)`` or the mean of the outputs), so the candidate's weights are
    untouched; predicted from ``count_costs(..., training=True)`` otherwise, with a
    brief timing of a step on the copy first if ``timed``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
        >>> x = torch.zeros(4, 3, 32, 32)
        >>> train = training_energy_j(net, x, predictor=AnalyticPredictor("cpu")).value
        >>> infer = energy_per_inference_j(net, x, predictor=AnalyticPredictor("cpu")).value
        >>> 1.5 < train / infer < 4
        True
    """
    batch = _batch_size(example_inputs)
    meter, predictor = _resolve(model, meter, predictor)
    if predictor is not None and not timed:
        costs = count_costs(model, example_inputs, training=True)
        return ObjectiveValue(predictor.predict_energy(costs) / batch * n_samples, "estimated")
    clone = copy.deepcopy(model).train()
    step = training_step(clone, example_inputs, loss_fn=loss_fn)
    if predictor is not None:
        costs = count_costs(model, example_inputs, training=True)
        joules = predictor.predict_energy(costs, time_s=_time(step, clone))
        return ObjectiveValue(joules / batch * n_samples, "estimated")
    result = measure(step, meter, min_window_s=min_window_s, repeats=repeats)
    return ObjectiveValue(result.total_j / batch * n_samples, result.source)


def latency_ms(
    model: torch.nn.Module,
    example_inputs: Any,
    *,
    device: str | torch.device | None = None,
    predictor: AnalyticPredictor | None = None,
    repeats: int = 5,
    min_time_s: float = 0.05,
) -> ObjectiveValue:
    """Milliseconds of one inference forward on ``example_inputs`` (the whole batch).

    Measured (``source="measured"``: median of ``repeats`` timings of at least
    ``min_time_s``, synchronised on CUDA) on ``device`` (default: the model's; a copy
    is moved there if it differs), or predicted from counted costs with ``predictor``.

    Example:
        >>> net = torch.nn.Linear(16, 4)
        >>> value, source = latency_ms(net, torch.zeros(8, 16), repeats=2, min_time_s=0.001)
        >>> source, value > 0
        ('measured', True)
    """
    if predictor is not None:
        costs = count_costs(model, example_inputs)
        return ObjectiveValue(predictor.predict_time(costs) * 1e3, "estimated")
    target = torch.device(device) if device is not None else _model_device(model)
    if target != _model_device(model):
        model = copy.deepcopy(model).to(target)
    args = _on(example_inputs, target)
    with _eval_mode(model), torch.no_grad():
        seconds = time_per_call(
            lambda: model(*args),
            synchronize=lambda: torch.cuda.synchronize(target) if target.type == "cuda" else None,
            min_time_s=min_time_s,
            repeats=repeats,
        )
    return ObjectiveValue(seconds * 1e3, "measured")
