"""Local persistent worker processes: N CPU workers, or k workers pinned to each GPU.

Workers are started once with the ``spawn`` method (no fork of a process holding CUDA
or threads) and each talks to the scheduler over its own pipe, in JSON; models travel as
files in a spool folder. A GPU worker sees one GPU (``CUDA_VISIBLE_DEVICES``) and keeps
its CUDA context for its whole life, so no candidate pays for a CUDA start, and several
workers share a GPU, since one small candidate leaves it almost idle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from evolve.errors import ConfigError
from evolve.parallel.dispatch import ParallelEvaluator, PoolEvent, WorkerPool
from evolve.parallel.worker import (
    DatasetFactory,
    WorkerSpec,
    process_main,
    write_tensor_file,
)
from evolve.problem import Problem

__all__ = ["ProcessEvaluator", "ProcessPool", "available_cpus", "plan_workers"]

log = logging.getLogger(__name__)

#: GPU memory one worker is planned with when choosing how many share a GPU: its CUDA
#: context (about 0.5 GiB on an H100) plus a small candidate's weights and activations.
WORKER_GPU_BYTES = 1.5 * 2**30
#: At most this many workers share one GPU when their number is chosen automatically.
MAX_PER_GPU = 16


def available_cpus() -> int:
    """CPU cores this process may run on.

    Example:
        >>> available_cpus() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _free_gpu_bytes(gpu: str) -> int:
    """Free memory of GPU ``gpu`` (an index or UUID as in ``CUDA_VISIBLE_DEVICES``): NVML
    when available (no CUDA context needed; it numbers GPUs physically, ignoring
    ``CUDA_VISIBLE_DEVICES``), else torch (which numbers the visible ones)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if gpu.startswith("GPU-"):
                handle = pynvml.nvmlDeviceGetHandleByUUID(gpu)
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(gpu))
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).free)
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        import torch

        visible = _visible_gpus()
        index = visible.index(gpu) if gpu in visible else int(gpu)
        return int(torch.cuda.mem_get_info(index)[0])


def _visible_gpus() -> list[str]:
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def plan_workers(
    device: str,
    *,
    n_workers: int | None = None,
    gpus: list[int | str] | None = None,
    per_gpu: int | str = "auto",
    threads: int = 1,
    data_bytes: int = 0,
) -> list[dict[str, Any]]:
    """Where each worker runs: its ``device`` and ``env`` (``CUDA_VISIBLE_DEVICES``).

    CPU: ``n_workers`` workers (default: the cores available over ``threads``), with no
    GPU visible. CUDA: ``per_gpu`` workers on each GPU of ``gpus`` (default every visible
    one); ``"auto"`` takes as many as the GPU's free memory holds at
    :data:`WORKER_GPU_BYTES` (plus the data) each, no more than the cores per GPU or
    :data:`MAX_PER_GPU`; ``n_workers`` then caps the total.

    Example:
        >>> [w["env"]["CUDA_VISIBLE_DEVICES"] for w in plan_workers("cpu", n_workers=2)]
        ['', '']
    """
    if threads < 1 or (n_workers is not None and n_workers < 1):
        raise ConfigError(f"n_workers and threads must be >= 1, got {n_workers} and {threads}")
    if device == "cpu":
        n = n_workers or max(1, available_cpus() // threads)
        return [{"device": "cpu", "env": {"CUDA_VISIBLE_DEVICES": ""}} for _ in range(n)]
    ids = [str(g) for g in gpus] if gpus is not None else _visible_gpus()
    if not ids:
        raise ConfigError("device is cuda but no GPU is visible; use device='cpu'")
    plan = []
    for gpu in ids:
        k = per_gpu
        if k == "auto":
            fits = _free_gpu_bytes(gpu) * 0.9 // (WORKER_GPU_BYTES + 2 * data_bytes)
            k = int(max(1, min(fits, available_cpus() // len(ids), MAX_PER_GPU)))
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"per_gpu must be a positive integer or 'auto', got {per_gpu!r}")
        plan += [{"device": "cuda", "env": {"CUDA_VISIBLE_DEVICES": gpu}}] * k
    return plan[: n_workers or len(plan)]


def _death_reason(label: str, pid: int | None, code: int | None) -> str:
    who = f"{label} (pid {pid})" if pid else label
    if code is not None and code < 0:
        try:
            return f"{who} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"{who} was killed by signal {-code}"
    return f"{who} exited with code {code}"


#: What the fork server imports once, so that each worker (and each restart) forks with
#: torch, evolve and torch._dynamo already imported instead of importing them anew.
PRELOAD = ("torch", "torch._dynamo", "evolve", "evolve.training", "evolve.parallel.worker")


def _context(start_method: str | None):
    """``forkserver`` where there is one (fast starts and restarts), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
    if method not in ("forkserver", "spawn"):
        raise ConfigError(
            f"start_method must be 'forkserver' or 'spawn' (fork is unsafe with CUDA and "
            f"threads), got {method!r}"
        )
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(list(PRELOAD))
    return context


class ProcessPool(WorkerPool):
    """Worker processes (spawned), one duplex pipe each; deaths seen on the process sentinel.

    Args:
        specs: one :class:`~evolve.parallel.worker.WorkerSpec` per slot.
    """

    def __init__(self, specs: list[WorkerSpec], start_method: str | None = None):
        self.specs = specs
        self.n_slots = len(specs)
        self._context = _context(start_method)
        self._processes: list[Any] = [None] * self.n_slots
        self._pipes: list[Any] = [None] * self.n_slots

    def start(self, slot: int) -> None:
        self._close(slot)
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=process_main,
            args=(self.specs[slot], theirs, os.getpid()),
            name=f"mutnas-worker-{slot}",
            daemon=True,
        )
        process.start()
        theirs.close()
        self._processes[slot], self._pipes[slot] = process, ours

    def send(self, slot: int, message: dict) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # gone: the sentinel says
            self._pipes[slot].send_bytes(json.dumps(message).encode())

    def poll(self, timeout: float) -> list[PoolEvent]:
        waitables = {}
        for slot, (process, pipe) in enumerate(zip(self._processes, self._pipes, strict=True)):
            if process is not None:
                waitables[pipe] = slot
                waitables[process.sentinel] = slot
        events: list[PoolEvent] = []
        ready = wait_for(list(waitables), timeout) if waitables else []
        for slot in sorted({waitables[r] for r in ready}):
            events += self._read(slot)
            process = self._processes[slot]
            if process.sentinel in ready or not process.is_alive():
                process.join(1.0)
                reason = _death_reason(self.label(slot), process.pid, process.exitcode)
                self._close(slot)
                events.append(PoolEvent("died", slot, {"reason": reason}))
        return events

    def _read(self, slot: int) -> list[PoolEvent]:
        events, pipe = [], self._pipes[slot]
        try:
            while pipe.poll():
                data = json.loads(pipe.recv_bytes())
                kind = data["op"] if data["op"] in ("ready", "error") else "answer"
                events.append(PoolEvent(kind, slot, data))
        except (EOFError, OSError):
            pass  # died mid-message: the sentinel says so
        return events

    def kill(self, slot: int) -> None:
        process = self._processes[slot]
        if process is not None and process.is_alive():
            process.kill()

    def _close(self, slot: int) -> None:
        if self._pipes[slot] is not None:
            self._pipes[slot].close()
        self._processes[slot], self._pipes[slot] = None, None

    def stop(self) -> None:
        for slot in range(self.n_slots):
            self.send(slot, {"op": "stop"})
        for slot, process in enumerate(self._processes):
            if process is not None:
                process.join(5.0)
                if process.is_alive():
                    process.kill()
                    process.join(5.0)
            self._close(slot)

    def label(self, slot: int) -> str:
        spec = self.specs[slot]
        gpu = spec.env.get("CUDA_VISIBLE_DEVICES")
        return f"worker {slot} (GPU {gpu})" if spec.device == "cuda" else f"worker {slot}"


def data_source(data: Any, problem: Problem, spool: Path):
    """What workers build their data from: ``None`` writes the problem's tensors once to
    a file in ``spool``; a dataset name becomes a :class:`DatasetFactory` of
    :func:`evolve.data.load_dataset`; a factory is kept.

    Example:
        >>> data_source("digits", None, Path("."))
        DatasetFactory(evolve.data.datasets.load_dataset, 'digits')
    """
    if data is None:
        return write_tensor_file(problem, spool / "data.safetensors")
    if isinstance(data, str):
        from evolve.data import load_dataset

        return DatasetFactory(load_dataset, data)
    if not callable(data):
        raise ConfigError(
            f"data must be None, a dataset name or a DatasetFactory, not {type(data).__name__}"
        )
    return data


class ProcessEvaluator(ParallelEvaluator):
    """Trains candidates in persistent local worker processes (CPU cores or GPUs).

    Args:
        n_workers: CPU workers (default: one per available core); on GPUs, a cap on the
            total.
        device: ``"cpu"`` or ``"cuda"``; ``None`` follows the problem's device.
        gpus: GPUs to use (default every visible one); each worker is pinned to one.
        per_gpu: workers sharing each GPU; ``"auto"`` chooses from its free memory.
        threads: torch threads per worker (1: results do not depend on thread counts).
        data, timeout_s, max_attempts, start_timeout_s: see
            :class:`~evolve.parallel.dispatch.ParallelEvaluator`.

    Example:
        >>> ProcessEvaluator(2, timeout_s=600)
        ProcessEvaluator(n_workers=2, device=None, per_gpu='auto', timeout_s=600)
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        device: str | None = None,
        gpus: list[int | str] | None = None,
        per_gpu: int | str = "auto",
        threads: int = 1,
        data: Any = None,
        timeout_s: float | None = None,
        max_attempts: int = 2,
        start_timeout_s: float = 300.0,
    ):
        super().__init__(
            data=data,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            start_timeout_s=start_timeout_s,
        )
        self.n_workers = n_workers
        self.device = device
        self.gpus = gpus
        self.per_gpu = per_gpu
        self.threads = threads

    def _make_pool(self, problem: Problem, spool: Path) -> ProcessPool:
        device = self.device or problem.device.type
        if device not in ("cpu", "cuda"):
            raise ConfigError(f"device must be 'cpu' or 'cuda', got {device!r}")
        data_bytes = sum(t.numel() * t.element_size() for t in (problem.x_train, problem.x_valid))
        plan = plan_workers(
            device,
            n_workers=self.n_workers,
            gpus=self.gpus,
            per_gpu=self.per_gpu,
            threads=self.threads,
            data_bytes=data_bytes,
        )
        source = data_source(self.data, problem, spool)
        training = problem.training.to_dict()
        specs = [
            WorkerSpec(source, problem.objectives, training, w["device"], self.threads, w["env"])
            for w in plan
        ]
        log.info("%d worker processes on %s", len(specs), device)
        return ProcessPool(specs)

    def __repr__(self) -> str:
        timeout = "" if self.timeout_s is None else f", timeout_s={self.timeout_s:g}"
        return (
            f"ProcessEvaluator(n_workers={self.n_workers}, device={self.device!r}, "
            f"per_gpu={self.per_gpu!r}{timeout})"
        )
