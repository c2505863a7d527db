"""Evaluators: train and score a batch of candidates, culling weak ones part-way.

:meth:`Evaluator.evaluate` is the shared, backend-independent part: it describes each
candidate's training as a :class:`TrainJob` (plain JSON: id, seed, settings, steps),
runs the jobs up to the culling point, culls the weakest share on their validation
scores, runs the rest to the end, and records the outcomes. Backends only implement
:meth:`Evaluator.run` ("run these jobs to their ``stop`` step, return the results in
order"). Seeds come from the search seed and the candidate id, and the culling decision
is taken here on all results at once, so the history is the same whatever the backend
and the order it trains in. An out-of-process backend ships each job with its model file
(:func:`mutnas_torch.io.save`) and returns the trained model file with the result.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evolve.candidate import Candidate, candidate_seed
from evolve.config import Hyperparams
from evolve.errors import CandidateFailedError
from evolve.problem import Problem
from evolve.training import TrainSession, score_cheap

__all__ = ["Evaluator", "JobResult", "SerialEvaluator", "TrainJob"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainJob:
    """One candidate's training, as data: train steps ``[start, stop)`` of a schedule of
    ``n_steps`` steps; ``stop < n_steps`` is the culling point."""

    candidate_id: int
    seed: int
    hparams: Hyperparams
    n_steps: int
    stop: int

    def to_dict(self) -> dict:
        """JSON-ready form (what an out-of-process backend sends)."""
        return {**dataclasses.asdict(self), "hparams": self.hparams.to_dict()}


@dataclass
class JobResult:
    """What running a job gave: scores at ``stop``, or a failure reason."""

    candidate_id: int
    ok: bool
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    steps: int = 0
    seconds: float = 0.0


class Evaluator:
    """Base class: subclasses implement :meth:`run` (and may override :meth:`close`)."""

    def evaluate(
        self,
        candidates: Sequence[Candidate],
        problem: Problem,
        *,
        seed: int = 0,
        initial: bool = False,
        on_result: Callable[[Candidate], None] | None = None,
    ) -> None:
        """Train and score every pending candidate in place (status, scores, reason).

        Args:
            candidates: the batch; only ``status == "pending"`` ones are trained.
            problem: the data and recipe.
            seed: the search seed (with each candidate id, it seeds its training).
            initial: use the initial population's budget.
            on_result: called with each candidate once its outcome is final.
        """
        notify = on_result or (lambda c: None)
        pending = [c for c in candidates if c.status == "pending"]
        for c in pending:
            self._screen(c, problem, notify)
        live = [c for c in pending if c.status == "pending"]
        jobs = {c.id: self._job(c, problem, seed, initial) for c in live}
        cfg = problem.training
        try:
            if cfg.cull_fraction > 0 and len(live) >= 2:
                cut = {
                    i: dataclasses.replace(j, stop=cfg.cull_step(j.n_steps))
                    for i, j in jobs.items()
                }
                results = self.run([cut[c.id] for c in live], live, problem)
                live = self._cull(live, results, problem, notify)
            results = self.run([jobs[c.id] for c in live], live, problem)
            for c, r in zip(live, results, strict=True):
                self._record(c, r, problem, notify)
        finally:
            self.close()

    @staticmethod
    def _job(c: Candidate, problem: Problem, seed: int, initial: bool) -> TrainJob:
        n = problem.training.n_steps(problem.n_train, c.hparams.batch_size, initial=initial)
        return TrainJob(c.id, candidate_seed(seed, c.id), c.hparams, n, n)

    @staticmethod
    def _screen(c: Candidate, problem: Problem, notify) -> None:
        """Cost objectives and their bounds, before any training."""
        try:
            missing = [o.name for o in problem.objectives.cheap() if o.name not in c.scores]
            if missing:
                c.scores.update(score_cheap(c.model, problem))
            for o in problem.objectives.cheap():
                reason = o.violation(c.scores[o.name])
                if reason:
                    raise CandidateFailedError(reason)
        except CandidateFailedError as err:
            c.fail(err.reason)
            notify(c)

    @staticmethod
    def _record(c: Candidate, r: JobResult, problem: Problem, notify) -> None:
        c.train_seconds += r.seconds
        c.train_steps += r.steps
        if not r.ok:
            c.fail(r.reason or "failed")
        else:
            c.scores.update(r.scores)
            c.status = "ok"
            bounds = (o.violation(c.scores[o.name]) for o in problem.objectives.objectives)
            reason = next((b for b in bounds if b), None)
            if reason:  # kept: constraint domination ranks it after the feasible ones
                c.reason = f"infeasible: {reason}"
        notify(c)

    def _cull(self, live, results, problem: Problem, notify) -> list[Candidate]:
        survivors = []
        for c, r in zip(live, results, strict=True):
            if r.ok:
                survivors.append((c, r))
            else:
                self._record(c, r, problem, notify)
        n_cull = math.floor(len(survivors) * problem.training.cull_fraction)
        ranks = problem.objectives.ranks([{**c.scores, **r.scores} for c, r in survivors])
        keep = []
        for (c, r), rank in zip(survivors, ranks, strict=True):
            c.train_steps += r.steps
            c.train_seconds += r.seconds
            if rank >= len(survivors) - n_cull:
                c.scores.update(r.scores)
                c.fail(
                    f"culled after {r.steps} steps: rank {rank + 1} of {len(survivors)}", "culled"
                )
                notify(c)
            else:
                keep.append(c)
        return keep

    def run(self, jobs: Sequence[TrainJob], candidates: Sequence[Candidate], problem: Problem):
        """Run each job to its ``stop`` step; return one :class:`JobResult` per job, in order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds between the two parts of an evaluation."""


class SerialEvaluator(Evaluator):
    """Trains candidates one after the other in this process, on the problem's device.

    Example:
        >>> SerialEvaluator()
        SerialEvaluator()
    """

    def __init__(self):
        self._sessions: dict[int, TrainSession] = {}

    def run(self, jobs, candidates, problem) -> list[JobResult]:
        return [self._run_one(j, c, problem) for j, c in zip(jobs, candidates, strict=True)]

    def _run_one(self, job: TrainJob, c: Candidate, problem: Problem) -> JobResult:
        session = self._sessions.get(job.candidate_id)
        before = (session.step, session.seconds) if session else (0, 0.0)
        try:
            if session is None:
                session = TrainSession(c, problem, n_steps=job.n_steps, seed=job.seed)
                self._sessions[job.candidate_id] = session
            session.run(job.stop)
            scores = session.score()
            ok, reason = True, None
        except CandidateFailedError as err:
            ok, reason, scores = False, err.reason, {}
        except Exception as err:  # an unexpected error fails this candidate, not the search
            log.warning("candidate %s failed: %r", job.candidate_id, err, exc_info=True)
            ok, reason, scores = False, f"{type(err).__name__}: {err}", {}
        steps = session.step - before[0] if session else 0
        seconds = session.seconds - before[1] if session else 0.0
        if session is not None:
            session.pause()
            if not ok or job.stop >= job.n_steps:
                self._sessions.pop(job.candidate_id, None)
        return JobResult(job.candidate_id, ok, scores, reason, steps, seconds)

    def close(self) -> None:
        for session in self._sessions.values():
            session.pause()
        self._sessions.clear()

    def __repr__(self) -> str:
        return "SerialEvaluator()"
