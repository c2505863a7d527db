"""Parallel backends end to end: worker processes and a local Ray instance give the
serial search's history; killed workers, time-outs and asynchronous evolution.

Small on purpose (digits, population 3, two generations of a few steps): each test
pays for starting its workers (seconds), not for training.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
import torch

import evolve
from evolve.data import load_dataset
from evolve.errors import ConfigError
from evolve.parallel import DatasetFactory, ProcessEvaluator, RayEvaluator, WorkerError

#: culling on, so that kept sessions, their second parts and replays are exercised
TRAINING = evolve.TrainingConfig(steps=4, cull_fraction=0.34, cull_at=0.5, eval_batch_size=512)


def search(evaluator, **options) -> evolve.SearchResult:
    settings = dict(population=3, generations=2, seed=3, training=TRAINING, device="cpu")
    return evolve.fit("digits", evaluator=evaluator, progress=False, **{**settings, **options})


def history(result: evolve.SearchResult) -> list[dict]:
    """Every candidate's log record but its wall time."""
    return [{k: v for k, v in r.items() if k != "train_seconds"} for r in result.candidates]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Workers train on one thread; the serial reference must too (float sums depend on
    the thread count). The machine is shared anyway."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def serial_history():
    return history(search("serial"))


def kill_when_sent(evaluator, candidate_id: int, times: int = 1) -> list[int]:
    """SIGKILL the worker process a job of ``candidate_id`` is sent to, just after it is
    sent (while the worker loads or trains it), ``times`` times; the pids killed."""
    dispatch, killed = evaluator._dispatch, []

    def dispatch_then_kill(task, slot):
        dispatch(task, slot)
        if task.job.candidate_id == candidate_id and len(killed) < times:
            killed.append(slot.pid)
            os.kill(slot.pid, signal.SIGKILL)

    evaluator._dispatch = dispatch_then_kill
    return killed


# ------------------------------------------------------------ worker processes


def test_processes_give_the_serial_history(serial_history):
    result = search("processes")  # by name: started and shut down by fit
    assert history(result) == serial_history
    assert [r["status"] for r in serial_history].count("culled") == 2


def test_a_killed_process_worker_has_its_candidate_retried(serial_history):
    with ProcessEvaluator(2) as evaluator:
        killed = kill_when_sent(evaluator, candidate_id=4)
        result = search(evaluator)
        assert len(killed) == 1
        assert history(result) == serial_history  # retried: same result, nothing lost
        [fault] = evaluator.faults
        assert fault["candidate_id"] == 4 and fault["event"] == "retry"
        assert f"(pid {killed[0]}) was killed by SIGKILL" in fault["reason"]
        assert all(w["state"] == "idle" for w in evaluator.workers())  # restarted


def test_a_candidate_whose_workers_keep_dying_fails_with_the_reasons(serial_history):
    with ProcessEvaluator(2) as evaluator:
        killed = kill_when_sent(evaluator, candidate_id=4, times=2)
        result = search(evaluator)
    records = {r["id"]: r for r in history(result)}
    assert len(killed) == 2 and records[4]["status"] == "failed"
    assert records[4]["reason"].startswith("failed after 2 attempts: worker")
    assert records[4]["reason"].count("was killed by SIGKILL") == 2
    first = [r for r in serial_history if r["generation"] == 0]
    assert [records[r["id"]] for r in first] == first  # the finished results are kept
    assert len(records) == len(serial_history) and result.n_generations == 2


def test_a_candidate_training_too_long_times_out_and_its_worker_restarts():
    problem = evolve.Problem(
        load_dataset("digits"),
        evolve.ObjectiveSet(["accuracy"]),
        evolve.TrainingConfig(steps=100_000),
        device="cpu",
    )
    algorithm = evolve.GeneticAlgorithm(pop_size=2).setup(problem, seed=0, progress=False)
    batch = algorithm.ask()
    with ProcessEvaluator(1, timeout_s=2) as evaluator:
        assert evaluator.wait_ready(problem, timeout=120) == 1
        start = time.monotonic()
        evaluator.evaluate(batch, problem, initial=True)
        assert time.monotonic() - start < 60
        assert all(c.status == "failed" for c in batch)
        assert all(
            c.reason.startswith("timed out: still training after 2 s on worker 0") for c in batch
        )
        assert [f["event"] for f in evaluator.faults] == ["timeout", "timeout"]
        assert evaluator.wait_ready(problem, timeout=120) == 1


def test_workers_check_that_they_built_the_search_data():
    x, y = torch.randn(40, 1, 8, 8), torch.arange(40) % 10
    with pytest.raises(ConfigError, match="worker 0 built other data than the search's"):
        evolve.fit(
            (x, y),
            evaluator=ProcessEvaluator(1, data="digits"),
            training=TRAINING,
            population=2,
            generations=1,
            progress=False,
        )


def test_a_worker_that_cannot_start_reports_its_traceback():
    evaluator = ProcessEvaluator(1, data=DatasetFactory(load_dataset, "no-such-dataset"))
    with pytest.raises(WorkerError, match=r"(?s)worker 0 could not start:.*no-such-dataset"):
        search(evaluator, generations=1)


def test_asynchronous_aging_evolution_keeps_the_synchronous_bookkeeping(tmp_path):
    """A child per free worker, one per generation (regularized evolution): the log, the
    history and the checkpoint agree, and the run resumes."""
    options = dict(
        population=3,
        n_offspring=1,
        survival=evolve.AgingSelection(),
        training=evolve.TrainingConfig(steps=4, eval_batch_size=512),
        run_dir=tmp_path,
        asynchronous=True,
    )
    with ProcessEvaluator(2) as evaluator:
        result = search(evaluator, generations=6, **options)
        assert result.n_generations == 6
        assert [h["n_evaluations"] for h in result.history] == [3, 4, 5, 6, 7, 8]
        check_run_dir(tmp_path, result)
        more = evolve.MaxGenerationsTermination(8)
        resumed = evolve.resume(
            tmp_path, evaluator=evaluator, asynchronous=True, termination=more, progress=False
        )
    assert resumed.n_generations == 8 and resumed.history[:6] == result.history
    check_run_dir(tmp_path, resumed)


def check_run_dir(run_dir, result) -> None:
    lines = (run_dir / "candidates.jsonl").read_text().splitlines()
    log = [json.loads(line) for line in lines]
    state = json.loads((run_dir / "state.json").read_text())
    ids = [r["id"] for r in log]
    assert len(ids) == len(set(ids)) == state["n_evaluations"] == len(result.candidates)
    for record in log:  # lineage: parents were bred before their children
        assert all(
            p in ids[: ids.index(record["id"])] or p < record["id"] for p in record["parents"]
        )
    assert {c["id"] for c in state["population"]} <= set(ids)
    assert state["generation"] == result.n_generations
    by_generation = {}
    for record in log:
        by_generation[record["generation"]] = by_generation.get(record["generation"], 0) + 1
    assert by_generation == {0: 3, **{g: 1 for g in range(1, result.n_generations)}}


# ------------------------------------------------------------ a local Ray instance


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray instance, started as the evaluator starts one, while Ray's temp folder
    holds the address file of a cluster that died (which ``ray.init()`` would try to join:
    "When connecting to an existing cluster, num_cpus and num_gpus must not be provided")."""
    ray = pytest.importorskip("ray")
    from evolve.parallel.ray_backend import init_private_ray

    folder = Path(tempfile.mkdtemp(prefix="mnray-", dir="/tmp"))  # Ray's socket paths are short
    (folder / "ray").mkdir()
    (folder / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")  # nothing listens
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", str(folder))
        patch.delenv("RAY_ADDRESS", raising=False)
        init_private_ray(ray, num_cpus=2, log_to_driver=False)
        yield ray
        ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


def test_ray_gives_the_serial_history(local_ray, serial_history):
    assert history(search("ray")) == serial_history  # uses the running instance
    assert local_ray.is_initialized()


def test_a_killed_ray_worker_has_its_candidate_retried(local_ray, serial_history):
    with RayEvaluator(2) as evaluator:
        killed = kill_when_sent(evaluator, candidate_id=4)
        result = search(evaluator)
        assert len(killed) == 1 and history(result) == serial_history
        [fault] = evaluator.faults
        assert fault["candidate_id"] == 4 and fault["event"] == "retry"
        assert fault["reason"].startswith("Ray worker")
