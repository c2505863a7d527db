"""Frozen settings: a candidate's training hyper-parameters and the training recipe.

Both validate eagerly (a bad value raises :class:`~evolve.errors.ConfigError` with a
one-line fix) and round-trip through plain JSON (:meth:`to_dict` / ``from_dict``), which is
how they travel into the run directory and to other evaluation backends.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch

from evolve.errors import ConfigError

__all__ = ["OPTIMIZERS", "SCHEDULES", "Hyperparams", "TrainingConfig"]

#: Optimizers a candidate may use (``Hyperparams.optimizer``).
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
#: Learning-rate schedules of one evaluation (``TrainingConfig.schedule``).
SCHEDULES = ("onecycle", "cosine", "constant")


def _number(value: Any) -> bool:
    """A finite real number (``True`` is not one)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def _positive(name: str, value: float, *, integer: bool = False) -> None:
    bad = not _number(value) or not value > 0
    if integer and not bad:
        bad = int(value) != value
    if bad:
        kind = "a positive integer" if integer else "a positive finite number"
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def _within(name: str, value: float, low: float, high: float, *, closed: bool) -> None:
    """``low <= value < high`` (``low < value < high`` unless ``closed``)."""
    ok = _number(value) and (low <= value if closed else low < value) and value < high
    if not ok:
        bounds = f"[{low:g}, {high:g})" if closed else f"({low:g}, {high:g})"
        raise ConfigError(f"{name} must be a number in {bounds}, got {value!r}")


class _Plain:
    """``to_dict`` / ``from_dict`` for a flat frozen dataclass of JSON values."""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Rebuild from :meth:`to_dict`'s output (unknown keys raise ``ConfigError``)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} must be a JSON object, got {data!r:.40}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; known: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Hyperparams(_Plain):
    """A candidate's training hyper-parameters (mutated and crossed over with its graph).

    Attributes:
        optimizer: one of :data:`OPTIMIZERS`.
        lr: peak learning rate.
        batch_size: samples per step.
        weight_decay: decoupled for ``adamw``, L2 otherwise.

    Example:
        >>> hp = Hyperparams(lr=3e-3)
        >>> hp.optimizer, hp.lr, Hyperparams.from_dict(hp.to_dict()) == hp
        ('adam', 0.003, True)
    """

    optimizer: str = "adam"
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        _positive("lr", self.lr)
        _positive("batch_size", self.batch_size, integer=True)
        if not (_number(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The torch optimizer these settings describe.

        Example:
            >>> opt = Hyperparams("sgd", lr=0.1).make_optimizer(torch.nn.Linear(2, 1).parameters())
            >>> type(opt).__name__, opt.defaults["momentum"]
            ('SGD', 0.9)
        """
        wd = self.weight_decay
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=wd)
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=wd)
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=wd)
        return torch.optim.RMSprop(params, lr=self.lr, weight_decay=wd)


@dataclass(frozen=True)
class TrainingConfig(_Plain):
    """How each candidate is trained when it is evaluated.

    Children inherit their parents' trained weights, so every evaluation *continues*
    training: ``epochs`` (or ``steps``) is the budget of one evaluation, with its own
    learning-rate schedule (a warm restart per generation).

    Attributes:
        epochs: passes over the training data per evaluation (ignored if ``steps``).
        steps: optimizer steps per evaluation, instead of ``epochs``.
        initial_epochs: budget of the initial population's evaluation (default ``epochs``).
        schedule: one of :data:`SCHEDULES`; ``onecycle`` warms up for 25 % of the steps.
        label_smoothing: for classification losses.
        grad_clip: clip the gradient norm to this (``None``: no clipping).
        max_seconds: a candidate that trains longer fails ("time budget exceeded").
        cull_fraction: share of each generation's candidates stopped early ...
        cull_at: ... after this share of their budget, ranked on validation scores.
        eval_batch_size: batch size for validation predictions.
        check_every: steps between checks that the loss is finite.
        deterministic: deterministic cuDNN kernels on CUDA (same seed, same history; a
            little slower). CPU training is deterministic anyway.

    Example:
        >>> cfg = TrainingConfig(epochs=2, cull_fraction=0.25)
        >>> cfg.n_steps(n_train=1000, batch_size=100), cfg.cull_step(20)
        (20, 10)
    """

    epochs: float = 5.0
    steps: int | None = None
    initial_epochs: float | None = None
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    max_seconds: float | None = None
    cull_fraction: float = 0.0
    cull_at: float = 0.5
    eval_batch_size: int = 1024
    check_every: int = 10
    deterministic: bool = True

    def __post_init__(self) -> None:
        _positive("epochs", self.epochs)
        for name in ("steps", "initial_epochs", "grad_clip", "max_seconds"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name), integer=name == "steps")
        if not isinstance(self.schedule, str) or self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _within("label_smoothing", self.label_smoothing, 0.0, 1.0, closed=True)
        _within("cull_fraction", self.cull_fraction, 0.0, 1.0, closed=True)
        _within("cull_at", self.cull_at, 0.0, 1.0, closed=False)
        _positive("eval_batch_size", self.eval_batch_size, integer=True)
        _positive("check_every", self.check_every, integer=True)
        if not isinstance(self.deterministic, bool):
            raise ConfigError(f"deterministic must be true or false, got {self.deterministic!r}")

    def n_steps(self, n_train: int, batch_size: int, *, initial: bool = False) -> int:
        """Optimizer steps of one evaluation."""
        if self.steps is not None:
            return int(self.steps)
        epochs = self.initial_epochs if initial and self.initial_epochs else self.epochs
        per_epoch = max(1, n_train // min(batch_size, n_train))
        return max(1, math.ceil(epochs * per_epoch))

    def cull_step(self, n_steps: int) -> int:
        """The step after which weak candidates are culled (when ``cull_fraction > 0``)."""
        return min(n_steps - 1, max(1, round(n_steps * self.cull_at)))
