"""Training and scoring one candidate, with failure detection.

A :class:`TrainSession` trains a model for a number of steps of one learning-rate
schedule, possibly in two parts (up to the culling point, then on), and scores it on the
validation data. Every failure becomes a :class:`~evolve.errors.CandidateFailedError`
with a one-line reason: a non-finite loss, running out of (GPU) memory, overrunning the
time budget, a non-finite score.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

import torch

from evolve.candidate import Candidate
from evolve.errors import CandidateFailedError
from evolve.objectives import EvalContext
from evolve.problem import Problem

__all__ = ["TrainSession", "deterministic_kernels", "predict", "score_cheap", "score_trained"]


def _scheduler(name: str, optimizer, lr: float, n_steps: int):
    if name == "onecycle" and n_steps >= 8:  # shorter: OneCycleLR's warm-up has no step
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=lr, total_steps=n_steps, pct_start=0.25
        )
    if name in ("onecycle", "cosine"):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n_steps)
    return None


@contextlib.contextmanager
def deterministic_kernels(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """cuDNN in deterministic mode (no benchmark autotuning) on CUDA, restored after.

    Example:
        >>> with deterministic_kernels(torch.device("cpu")):
        ...     pass
    """
    if not enabled or device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    old = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = old


def _move_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                state[key] = value.to(device)


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Outputs of ``model`` on ``x`` in eval mode, without gradients, batch by batch.

    Example:
        >>> predict(torch.nn.Linear(3, 2), torch.zeros(5, 3)).shape
        torch.Size([5, 2])
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", ())
    return isinstance(err, oom) or "out of memory" in str(err).lower()


class TrainSession:
    """Training state of one candidate across the parts of one evaluation.

    Args:
        candidate: its model is trained in place (moved to the problem's device).
        problem: data, loss, recipe.
        n_steps: length of the learning-rate schedule.
        seed: seeds the data order and any randomness in the forward (dropout).
    """

    def __init__(self, candidate: Candidate, problem: Problem, *, n_steps: int, seed: int):
        self.candidate, self.problem = candidate, problem
        self.model = candidate.model.to(problem.device)
        self.n_steps, self.seed = n_steps, seed
        hp = candidate.hparams
        self.optimizer = hp.make_optimizer(self.model.parameters())
        self.scheduler = _scheduler(problem.training.schedule, self.optimizer, hp.lr, n_steps)
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_size = min(hp.batch_size, problem.n_train)
        self.step, self.seconds = 0, 0.0
        self._order, self._position = torch.empty(0, dtype=torch.long), 0

    def _batch(self) -> torch.Tensor:
        if self._position + self.batch_size > len(self._order):
            self._order = torch.randperm(self.problem.n_train, generator=self.generator)
            self._position = 0
        index = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return index.to(self.problem.device)

    def run(self, until: int) -> None:
        """Train up to step ``until`` (of ``n_steps``).

        Raises:
            CandidateFailedError: non-finite loss, out of memory, or time budget exceeded.
        """
        try:
            self._run(until)
        except CandidateFailedError:
            raise
        except Exception as err:
            if _is_oom(err):
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                raise CandidateFailedError(
                    f"out of memory on {self.problem.device} at step {self.step}: {err}"
                ) from err
            raise

    def _run(self, until: int) -> None:
        cfg, model = self.problem.training, self.model
        x, y = self.problem.data("train")
        model.to(self.problem.device).train()  # back from the CPU after a pause
        _move_optimizer(self.optimizer, self.problem.device)
        devices = [self.problem.device] if self.problem.device.type == "cuda" else []
        start = time.perf_counter()
        with (
            torch.random.fork_rng(devices=devices),
            deterministic_kernels(self.problem.device, cfg.deterministic),
        ):
            torch.manual_seed(self.seed + self.step)
            while self.step < until:
                index = self._batch()
                loss = self.problem.loss(model(x[index]), y[index])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                self._check(loss, start, until)
        self.seconds += time.perf_counter() - start

    def _check(self, loss: torch.Tensor, start: float, until: int) -> None:
        cfg = self.problem.training
        if (self.step % cfg.check_every == 0 or self.step == until) and not bool(
            torch.isfinite(loss)
        ):
            raise CandidateFailedError(
                f"loss became {loss.item()} at step {self.step}/{self.n_steps} "
                f"(lr {self.candidate.hparams.lr:g}); lower the learning rate"
            )
        elapsed = self.seconds + time.perf_counter() - start
        if cfg.max_seconds is not None and elapsed > cfg.max_seconds:
            raise CandidateFailedError(
                f"time budget of {cfg.max_seconds:g} s exceeded at step {self.step}/{self.n_steps}"
            )

    def pause(self) -> None:
        """Move the model and optimizer state back to the CPU (between the two parts)."""
        self.model.to("cpu").eval()
        _move_optimizer(self.optimizer, torch.device("cpu"))

    def score(self) -> dict[str, float]:
        """Validation scores of the objectives that need training."""
        return score_trained(self.model, self.problem)


def score_trained(model: torch.nn.Module, problem: Problem) -> dict[str, float]:
    """Scores of the objectives that need a trained model, on the validation split.

    Raises:
        CandidateFailedError: a score is not finite.
    """
    x, y = problem.data("valid")
    outputs = predict(model, x, problem.training.eval_batch_size)
    ctx = EvalContext(model.eval(), problem.example_input.to(x.device), problem.task, outputs, y)
    scores = {}
    for objective in problem.objectives.objectives:
        if objective.needs_training:
            scores[objective.name] = _finite(objective, objective.evaluate(ctx))
    return scores


def score_cheap(model: torch.nn.Module, problem: Problem) -> dict[str, float]:
    """Scores of the objectives that need no training (costs), on the model as it is."""
    device = next(iter(model.parameters()), problem.example_input).device
    ctx = EvalContext(model, problem.example_input.to(device), problem.task)
    return {o.name: _finite(o, o.evaluate(ctx)) for o in problem.objectives.cheap()}


def _finite(objective: Any, value: float) -> float:
    if not math.isfinite(value):
        raise CandidateFailedError(f"objective {objective.name} is {value}")
    return value
