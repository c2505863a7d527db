"""Parallel evaluation: throughput with 1 and 2 workers, and scheduling overhead.

Throughput: one batch of initial candidates (MNIST-1D, the built-in search space, a
fixed number of training steps each) is evaluated serially in this process, then by
:class:`~evolve.parallel.ProcessEvaluator` and :class:`~evolve.parallel.RayEvaluator`
with 1 and 2 workers (one torch thread each; workers are started and ready before the
clock starts, as they are for every generation after the first). The same seed gives
the same batch, so every run trains the same candidates.

Overhead: a no-op training (one step on 64 samples, a tiny model) run through one worker,
many times; per candidate, the wall time from dispatch to the trained weights being back
in the scheduler's model, less the time the worker spent on the job. That is what the
backend adds: the model file, the messages (and for Ray the object transfers), the
weights loaded back.

The machine's load is recorded before and after (``os.getloadavg``): on a shared
machine, other people's work lowers the speed-up.

Run:  python benchmarks/parallel_eval.py --out benchmarks/results/parallel_eval.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import evolve
import mutnas_torch as mt
from evolve.data import as_splits, load_dataset
from evolve.parallel import ProcessEvaluator, RayEvaluator

COMMAND = "python benchmarks/parallel_eval.py --out benchmarks/results/parallel_eval.md"


def throughput_batch(n: int, steps: int, seed: int):
    """The problem and a maker of ``n`` identical fresh batches of initial candidates."""
    splits = load_dataset("mnist1d", seed=seed)
    problem = evolve.Problem(
        splits,
        evolve.ObjectiveSet(["accuracy", "flops"]),
        evolve.TrainingConfig(steps=steps, eval_batch_size=1000),
        device="cpu",
    )

    def batch():
        algorithm = evolve.GeneticAlgorithm(pop_size=n).setup(problem, seed=seed, progress=False)
        return algorithm.ask()

    return problem, batch


def timed_evaluate(evaluator, problem, batch, seed: int) -> tuple[float, float]:
    """Wall seconds, and the CPU cores the training got on average (CPU s / wall s)."""
    candidates = batch()
    start, cpu = time.perf_counter(), time.process_time()
    evaluator.evaluate(candidates, problem, seed=seed, initial=True)
    seconds = time.perf_counter() - start
    bad = [c.reason for c in candidates if not c.ok]
    if bad:
        raise RuntimeError(f"candidates failed: {bad[:3]}")
    timings = getattr(evaluator, "timings", None)
    cpu = sum(t["worker_cpu_s"] for t in timings) if timings else time.process_time() - cpu
    return seconds, cpu / seconds


def measure_throughput(args) -> list[dict]:
    problem, batch = throughput_batch(args.candidates, args.steps, args.seed)
    seconds, cores = timed_evaluate(evolve.SerialEvaluator(), problem, batch, args.seed)
    rows = [{"backend": "serial (this process)", "workers": 1, "seconds": seconds, "cores": cores}]
    backends = [("processes", ProcessEvaluator)] + ([("ray", RayEvaluator)] if args.ray else [])
    for name, cls in backends:
        for n in (1, 2):
            with cls(n) as evaluator:
                if evaluator.wait_ready(problem, timeout=300) != n:
                    raise RuntimeError(f"{name}: {n} workers did not start")
                seconds, cores = timed_evaluate(evaluator, problem, batch, args.seed)
            rows.append({"backend": name, "workers": n, "seconds": seconds, "cores": cores})
    for row in rows:
        row["per_s"] = args.candidates / row["seconds"]
    return rows


def noop_problem():
    x, y = torch.randn(72, 1, 8), torch.arange(72) % 2
    return evolve.Problem(
        as_splits((x, y), valid_fraction=8 / 72),
        evolve.ObjectiveSet(["accuracy"]),
        evolve.TrainingConfig(steps=1),
        device="cpu",
    )


def tiny_model(problem):
    net = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool1d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    return mt.mutable(net, problem.example_input).eval()


def measure_overhead(cls, n_jobs: int) -> dict:
    problem = noop_problem()
    candidates = [
        evolve.Candidate(i, tiny_model(problem), evolve.Hyperparams()) for i in range(n_jobs)
    ]
    with cls(1) as evaluator:
        evaluator.wait_ready(problem, timeout=300)
        for c in candidates[:3]:  # warm-up, not timed
            evaluator.evaluate([c], problem)
        evaluator.timings.clear()
        start = time.perf_counter()
        for c in candidates[3:]:  # one at a time: no queueing in the figures
            evaluator.evaluate([c], problem)
        wall = (time.perf_counter() - start) / (len(candidates) - 3)
        timings = list(evaluator.timings)
    overhead = [1e3 * (t["wall_s"] - t["worker_s"]) for t in timings]
    return {
        "median_ms": statistics.median(overhead),
        "p90_ms": statistics.quantiles(overhead, n=10)[-1],
        "worker_ms": 1e3 * statistics.median(t["worker_s"] for t in timings),
        "evaluate_ms": 1e3 * wall,
        "n": len(timings),
    }


NOTES = """
## Notes

- CPU cores used: the workers' CPU seconds over the wall seconds. With the kernel's
  autogroups on, CPU time is shared fairly between sessions (each user's terminal), not
  between processes: when other sessions keep the cores busy, this benchmark's session
  gets the same share with 1 or 2 workers and the speed-up cannot show. Measure on a
  quiet machine (load average well under 1 before the run).
- Speed-up is 2 workers over 1 worker of the same backend; both exclude worker start-up
  (paid once per search). The serial row is the in-process evaluator on one thread.
- Overhead = wall time from dispatch to weights loaded back, minus the time the worker
  spent on the job (its `worker_s`); the `evaluate()` column also holds the screening
  (FLOPs counting) and the candidate bookkeeping that every backend, serial included, does.
- GPU: this machine has no GPU, so the GPU acceptance figures (>= 10x serial throughput
  with k workers per H100, <= 1/8 energy per candidate) were not measured. The code path
  (one worker process per GPU pinned with `CUDA_VISIBLE_DEVICES`, k per GPU from free
  memory, CUDA started once per worker; Ray actors with fractional `num_gpus`) is tested
  only through its planning (`tests/unit/evolve/test_parallel.py`).
"""


def autogroup() -> str:
    try:
        enabled = Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return "unknown"
    return "on" if enabled else "off"


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def report(args, throughput, overhead, before, after) -> str:
    lines = [
        "# Parallel evaluation: throughput and scheduling overhead",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"shared with other users; torch {torch.__version__}, Python "
        f"{platform.python_version()}. Load average (1, 5, 15 min) before: {before}; "
        f"after: {after}. Linux scheduler autogroups: {autogroup()}.",
        "",
        f"## Throughput: {args.candidates} MNIST-1D candidates, {args.steps} steps each",
        "",
        "| backend | workers | seconds | candidates/s | vs 1 worker | CPU cores used | "
        "CPU s per candidate |",
        "|---|---|---|---|---|---|---|",
    ]
    one = {r["backend"]: r["per_s"] for r in throughput if r["workers"] == 1}
    for r in throughput:
        lines.append(
            f"| {r['backend']} | {r['workers']} | {r['seconds']:.2f} | {r['per_s']:.3f} | "
            f"{r['per_s'] / one[r['backend']]:.2f}x | {r['cores']:.2f} | "
            f"{r['cores'] * r['seconds'] / args.candidates:.3f} |"
        )
    lines += [
        "",
        f"## Scheduling overhead per candidate (no-op training, 1 worker, "
        f"{next(iter(overhead.values()))['n']} candidates one at a time)",
        "",
        "| backend | overhead median (ms) | overhead p90 (ms) | in the worker (ms) | "
        "evaluate() per candidate (ms) |",
        "|---|---|---|---|---|",
    ]
    for name, o in overhead.items():
        lines.append(
            f"| {name} | {o['median_ms']:.1f} | {o['p90_ms']:.1f} | {o['worker_ms']:.1f} | "
            f"{o['evaluate_ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--overhead-jobs", type=int, default=43)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-ray", dest="ray", action="store_false")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    before = load()
    if args.ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    throughput = measure_throughput(args)
    overhead = {"processes": measure_overhead(ProcessEvaluator, args.overhead_jobs)}
    if args.ray:
        overhead["ray"] = measure_overhead(RayEvaluator, args.overhead_jobs)
        ray.shutdown()
    text = report(args, throughput, overhead, before, load())
    sys.stdout.write(text)
    if args.out is not None:
        args.out.write_text(text + NOTES)


if __name__ == "__main__":
    main()
