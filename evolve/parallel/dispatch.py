"""The scheduler side of every out-of-process backend: jobs to free workers, faults survived.

:class:`ParallelEvaluator` implements :meth:`evolve.Evaluator.run` over a pool of
persistent workers (processes or Ray actors, see :class:`WorkerPool`). It hands each job
to a free worker with the candidate's model file, collects the answers in any order and
returns them in the jobs' order, so :meth:`~evolve.Evaluator.evaluate` (culling, records)
stays the same for every backend and the search history does not depend on it.

Faults: a worker that dies (killed process, lost Ray node) is started again, and the job
it held is retried on another worker; a job whose workers die ``max_attempts`` times is
failed with the reasons. A job running longer than ``timeout_s`` has its worker killed
and fails ("timed out"). Finished results are kept whatever happens afterwards.
"""

from __future__ import annotations

import abc
import collections
import logging
import math
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evolve.candidate import Candidate
from evolve.errors import ConfigError, EvolveError
from evolve.evaluator import Evaluator, JobResult, TrainJob
from evolve.problem import Problem

__all__ = ["ParallelEvaluator", "PoolEvent", "WorkerError", "WorkerPool"]

log = logging.getLogger(__name__)

_KILL_WAIT_S = 30.0


class WorkerError(EvolveError):
    """Workers cannot run the search: one failed to start (its traceback is in the
    message), or every worker slot died while starting."""


@dataclass
class PoolEvent:
    """Something a pool reports: ``ready`` (data: pid, device, fingerprint), ``answer``
    (a worker's JSON answer), ``died`` (data: reason) or ``error`` (a start failed)."""

    kind: str
    slot: int
    data: dict = field(default_factory=dict)


class WorkerPool(abc.ABC):
    """A backend's workers, addressed by slot number; the scheduler does the rest."""

    n_slots: int

    @abc.abstractmethod
    def start(self, slot: int) -> None:
        """Start (or restart) the worker of ``slot``; it reports ``ready`` when it is."""

    @abc.abstractmethod
    def send(self, slot: int, message: dict) -> None:
        """Send a message; a dead worker's message is dropped (its death is reported)."""

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[PoolEvent]:
        """Events that happened, waiting up to ``timeout`` seconds for the first one."""

    @abc.abstractmethod
    def kill(self, slot: int) -> None:
        """Kill the worker of ``slot`` now (its death is then reported)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop every worker."""

    def label(self, slot: int) -> str:
        """How messages name the worker of ``slot``."""
        return f"worker {slot}"


@dataclass(eq=False)
class _Task:
    job: TrainJob
    candidate: Candidate
    attempts: int = 0
    reasons: list[str] = field(default_factory=list)
    tried: set[int] = field(default_factory=set)
    key: str | None = None
    started: float = 0.0
    result: JobResult | None = None


@dataclass(eq=False)
class _Slot:
    index: int
    state: str = "starting"  # starting, idle, busy, killing, gone
    incarnation: int = 0
    task: _Task | None = None
    since: float = field(default_factory=time.monotonic)
    failures: int = 0  # deaths before becoming ready, in a row
    pid: int | None = None


def _cleanup(pool: WorkerPool | None, spool: Path) -> None:
    if pool is not None:
        pool.stop()
    shutil.rmtree(spool, ignore_errors=True)


class ParallelEvaluator(Evaluator):
    """Base of the process and Ray evaluators: persistent workers, retries, timeouts.

    Workers start with the first evaluation and live until :meth:`shutdown` (or the end
    of the program, or the ``with`` block); a search on another problem restarts them.
    A synchronous search's history is the serial evaluator's with torch on as many
    threads as each worker (``threads``, default 1): float sums depend on the thread
    count, nothing else does.

    Args:
        data: how workers get the data: ``None`` sends the search's own tensors once
            (a file, or Ray's object store), a dataset name or a
            :class:`~evolve.parallel.DatasetFactory` has each worker build them itself.
        timeout_s: a job (one candidate's training part) running longer fails and its
            worker is restarted; ``None``: no limit.
        max_attempts: workers that may die under one job before it fails (2: one retry).
        start_timeout_s: a worker not ready after this long is killed and started again.
    """

    def __init__(
        self,
        *,
        data: Any = None,
        timeout_s: float | None = None,
        max_attempts: int = 2,
        start_timeout_s: float = 300.0,
    ):
        self.data = data
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.start_timeout_s = start_timeout_s
        self._pool: WorkerPool | None = None
        self._slots: list[_Slot] = []
        self._key: tuple | None = None
        self._problem: Problem | None = None
        self._fingerprint: str | None = None
        self._spool: Path | None = None
        self._finalizer = None
        self._waiting: collections.deque[_Task] = collections.deque()
        self._finished: list[_Task] = []
        self._origin: dict[int, Path] = {}
        self._stops: dict[int, list[int]] = {}
        self._holders: dict[int, tuple[int, int]] = {}
        #: faults seen: ``{"candidate_id", "event": "retry" | "failed" | "timeout", "reason"}``
        self.faults: list[dict] = []
        #: per job: ``wall_s`` from dispatch to weights loaded here, ``worker_s`` in the
        #: worker (the difference is the scheduling overhead: model file, messages) and
        #: ``worker_cpu_s``, the worker's CPU time (less than ``worker_s``: it waited)
        self.timings: list[dict] = []

    # ------------------------------------------------------------ backend hooks
    @abc.abstractmethod
    def _make_pool(self, problem: Problem, spool: Path) -> WorkerPool:
        """Start nothing yet; return the pool for ``problem`` (slots sized)."""

    # ------------------------------------------------------------ life cycle
    def _validate(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        for name in ("timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")

    def start(self, problem: Problem) -> None:
        """Start the workers for ``problem`` (done by the first evaluation anyway)."""
        if self._pool is not None and problem is self._problem:
            return
        key = (problem.fingerprint(), repr(problem.training), problem.objectives.names)
        key += (str(problem.device), problem.task)
        if self._pool is not None and key == self._key:
            self._problem = problem
            return
        self._validate()
        self.shutdown()
        self._spool = Path(tempfile.mkdtemp(prefix="mutnas-workers-"))
        self._problem, self._key, self._fingerprint = problem, key, key[0]
        pool = self._make_pool(problem, self._spool)
        self._pool = pool
        self._finalizer = weakref.finalize(self, _cleanup, pool, self._spool)
        self._slots = [_Slot(i) for i in range(pool.n_slots)]
        for slot in self._slots:
            pool.start(slot.index)
        log.info("started %d %s workers", pool.n_slots, type(self).__name__)

    def wait_ready(self, problem: Problem, timeout: float | None = None) -> int:
        """Start the workers for ``problem`` and wait until each is ready (or gone, or
        ``timeout`` seconds passed); the number ready. Evaluations do not need this
        (they start on the first ready worker); benchmarks do."""
        self.start(problem)
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        busy = ("starting", "killing")
        while any(s.state in busy for s in self._slots) and time.monotonic() < deadline:
            self._step(min(0.2, max(0.0, deadline - time.monotonic())))
        return sum(s.state == "idle" for s in self._slots)

    def shutdown(self) -> None:
        """Stop the workers and delete their files (a later evaluation starts new ones)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool, self._finalizer, self._problem, self._key = None, None, None, None
        self._slots, self._waiting, self._finished = [], collections.deque(), []
        self._origin, self._stops, self._holders = {}, {}, {}

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def close(self) -> None:
        """End of an evaluation: workers drop kept sessions; the workers stay up."""
        for slot in self._slots:
            if slot.state == "idle" and self._pool is not None:
                self._pool.send(slot.index, {"op": "clear"})
        for cid in list(self._origin):
            self._forget(cid)
        self._holders.clear()

    # ------------------------------------------------------------ Evaluator.run
    def run(self, jobs: Sequence[TrainJob], candidates: Sequence[Candidate], problem: Problem):
        """Run each job on a free worker; the results in the jobs' order."""
        self.start(problem)
        tasks = [_Task(j, c) for j, c in zip(jobs, candidates, strict=True)]
        self._waiting.extend(sorted(tasks, key=self._cost, reverse=True))
        while any(t.result is None for t in tasks):
            self._step()
        self._finished = [t for t in self._finished if t not in tasks]
        return [t.result for t in tasks]

    def _cost(self, task: _Task) -> float:
        """A job's rough cost (FLOPs or parameters, times samples): the longest are sent
        first, so that a batch does not end waiting on one long job started last."""
        c = task.candidate
        per_sample = c.scores.get("flops") or c.model.n_parameters()
        done = max(self._stops.get(task.job.candidate_id, [0]))
        return float(per_sample) * c.hparams.batch_size * (task.job.stop - done)

    # ------------------------------------------------------------ one at a time (async)
    def submit(self, job: TrainJob, candidate: Candidate, problem: Problem) -> None:
        """Queue one job; :meth:`wait` returns it once its result is in."""
        self.start(problem)
        self._waiting.append(_Task(job, candidate))

    def wait(self, timeout: float | None = None) -> list[tuple[Candidate, JobResult]]:
        """Results of submitted jobs, waiting for at least one (or ``timeout`` seconds)."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while not self._finished and time.monotonic() < deadline:
            self._step(min(0.2, max(0.0, deadline - time.monotonic())))
            if not self.n_running:  # nothing to wait for: that step took in the events
                break
        done, self._finished = self._finished, []
        return [(t.candidate, t.result) for t in done]

    @property
    def n_running(self) -> int:
        """Jobs submitted and not finished yet (queued or training)."""
        return len(self._waiting) + sum(s.task is not None for s in self._slots)

    @property
    def n_idle(self) -> int:
        """Workers ready for a job, less the jobs queued for them."""
        idle = sum(s.state == "idle" for s in self._slots)
        return max(0, idle - len(self._waiting))

    @property
    def n_slots(self) -> int:
        """Worker slots (0 before the first evaluation)."""
        return len(self._slots)

    def workers(self) -> list[dict]:
        """Each worker's ``slot``, ``state``, ``pid`` and ``candidate_id`` (if training).

        Example:
            >>> from evolve.parallel import ProcessEvaluator
            >>> ProcessEvaluator(2).workers()
            []
        """
        return [
            {
                "slot": s.index,
                "state": s.state,
                "pid": s.pid,
                "candidate_id": s.task.job.candidate_id if s.task else None,
            }
            for s in self._slots
        ]

    # ------------------------------------------------------------ scheduling loop
    def _step(self, max_wait: float = 0.2) -> None:
        self._assign()
        deadlines = [s.since + self._limit(s) for s in self._slots if self._limit(s)]
        wait = min([max_wait, *(d - time.monotonic() for d in deadlines)])
        for event in self._pool.poll(max(0.0, wait)):
            self._on_event(event)
        self._check_deadlines()
        if self._waiting and all(s.state == "gone" for s in self._slots):
            raise WorkerError(
                f"every {type(self).__name__} worker died while starting; "
                f"{len(self._waiting)} job(s) cannot run (see the log for the reasons; "
                f"a script using worker processes must start its search under "
                f"`if __name__ == '__main__':`)"
            )

    def _limit(self, slot: _Slot) -> float | None:
        if slot.state == "starting":
            return self.start_timeout_s
        if slot.state == "killing":
            return _KILL_WAIT_S
        return self.timeout_s if slot.state == "busy" else None

    def _assign(self) -> None:
        for task in list(self._waiting):
            slot = self._pick(task)
            if slot is not None:
                self._waiting.remove(task)
                self._dispatch(task, slot)

    def _pick(self, task: _Task) -> _Slot | None:
        holder = self._holders.get(task.job.candidate_id)
        if holder is not None:
            slot = self._slots[holder[0]]
            if slot.incarnation == holder[1] and slot.state in ("idle", "busy"):
                return slot if slot.state == "idle" else None  # it holds the session
        idle = [s for s in self._slots if s.state == "idle"]
        fresh = [s for s in idle if s.index not in task.tried]
        return (fresh or idle or [None])[0]

    def _dispatch(self, task: _Task, slot: _Slot) -> None:
        from mutnas_torch import io

        cid = task.job.candidate_id
        task.started = time.perf_counter()
        if cid not in self._origin:  # the model before this evaluation, for every part
            self._origin[cid] = io.save(task.candidate.model.module, self._spool / f"model-{cid}")
        task.key = uuid.uuid4().hex
        task.tried.add(slot.index)
        slot.state, slot.task, slot.since = "busy", task, time.monotonic()
        message = {
            "op": "run",
            "key": task.key,
            "job": task.job.to_dict(),
            "model": str(self._origin[cid]),
            "replay": self._stops.get(cid, []),
            "out": str(self._spool / f"weights-{task.key}.safetensors"),
            "keep": task.job.stop < task.job.n_steps,
        }
        self._pool.send(slot.index, message)
        log.debug("candidate %d (steps %d) -> worker %d", cid, task.job.stop, slot.index)

    def _on_event(self, event: PoolEvent) -> None:
        slot = self._slots[event.slot]
        if event.kind == "ready":
            self._on_ready(slot, event.data)
        elif event.kind == "died":
            self._on_death(slot, event.data.get("reason", "died"))
        elif event.kind == "error":
            self.shutdown()
            raise WorkerError(f"worker {event.slot} could not start:\n{event.data.get('error')}")
        elif event.data.get("op") == "result" and slot.task and slot.task.key == event.data["key"]:
            task, slot.task, slot.state = slot.task, None, "idle"
            self._finish(task, slot, event.data)

    def _on_ready(self, slot: _Slot, data: dict) -> None:
        if data.get("fingerprint") != self._fingerprint:
            self.shutdown()
            raise ConfigError(
                f"worker {slot.index} built other data than the search's (the data "
                f"fingerprints differ): make data={self.data!r} return exactly the search's "
                f"training and validation data (same seed and valid_fraction), or leave data=None"
            )
        slot.state, slot.failures, slot.pid = "idle", 0, data.get("pid")
        log.debug("worker %d ready (pid %s, %s)", slot.index, slot.pid, data.get("device"))

    def _finish(self, task: _Task, slot: _Slot, answer: dict) -> None:
        import safetensors.torch

        cid, job = task.job.candidate_id, task.job
        log.debug(
            "candidate %d <- worker %d: %s in %.3f s",
            cid,
            slot.index,
            "ok" if answer["ok"] else answer["reason"],
            answer["seconds"],
        )
        if answer["ok"] and answer.get("weights"):
            safetensors.torch.load_model(task.candidate.model.module, answer["weights"])
            Path(answer["weights"]).unlink(missing_ok=True)
        wall = time.perf_counter() - task.started
        self.timings.append(
            {
                "candidate_id": cid,
                "wall_s": wall,
                "worker_s": answer.get("worker_s", 0.0),
                "worker_cpu_s": answer.get("worker_cpu_s", 0.0),
            }
        )
        if answer.get("kept"):
            self._holders[cid] = (slot.index, slot.incarnation)
        else:
            self._holders.pop(cid, None)
        task.result = JobResult(
            cid,
            answer["ok"],
            answer["scores"],
            answer["reason"],
            answer["steps"],
            answer["seconds"],
        )
        if answer["ok"] and job.stop < job.n_steps:
            self._stops.setdefault(cid, []).append(job.stop)
        else:
            self._forget(cid)
        self._finished.append(task)

    def _forget(self, cid: int) -> None:
        origin = self._origin.pop(cid, None)
        if origin is not None:
            shutil.rmtree(origin, ignore_errors=True)
        self._stops.pop(cid, None)

    def _on_death(self, slot: _Slot, reason: str) -> None:
        task, was = slot.task, slot.state
        slot.task, slot.pid = None, None
        slot.incarnation += 1
        slot.failures = slot.failures + 1 if was == "starting" else 0
        if slot.failures >= 3:
            slot.state = "gone"
            log.error(
                "worker %d died %d times while starting; giving up on it: %s",
                slot.index,
                slot.failures,
                reason,
            )
        else:
            slot.state, slot.since = "starting", time.monotonic()
            self._pool.start(slot.index)
        if task is None:
            return
        task.attempts += 1
        task.reasons.append(reason)
        cid = task.job.candidate_id
        if task.attempts >= self.max_attempts:
            message = f"failed after {task.attempts} attempts: " + "; ".join(task.reasons)
            task.result = JobResult(cid, False, {}, message)
            self.faults.append({"candidate_id": cid, "event": "failed", "reason": message})
            log.warning("candidate %d %s", cid, message)
            self._forget(cid)
            self._finished.append(task)
        else:
            self.faults.append({"candidate_id": cid, "event": "retry", "reason": reason})
            log.warning("candidate %d: %s; retrying it on another worker", cid, reason)
            self._waiting.appendleft(task)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            limit = self._limit(slot)
            if limit is None or now - slot.since <= limit:
                continue
            if slot.state == "killing":  # the kill was not reported: start it again anyway
                self._on_death(slot, f"did not stop within {limit:g} s of being killed")
                continue
            if slot.state == "busy":
                task, slot.task = slot.task, None
                cid = task.job.candidate_id
                reason = f"timed out: still training after {limit:g} s on {self._label(slot)}"
                task.result = JobResult(cid, False, {}, reason, 0, now - slot.since)
                self.faults.append({"candidate_id": cid, "event": "timeout", "reason": reason})
                log.warning("candidate %d %s; restarting that worker", cid, reason)
                self._forget(cid)
                self._finished.append(task)
            slot.state, slot.since = "killing", now
            self._pool.kill(slot.index)

    def _label(self, slot: _Slot) -> str:
        pid = f" (pid {slot.pid})" if slot.pid else ""
        return f"{self._pool.label(slot.index)}{pid}"
