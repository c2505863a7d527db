"""The worker side, shared by every out-of-process backend: data once, then jobs as files.

A worker is started once with a :class:`WorkerSpec` (where its data come from, the
objectives, the training recipe, its device and thread count), builds its
:class:`~evolve.problem.Problem` from it, and then trains jobs for as long as it lives.
Nothing per job is pickled: a job is a JSON message naming a model file
(:func:`mutnas_torch.io.save` of the candidate's ``GraphModule``) and the training steps
to run; the worker answers with JSON scores and writes the trained weights to a
safetensors file (the architecture does not change while training).

The data reach the worker once, at its start, in one of three ways (:class:`WorkerSpec`):
a :class:`DatasetFactory` it calls itself (nothing is sent but a function reference and
its arguments), a safetensors file of the search's own tensors written once by the
scheduler (:class:`TensorFile`), or arrays from Ray's object store put there once.

Between the two parts of a culled evaluation a worker keeps the candidate's training
session (optimizer state, schedule, data order). A job that lands on a worker without
that session (the first one died) *replays* the earlier parts from the candidate's
original model file, which gives bit-identical training, so a retry never changes the
search's history.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DatasetFactory",
    "JobRunner",
    "TensorFile",
    "WorkerSpec",
    "build_problem",
    "process_main",
    "splits_from_tensors",
]

_TENSOR_NAMES = ("x_train", "y_train", "x_valid", "y_valid")


class DatasetFactory:
    """A picklable recipe for the search's data, called once in each worker.

    Args:
        function: a module-level function (workers import it by name) returning a
            :class:`~evolve.data.DataSplits` (e.g. :func:`evolve.data.load_dataset`), or
            anything :func:`evolve.data.as_splits` accepts.
        *args, **kwargs: its arguments (plain, picklable values).

    Raises:
        ConfigError: ``function`` is a lambda or a nested function (workers could not
            import it).

    Example:
        >>> from evolve.data import load_dataset
        >>> factory = DatasetFactory(load_dataset, "digits", seed=0)
        >>> factory
        DatasetFactory(evolve.data.datasets.load_dataset, 'digits', seed=0)
        >>> factory().n_outputs
        10
    """

    def __init__(self, function: Callable[..., Any], /, *args: Any, **kwargs: Any):
        from evolve.errors import ConfigError

        qualname = getattr(function, "__qualname__", "")
        if not callable(function) or "<" in qualname or not qualname:
            raise ConfigError(
                f"DatasetFactory needs a module-level function that workers can import, "
                f"not {function!r}; define it at the top level of a module"
            )
        self.function, self.args, self.kwargs = function, args, dict(kwargs)

    def __call__(self):
        from evolve.data import DataSplits, as_splits

        data = self.function(*self.args, **self.kwargs)
        return data if isinstance(data, DataSplits) else as_splits(data)

    def __repr__(self) -> str:
        name = f"{self.function.__module__}.{self.function.__qualname__}"
        parts = [name, *map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        return f"DatasetFactory({', '.join(parts)})"


@dataclass(frozen=True)
class TensorFile:
    """The search's own tensors, written once to a safetensors file that workers read.

    Attributes:
        path: the file (see :func:`write_tensor_file`).
    """

    path: str

    def __call__(self):
        import safetensors.torch

        path = Path(self.path)
        tensors = safetensors.torch.load_file(path)
        with open(path, "rb") as f:  # the header holds the metadata
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        return splits_from_tensors(tensors, json.loads(header["__metadata__"]["splits"]))


def write_tensor_file(problem, path: Path) -> TensorFile:
    """Write ``problem``'s training and validation tensors once; workers load them.

    Example:
        >>> import tempfile, torch
        >>> from evolve import ObjectiveSet, Problem, TrainingConfig
        >>> from evolve.data import as_splits
        >>> data = as_splits((torch.randn(20, 3), torch.arange(20) % 2))
        >>> problem = Problem(data, ObjectiveSet(["accuracy"]), TrainingConfig(), device="cpu")
        >>> source = write_tensor_file(problem, Path(tempfile.mkdtemp()) / "data.safetensors")
        >>> source().n_train, source().input_shape
        (18, (3,))
    """
    import safetensors.torch

    tensors = dict(zip(_TENSOR_NAMES, _problem_tensors(problem), strict=True))
    meta = {
        "task": problem.task,
        "n_outputs": problem.n_outputs,
        "input_shape": problem.input_shape,
    }
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in tensors.items()}, path, {"splits": json.dumps(meta)}
    )
    return TensorFile(str(path))


def _problem_tensors(problem) -> tuple:
    return (problem.x_train, problem.y_train, problem.x_valid, problem.y_valid)


def problem_arrays(problem) -> dict[str, Any]:
    """The problem's tensors as numpy arrays plus what :func:`splits_from_tensors` needs
    (what the Ray backend puts in the object store once)."""
    arrays = {k: t.numpy() for k, t in zip(_TENSOR_NAMES, _problem_tensors(problem), strict=True)}
    meta = {
        "task": problem.task,
        "n_outputs": problem.n_outputs,
        "input_shape": problem.input_shape,
    }
    return {"tensors": arrays, "meta": meta}


def splits_from_tensors(tensors: Mapping[str, Any], meta: Mapping[str, Any]):
    """:class:`~evolve.data.DataSplits` over given train/valid tensors (or arrays).

    Example:
        >>> import torch
        >>> t = {"x_train": torch.zeros(4, 2), "y_train": torch.tensor([0, 1, 0, 1]),
        ...      "x_valid": torch.zeros(2, 2), "y_valid": torch.tensor([0, 1])}
        >>> splits_from_tensors(t, {"task": "classification", "n_outputs": 2, "input_shape": [2]})
        DataSplits('workers', classification, train=4, valid=2, test=None, input_shape=(2,), n_outputs=2)
    """
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    from evolve.data import DataSplits

    def tensor(name: str) -> torch.Tensor:
        value = tensors[name]
        return torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray) else value

    n_outputs = int(meta["n_outputs"])
    classification = meta["task"] == "classification"
    return DataSplits(
        TensorDataset(tensor("x_train"), tensor("y_train")),
        TensorDataset(tensor("x_valid"), tensor("y_valid")),
        None,
        meta["task"],
        n_outputs if classification else None,
        tuple(int(n) for n in meta["input_shape"]),
        n_outputs,
        "workers",
    )


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker is started with (sent once, at its start).

    Attributes:
        data: a :class:`DatasetFactory`, a :class:`TensorFile`, or any callable returning
            :class:`~evolve.data.DataSplits`.
        objectives: the search's :class:`~evolve.objectives.ObjectiveSet`.
        training: :meth:`evolve.TrainingConfig.to_dict` of the recipe.
        device: ``"cpu"`` or ``"cuda"`` (the GPU the worker was pinned to).
        threads: torch threads of the worker.
        env: environment variables set before anything else (``CUDA_VISIBLE_DEVICES``).
    """

    data: Callable[[], Any]
    objectives: Any
    training: dict
    device: str = "cpu"
    threads: int = 1
    env: dict = field(default_factory=dict)


def build_problem(spec: WorkerSpec, splits=None):
    """The worker's :class:`~evolve.problem.Problem`, built from its spec (data loaded once).

    Args:
        spec: the worker's spec.
        splits: the data, when they came another way (Ray's object store).

    Example:
        >>> import torch
        >>> from evolve import ObjectiveSet, TrainingConfig
        >>> from evolve.data import load_dataset
        >>> spec = WorkerSpec(DatasetFactory(load_dataset, "digits"), ObjectiveSet(["accuracy"]),
        ...                   TrainingConfig(steps=2).to_dict(), threads=torch.get_num_threads())
        >>> build_problem(spec).n_train
        1294
    """
    import torch

    from evolve.config import TrainingConfig
    from evolve.problem import Problem

    torch.set_num_threads(spec.threads)
    training = TrainingConfig.from_dict(spec.training)
    splits = spec.data() if splits is None else splits
    problem = Problem(splits, spec.objectives, training, device=spec.device)
    _warm_up(problem)
    return problem


def _warm_up(problem) -> None:
    """Pay the one-time costs before the first job: the data on the device (and the
    CUDA context with them), the modules a job imports (an optimizer's first
    construction imports ``torch._dynamo``, seconds)."""
    import torch

    import evolve.training  # noqa: F401
    import mutnas_torch.io  # noqa: F401

    problem.data("train"), problem.data("valid")
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


class JobRunner:
    """Runs job messages against one problem, keeping sessions between culling parts.

    A ``run`` message holds ``key``, ``job`` (:meth:`evolve.TrainJob.to_dict`), ``model``
    (the candidate's model file before this evaluation), ``replay`` (the ``stop`` steps
    of the parts already run), ``out`` (where to write the trained weights) and
    ``keep`` (hold the session for a later part).

    Example:
        >>> import tempfile, torch, mutnas_torch as mt
        >>> from evolve import ObjectiveSet, Problem, TrainingConfig, TrainJob, Hyperparams
        >>> from evolve.data import as_splits
        >>> data = as_splits((torch.randn(40, 3), torch.arange(40) % 2))
        >>> problem = Problem(data, ObjectiveSet(["accuracy"]), TrainingConfig(), device="cpu")
        >>> tmp = Path(tempfile.mkdtemp())
        >>> net = mt.mutable(torch.nn.Sequential(torch.nn.Linear(3, 2)), problem.example_input)
        >>> _ = mt.io.save(net.module, tmp / "model")
        >>> job = TrainJob(0, 1, Hyperparams(), 4, 4).to_dict()
        >>> out = JobRunner(problem).run({"key": "k", "job": job, "model": str(tmp / "model"),
        ...                               "replay": [], "out": str(tmp / "w"), "keep": False})
        >>> out["ok"], out["steps"], sorted(out["scores"])
        (True, 4, ['accuracy'])
    """

    def __init__(self, problem):
        self.problem = problem
        self.sessions: dict[int, Any] = {}

    def run(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Train one job; the JSON answer (``ok``, ``scores``, ``reason``, ``steps``...)."""
        import safetensors.torch

        from evolve.errors import CandidateFailedError

        job = _job(message["job"])
        replay = [int(s) for s in message.get("replay", [])]
        session = self._session(job, replay)
        before, ok, reason, scores = (0, 0.0), False, None, {}
        try:
            session = session or self._new_session(job, message["model"], replay)
            before = (session.step, session.seconds)
            session.run(job.stop)
            scores, ok = session.score(), True
        except CandidateFailedError as err:
            reason = err.reason
        except Exception as err:  # an unexpected error fails this candidate, not the worker
            reason = f"{type(err).__name__}: {err}"
        answer = {"op": "result", "key": message["key"], "ok": ok, "scores": scores}
        answer.update(reason=reason, steps=0, seconds=0.0, kept=False, weights=None)
        if session is not None:
            answer["steps"] = session.step - before[0]
            answer["seconds"] = session.seconds - before[1]
            session.pause()
            if ok:
                safetensors.torch.save_model(session.model, message["out"])
                answer["weights"] = message["out"]
            answer["kept"] = ok and bool(message.get("keep")) and job.stop < job.n_steps
        if answer["kept"]:
            self.sessions[job.candidate_id] = session
        else:
            self.sessions.pop(job.candidate_id, None)
        return answer

    def _session(self, job, replay: list[int]):
        session = self.sessions.pop(job.candidate_id, None)
        if session is not None and replay and session.step == replay[-1]:
            return session
        return None

    def _new_session(self, job, model_path: str, replay: list[int]):
        from evolve.candidate import Candidate
        from evolve.training import TrainSession
        from mutnas_torch import io

        model = io.load(model_path)
        candidate = Candidate(job.candidate_id, model, job.hparams)
        session = TrainSession(candidate, self.problem, n_steps=job.n_steps, seed=job.seed)
        for stop in replay:  # the earlier parts, exactly as they ran the first time
            session.run(stop)
        session.seconds = 0.0
        return session

    def clear(self) -> None:
        """Drop every kept session (the end of an evaluation)."""
        self.sessions.clear()


def _job(data: Mapping[str, Any]):
    from evolve.config import Hyperparams
    from evolve.evaluator import TrainJob

    return TrainJob(**{**data, "hparams": Hyperparams.from_dict(data["hparams"])})


def handle(runner: JobRunner | None, message: Mapping[str, Any]) -> dict[str, Any] | None:
    """Answer one message (``run``, ``clear``, ``ping``); ``None`` for ``clear``.

    Example:
        >>> handle(None, {"op": "ping", "key": "p"})["op"]
        'pong'
    """
    op = message["op"]
    if op == "run":
        start, cpu = time.perf_counter(), time.process_time()
        answer = runner.run(message)
        answer["worker_s"] = time.perf_counter() - start
        answer["worker_cpu_s"] = time.process_time() - cpu
        return answer
    if op == "clear":
        runner.clear()
        return None
    if op == "ping":
        return {"op": "pong", "key": message.get("key"), "time": time.time()}
    return {"op": "error", "error": f"unknown message op {op!r}"}


def ready_message(problem) -> dict[str, Any]:
    """What a worker says once its problem is built (the scheduler checks the data)."""
    return {
        "op": "ready",
        "pid": os.getpid(),
        "device": str(problem.device),
        "fingerprint": problem.fingerprint(),
    }


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a worker's parent is the fork server, not the
    scheduler, so ``os.getppid()`` cannot tell)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_main(spec: WorkerSpec, conn, parent_pid: int) -> None:
    """The loop of a worker process: build the problem, say ready, answer messages.

    Messages travel as JSON bytes over ``conn`` (one pipe per worker, so a worker killed
    mid-message breaks only its own pipe). The worker exits on ``stop``, when the pipe
    closes, or when the scheduler's process (``parent_pid``) is gone.
    """
    os.environ.update(spec.env)
    try:
        runner = JobRunner(build_problem(spec))
        conn.send_bytes(json.dumps(ready_message(runner.problem)).encode())
    except BaseException:
        conn.send_bytes(json.dumps({"op": "error", "error": traceback.format_exc()}).encode())
        return
    while True:
        try:
            if not conn.poll(1.0):
                if not _alive(parent_pid):
                    return
                continue
            message = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        if message["op"] == "stop":
            return
        answer = handle(runner, message)
        if answer is not None:
            conn.send_bytes(json.dumps(answer).encode())
