"""The scheduler of the parallel evaluators against a scripted pool of fake workers:
retries on another worker, give-ups, time-outs, start failures, submit/wait.

No process is started: :class:`ScriptedPool` answers in this process, as the script
says, so every fault path is exercised deterministically and in milliseconds.
"""

from __future__ import annotations

import collections

import pytest
from evolve_helpers import conv_model

import evolve
from evolve.candidate import Candidate
from evolve.parallel import ParallelEvaluator, PoolEvent, WorkerError, WorkerPool


class ScriptedPool(WorkerPool):
    """Fake workers. ``on_start(slot, n)`` and ``on_run(slot, candidate_id)`` return what
    happens: ``"ok"`` (ready / a result), ``"die"``, ``"error"`` or ``"hang"``."""

    def __init__(self, n_slots, fingerprint, on_start=None, on_run=None):
        self.n_slots, self.fingerprint = n_slots, fingerprint
        self.on_start = on_start or (lambda slot, n: "ok")
        self.on_run = on_run or (lambda slot, cid: "ok")
        self.events: collections.deque[PoolEvent] = collections.deque()
        self.starts = collections.Counter()
        self.runs: list[tuple[int, int]] = []

    def start(self, slot):
        self.starts[slot] += 1
        what = self.on_start(slot, self.starts[slot])
        data = {"reason": f"worker {slot} crashed"} if what == "die" else {}
        if what == "ok":
            data = {"op": "ready", "pid": 1000 + slot, "fingerprint": self.fingerprint}
        kind = {"ok": "ready", "die": "died", "error": "error"}[what]
        self.events.append(PoolEvent(kind, slot, {**data, "error": "Traceback: boom"}))

    def send(self, slot, message):
        if message["op"] != "run":
            return
        cid = message["job"]["candidate_id"]
        self.runs.append((slot, cid))
        what = self.on_run(slot, cid)
        if what == "die":
            self.events.append(PoolEvent("died", slot, {"reason": f"worker {slot} was killed"}))
        elif what == "ok":
            answer = {"op": "result", "key": message["key"], "ok": True, "reason": None}
            answer.update(scores={"accuracy": cid / 10}, steps=message["job"]["stop"])
            answer.update(seconds=0.0, kept=False, weights=None, worker_s=0.0)
            self.events.append(PoolEvent("answer", slot, answer))

    def poll(self, timeout):
        events, self.events = list(self.events), collections.deque()
        return events

    def kill(self, slot):
        self.events.append(PoolEvent("died", slot, {"reason": "killed"}))

    def stop(self):
        pass


class ScriptedEvaluator(ParallelEvaluator):
    def __init__(self, n_slots=2, on_start=None, on_run=None, **options):
        super().__init__(**options)
        self.script = (n_slots, on_start, on_run)

    def _make_pool(self, problem, spool):
        n, on_start, on_run = self.script
        self.pool = ScriptedPool(n, problem.fingerprint(), on_start, on_run)
        return self.pool


def candidates(n=3):
    return [Candidate(i, conv_model(widths=(4, 6), seed=i), evolve.Hyperparams()) for i in range(n)]


def test_every_candidate_is_trained_and_returned_in_order(problem):
    with ScriptedEvaluator() as evaluator:
        batch = candidates()
        evaluator.evaluate(batch, problem)
    assert [c.scores["accuracy"] for c in batch] == [0.0, 0.1, 0.2]
    assert {slot for slot, _ in evaluator.pool.runs} == {0, 1} and not evaluator.faults


def test_a_job_whose_worker_dies_is_retried_on_another_worker(problem):
    first = []  # the first job worker 0 gets kills it

    def dies_once(slot, cid):
        if slot == 0 and not first:
            first.append(cid)
            return "die"
        return "ok"

    with ScriptedEvaluator(on_run=dies_once) as evaluator:
        batch = candidates()
        evaluator.evaluate(batch, problem)
    assert all(c.ok for c in batch)
    assert [r for r in evaluator.pool.runs if r[1] == first[0]] == [(0, first[0]), (1, first[0])]
    assert evaluator.faults == [
        {"candidate_id": first[0], "event": "retry", "reason": "worker 0 was killed"}
    ]
    assert evaluator.pool.starts[0] == 2  # restarted


def test_a_job_that_kills_every_worker_fails_with_every_reason(problem):
    poison = lambda slot, cid: "die" if cid == 1 else "ok"  # noqa: E731
    with ScriptedEvaluator(on_run=poison, max_attempts=3) as evaluator:
        batch = candidates()
        evaluator.evaluate(batch, problem)
    assert [c.status for c in batch] == ["ok", "failed", "ok"]
    assert batch[1].reason.startswith("failed after 3 attempts: worker ")
    assert batch[1].reason.count("was killed") == 3
    assert [f["event"] for f in evaluator.faults] == ["retry", "retry", "failed"]


def test_a_hung_job_times_out_and_the_rest_go_on(problem):
    hangs = lambda slot, cid: "hang" if cid == 2 else "ok"  # noqa: E731
    with ScriptedEvaluator(on_run=hangs, timeout_s=0.05) as evaluator:
        batch = candidates()
        evaluator.evaluate(batch, problem)
    assert [c.status for c in batch] == ["ok", "ok", "failed"]
    assert batch[2].reason.startswith("timed out: still training after 0.05 s on worker")
    assert [f["event"] for f in evaluator.faults] == ["timeout"]


def test_workers_that_never_start_raise_instead_of_hanging(problem):
    with (
        ScriptedEvaluator(on_start=lambda slot, n: "die") as evaluator,
        pytest.raises(WorkerError, match="every ScriptedEvaluator worker died while starting"),
    ):
        evaluator.evaluate(candidates(), problem)
    assert evaluator.pool.starts == {0: 3, 1: 3}


def test_a_start_error_raises_with_the_traceback(problem):
    fails = lambda slot, n: "error" if slot == 1 else "ok"  # noqa: E731
    with pytest.raises(WorkerError, match="worker 1 could not start:\nTraceback: boom"):
        ScriptedEvaluator(on_start=fails).evaluate(candidates(), problem)


def test_submit_and_wait_return_results_as_they_come(problem):
    with ScriptedEvaluator() as evaluator:
        evaluator.start(problem)
        assert evaluator.wait_ready(problem) == 2 and evaluator.n_idle == 2
        for c in candidates():
            job = evaluator._job(c, problem, seed=0, initial=False)
            evaluator.submit(job, c, problem)
        assert evaluator.n_running == 3 and evaluator.n_idle == 0
        done = []
        while evaluator.n_running:
            done += evaluator.wait(timeout=1.0)
    assert sorted(c.id for c, _ in done) == [0, 1, 2] and all(r.ok for _, r in done)
