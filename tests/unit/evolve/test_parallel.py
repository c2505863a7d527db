"""Parallel evaluation, the parts that need no worker: choosing a backend, planning
workers, validation, the worker's job runner (retries replay bit-identically).

The backends themselves (worker processes, a local Ray instance, killed workers) are
tested in ``tests/integration/test_parallel_backends.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import pytest
import torch
from evolve_helpers import conv_model, make_problem

import evolve
from evolve.errors import ConfigError
from evolve.parallel import (
    DatasetFactory,
    JobRunner,
    ProcessEvaluator,
    RayEvaluator,
    add_evaluator_arguments,
    evaluator_from_args,
    make_evaluator,
    plan_workers,
    run_async,
)
from evolve.parallel import processes as processes_module
from evolve.parallel.ray_backend import import_ray, init_private_ray

# ------------------------------------------------------------ choosing a backend


def test_make_evaluator_by_name():
    assert isinstance(make_evaluator("serial"), evolve.SerialEvaluator)
    assert isinstance(make_evaluator(None), evolve.SerialEvaluator)
    assert make_evaluator("processes", n_workers=3).n_workers == 3
    assert make_evaluator("ray", address="auto").address == "auto"
    mine = ProcessEvaluator(2)
    assert make_evaluator(mine) is mine


def test_make_evaluator_refuses_unknown_names_and_serial_options():
    with pytest.raises(ConfigError, match="unknown evaluator 'gpu'; use one of serial"):
        make_evaluator("gpu")
    with pytest.raises(ConfigError, match="serial evaluator takes no options"):
        make_evaluator("serial", n_workers=2)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_evaluator_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_line_options_make_each_backend():
    assert isinstance(evaluator_from_args(_args()), evolve.SerialEvaluator)
    processes = evaluator_from_args(_args("--evaluator", "processes", "--per-gpu", "3"))
    assert (processes.n_workers, processes.per_gpu) == (None, 3)
    ray = evaluator_from_args(
        _args("--evaluator", "ray", "--workers", "4", "--num-gpus", "0.25", "--timeout", "60")
    )
    assert (ray.n_workers, ray.num_gpus, ray.timeout_s, ray.address) == (4, 0.25, 60.0, None)
    address = evaluator_from_args(_args("--evaluator", "ray", "--ray-address", "auto"))
    assert address.address == "auto"
    assert _args("--async").asynchronous and not _args().asynchronous


def test_fit_refuses_a_bad_evaluator_and_async_without_workers(signal_splits):
    data = (signal_splits.train, signal_splits.valid)
    with pytest.raises(ConfigError, match="evaluator must be 'serial', 'processes', 'ray'"):
        evolve.fit(*data, evaluator=3, progress=False)
    with pytest.raises(ConfigError, match="unknown evaluator 'threads'"):
        evolve.fit(*data, evaluator="threads", progress=False)
    with pytest.raises(ConfigError, match="asynchronous=True needs a parallel evaluator"):
        evolve.fit(*data, evaluator="serial", asynchronous=True, progress=False)


def test_missing_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'mutnas\[ray\]'"):
        import_ray()


class _FakeRay:
    """Records ``ray.init`` calls; its node IP is what ``ray.init`` was given."""

    __version__ = "0.0"

    def __init__(self, node_ip=None):
        self.calls, self.shut = [], False
        self.node_ip = node_ip
        self.util = type("util", (), {"get_node_ip_address": lambda _: self._ip()})()

    def _ip(self):
        return self.node_ip or self.calls[-1].get("_node_ip_address") or "10.0.0.5"

    def init(self, **kwargs):
        self.calls.append(kwargs)

    def shutdown(self):
        self.shut = True


def test_private_ray_is_new_and_on_loopback():
    ray = _FakeRay()
    init_private_ray(ray, num_cpus=2)
    assert ray.calls == [
        {"address": "local", "_node_ip_address": "127.0.0.1", "include_dashboard": False,
         "num_cpus": 2}
    ]  # fmt: skip


@pytest.mark.parametrize("option", ["address", "_node_ip_address"])
def test_private_ray_refuses_an_address_in_its_options(option):
    with pytest.raises(ConfigError, match=rf"init_options \['{option}'\] would make the private"):
        init_private_ray(_FakeRay(), **{option: "auto"})


def test_private_ray_that_ray_moved_off_loopback_is_stopped():
    ray = _FakeRay(node_ip="10.0.0.5")
    with pytest.raises(ConfigError, match=r"node IP 10.0.0.5, so it would listen beyond 127"):
        init_private_ray(ray)
    assert ray.shut


# ------------------------------------------------------------ planning workers


def test_cpu_workers_see_no_gpu(monkeypatch):
    monkeypatch.setattr(processes_module, "available_cpus", lambda: 6)
    plan = plan_workers("cpu")
    assert len(plan) == 6 and all(w["env"]["CUDA_VISIBLE_DEVICES"] == "" for w in plan)
    assert len(plan_workers("cpu", threads=2)) == 3


def test_gpu_workers_are_pinned_and_packed_by_free_memory(monkeypatch):
    monkeypatch.setattr(processes_module, "available_cpus", lambda: 64)
    free = {"2": 80 * 2**30, "3": 4 * 2**30}
    monkeypatch.setattr(processes_module, "_free_gpu_bytes", free.__getitem__)
    plan = plan_workers("cuda", gpus=[2, 3])
    gpus = [w["env"]["CUDA_VISIBLE_DEVICES"] for w in plan]
    # GPU 2 holds MAX_PER_GPU workers of 1.5 GiB; GPU 3 only two
    assert gpus == ["2"] * processes_module.MAX_PER_GPU + ["3"] * 2
    assert all(w["device"] == "cuda" for w in plan)
    assert [
        w["env"]["CUDA_VISIBLE_DEVICES"] for w in plan_workers("cuda", gpus=[0, 1], per_gpu=2)
    ] == [
        "0",
        "0",
        "1",
        "1",
    ]
    assert len(plan_workers("cuda", gpus=[2, 3], n_workers=5)) == 5


def test_gpu_planning_refusals(monkeypatch):
    monkeypatch.setattr(processes_module, "_visible_gpus", lambda: [])
    with pytest.raises(ConfigError, match="no GPU is visible; use device='cpu'"):
        plan_workers("cuda")
    with pytest.raises(ConfigError, match="per_gpu must be a positive integer or 'auto'"):
        plan_workers("cuda", gpus=[0], per_gpu=0)
    with pytest.raises(ConfigError, match="n_workers and threads must be >= 1"):
        plan_workers("cpu", n_workers=0)


def test_fork_is_refused():
    with pytest.raises(ConfigError, match="start_method must be 'forkserver' or 'spawn'"):
        processes_module.ProcessPool([], start_method="fork")


def test_data_sources():
    with pytest.raises(ConfigError, match="DatasetFactory needs a module-level function"):
        DatasetFactory(lambda: None)
    with pytest.raises(ConfigError, match="data must be None, a dataset name or a DatasetFactory"):
        processes_module.data_source(42, None, None)


@pytest.mark.parametrize(
    ("option", "value", "match"),
    [
        ("max_attempts", 0, "max_attempts must be an integer >= 1"),
        ("timeout_s", -1, "timeout_s must be a positive number of seconds"),
        ("start_timeout_s", "soon", "start_timeout_s must be a positive number"),
    ],
)
def test_evaluator_settings_are_checked_before_any_worker_starts(problem, option, value, match):
    evaluator = ProcessEvaluator(1, **{option: value})
    with pytest.raises(ConfigError, match=match):
        evaluator.start(problem)
    assert evaluator.n_slots == 0


def test_processes_and_ray_refuse_unknown_devices(problem):
    with pytest.raises(ConfigError, match="device must be 'cpu' or 'cuda', got 'tpu'"):
        ProcessEvaluator(1, device="tpu").start(problem)
    assert "num_gpus=0.25" in repr(RayEvaluator(address="auto", num_gpus=0.25))


# ------------------------------------------------------------ asynchronous mode


def test_run_async_refusals(signal_splits):
    culled = make_problem(signal_splits, training=evolve.TrainingConfig(steps=4, cull_fraction=0.5))
    algorithm = evolve.GeneticAlgorithm(pop_size=2).setup(culled, progress=False)
    with pytest.raises(ConfigError, match="set TrainingConfig\\(cull_fraction=0\\)"):
        run_async(algorithm)
    with pytest.raises(ConfigError, match="tell_every must be a positive integer"):
        run_async(algorithm, tell_every=0)


# ------------------------------------------------------------ the worker side


def _message(tmp_path, model_dir, job, replay, key):
    return {
        "key": key,
        "job": job.to_dict(),
        "model": str(model_dir),
        "replay": replay,
        "out": str(tmp_path / f"weights-{key}"),
        "keep": job.stop < job.n_steps,
    }


def test_a_retried_part_replays_the_earlier_ones_bit_identically(problem, tmp_path):
    """The second part of a culled evaluation gives the same weights on the worker that
    kept the session and on a fresh worker that replays the first part: retries never
    change the search's history."""
    import safetensors.torch

    from mutnas_torch import io

    model_dir = io.save(conv_model().module, tmp_path / "model")
    full = evolve.TrainJob(7, 123, evolve.Hyperparams(), n_steps=6, stop=6)
    first = dataclasses.replace(full, stop=2)
    kept = JobRunner(problem)
    one = kept.run(_message(tmp_path, model_dir, first, [], "a"))
    assert one["ok"] and one["kept"] and one["steps"] == 2
    two = kept.run(_message(tmp_path, model_dir, full, [2], "b"))
    fresh = JobRunner(problem).run(_message(tmp_path, model_dir, full, [2], "c"))
    assert two["steps"] == fresh["steps"] == 4 and two["scores"] == fresh["scores"]
    a, b = (safetensors.torch.load_file(x["weights"]) for x in (two, fresh))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not kept.sessions and not fresh["kept"]
