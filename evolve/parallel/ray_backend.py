"""Ray backend: persistent actors, on a private local Ray instance or across a cluster.

Each worker is a Ray actor holding its :class:`~evolve.problem.Problem` for its whole
life (``num_gpus`` per actor: 1 for a GPU each, 0.25 to pack four on one). The search's
tensors are put in Ray's object store once (or each actor calls a
:class:`~evolve.parallel.DatasetFactory`); a job travels as its JSON message plus the
bytes of its model file, and the trained weights come back as bytes, so nodes need no
shared disk. Ray is optional (``pip install mutnas[ray]``) and imported only here, when a
:class:`RayEvaluator` starts.

Without an address, the evaluator starts a Ray instance of its own
(:func:`init_private_ray`) instead of ``ray.init()``'s default, which joins any cluster it
finds on the machine (``RAY_ADDRESS``, a ``ray start`` cluster, or the address file a dead
cluster leaves in Ray's temp folder) and listens on every network interface.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evolve.errors import ConfigError
from evolve.parallel.dispatch import ParallelEvaluator, PoolEvent, WorkerPool
from evolve.parallel.worker import (
    DatasetFactory,
    JobRunner,
    WorkerSpec,
    build_problem,
    handle,
    problem_arrays,
    ready_message,
    splits_from_tensors,
)
from evolve.problem import Problem

__all__ = ["LOOPBACK", "RayEvaluator", "RayPool", "RayWorker", "import_ray", "init_private_ray"]

log = logging.getLogger(__name__)

#: The address a private Ray instance's servers listen on.
LOOPBACK = "127.0.0.1"


def import_ray():
    """The ``ray`` module, or a :class:`~evolve.errors.ConfigError` saying how to get it.

    Example:
        >>> try:
        ...     ray = import_ray()
        ... except ConfigError:
        ...     ray = None  # Ray is not installed here
    """
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            "the ray evaluator needs Ray: pip install 'mutnas[ray]' (or ray[default])"
        ) from err
    return ray


@contextlib.contextmanager
def _loopback_node_ip(ray) -> Iterator[None]:
    """Let ``ray.init`` keep ``127.0.0.1`` as the node IP while it starts the node.

    On Linux Ray replaces a loopback node IP by the machine's address (so that other nodes
    could join), and its GCS, raylet and workers then listen on every interface. It keeps
    the loopback address where clusters are off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``,
    read once into ``ray_constants.ENABLE_RAY_CLUSTER``), and its servers then listen on
    127.0.0.1 only: that switch is set for the duration of the start.
    """
    constants = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if constants is None or not hasattr(constants, "ENABLE_RAY_CLUSTER"):
        yield  # another Ray: init_private_ray checks the outcome
        return
    before = constants.ENABLE_RAY_CLUSTER
    constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before


def init_private_ray(ray, **options: Any) -> None:
    """Start a new Ray instance for this process alone, listening on 127.0.0.1 only.

    Unlike ``ray.init()``, it never joins a cluster found on the machine (``RAY_ADDRESS``, a
    ``ray start`` cluster, the ``ray_current_cluster`` file a dead one leaves in Ray's temp
    folder): it passes ``address="local"``. Its node IP is 127.0.0.1, so the GCS, the
    raylet, the workers and this driver listen on the loopback interface only, and it
    starts no dashboard. ``ray.shutdown()`` stops it.

    Args:
        ray: the ``ray`` module.
        **options: further ``ray.init`` arguments (``num_cpus``, ``runtime_env``...);
            ``address`` and ``_node_ip_address`` are this function's to set.

    Raises:
        ConfigError: ``options`` set an address, or this Ray version could not keep its
            servers on 127.0.0.1 (the instance is stopped again).

    Example:
        >>> ray = import_ray()  # doctest: +SKIP
        >>> init_private_ray(ray, num_cpus=2)  # doctest: +SKIP
        >>> ray.util.get_node_ip_address()  # doctest: +SKIP
        '127.0.0.1'
    """
    taken = sorted({"address", "_node_ip_address"} & set(options))
    if taken:
        raise ConfigError(
            f"init_options {taken} would make the private Ray instance join or expose a "
            "cluster; pass address= to RayEvaluator to use a cluster instead"
        )
    settings = {"include_dashboard": False, **options}
    with _loopback_node_ip(ray):
        ray.init(address="local", _node_ip_address=LOOPBACK, **settings)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise ConfigError(
            f"Ray {ray.__version__} gave its private instance the node IP {node_ip}, so it "
            f"would listen beyond {LOOPBACK}; start a cluster bound where you want it "
            "(ray start --head --node-ip-address=...) and pass its address"
        )


def _read_folder(folder: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}


class RayWorker:
    """The actor (wrapped by ``ray.remote`` at start): a :class:`JobRunner` on the node.

    Args:
        spec: the worker spec.
        arrays: the search's tensors from the object store, or ``None`` to call
            ``spec.data``.
    """

    def __init__(self, spec: WorkerSpec, arrays: dict | None = None):
        os.environ.update(spec.env)
        splits = None if arrays is None else splits_from_tensors(arrays["tensors"], arrays["meta"])
        self.runner = JobRunner(build_problem(spec, splits))
        self.folder = Path(tempfile.mkdtemp(prefix="mutnas-ray-worker-"))

    def ready(self) -> dict:
        """The ``ready`` message (pid, device, data fingerprint)."""
        import ray

        return {
            **ready_message(self.runner.problem),
            "node": ray.get_runtime_context().get_node_id(),
        }

    def run(self, message: dict, model: dict[str, bytes]) -> tuple[dict, bytes | None]:
        """Write the model file here, train, and return the answer and the weights' bytes."""
        job_folder = self.folder / message["key"]
        model_folder = job_folder / "model"
        model_folder.mkdir(parents=True)
        try:
            for name, content in model.items():
                (model_folder / name).write_bytes(content)
            local = {**message, "model": str(model_folder), "out": str(job_folder / "weights")}
            answer = handle(self.runner, local)
            weights = Path(answer["weights"]).read_bytes() if answer.get("weights") else None
            return answer, weights
        finally:
            shutil.rmtree(job_folder, ignore_errors=True)

    def call(self, message: dict) -> dict | None:
        """Answer a message that carries no model (``clear``, ``ping``)."""
        return handle(self.runner, message)


class RayPool(WorkerPool):
    """Ray actors, one per slot; a task that fails with an actor error reports its death.

    Args:
        ray: the ``ray`` module.
        spec: the worker spec.
        arrays: an object reference to the search's tensors, or ``None``.
        n_slots: actors.
        options: ``ray.remote`` options of each actor (``num_cpus``, ``num_gpus``...).
    """

    def __init__(self, ray, spec: WorkerSpec, arrays, n_slots: int, options: dict):
        self.ray, self.spec, self.arrays, self.n_slots = ray, spec, arrays, n_slots
        self._actor_class = ray.remote(**{"max_restarts": 0, **options})(RayWorker)
        self._actors: list[Any] = [None] * n_slots
        self._generation = [0] * n_slots
        self._pending: dict[Any, tuple[int, int, str, dict | None]] = {}
        self._models: dict[str, dict[str, bytes]] = {}
        self._node: dict[int, str] = {}

    def start(self, slot: int) -> None:
        self._generation[slot] += 1
        actor = self._actor_class.remote(self.spec, self.arrays)
        self._actors[slot] = actor
        self._track(actor.ready.remote(), slot, "ready", None)

    def _track(self, ref, slot: int, kind: str, message: dict | None) -> None:
        self._pending[ref] = (slot, self._generation[slot], kind, message)

    def send(self, slot: int, message: dict) -> None:
        actor = self._actors[slot]
        if actor is None:
            return
        if message["op"] == "run":
            model = self._models.get(message["model"])
            if model is None:
                model = self._models[message["model"]] = _read_folder(message["model"])
            self._track(actor.run.remote(message, model), slot, "run", message)
        else:
            self._track(actor.call.remote(message), slot, message["op"], message)

    def poll(self, timeout: float) -> list[PoolEvent]:
        if not self._pending:
            return []
        refs = list(self._pending)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        events: list[PoolEvent] = []
        for ref in ready:
            slot, generation, kind, message = self._pending.pop(ref)
            if generation != self._generation[slot]:
                continue  # from an actor already reported dead
            events += self._outcome(ref, slot, kind, message)
        return events

    def _outcome(self, ref, slot: int, kind: str, message: dict | None) -> list[PoolEvent]:
        exceptions = self.ray.exceptions
        try:
            value = self.ray.get(ref)
        except exceptions.RayTaskError as err:  # raised by our code: a start failure
            if kind == "ready":
                return [PoolEvent("error", slot, {"error": str(err)})]
            return [self._died(slot, f"failed: {_first_line(err)}")]
        except (exceptions.RayError, OSError) as err:  # actor, worker or node lost
            if kind == "ready" and "creation task" in str(err):
                return [PoolEvent("error", slot, {"error": str(err)})]
            return [self._died(slot, _first_line(err))]
        if kind == "ready":
            self._node[slot] = value.get("node", "")[:8]
            return [PoolEvent("ready", slot, value)]
        if kind == "run":
            answer, weights = value
            if weights is not None:
                Path(message["out"]).write_bytes(weights)
                answer["weights"] = message["out"]
            self._forget_model(message["model"])
            return [PoolEvent("answer", slot, answer)]
        return [] if value is None else [PoolEvent("answer", slot, value)]

    def _forget_model(self, path: str) -> None:
        if not any(m and m.get("model") == path for *_, m in self._pending.values()):
            self._models.pop(path, None)

    def _died(self, slot: int, reason: str) -> PoolEvent:
        self._generation[slot] += 1
        self._actors[slot] = None
        return PoolEvent("died", slot, {"reason": f"{self.label(slot)} died: {reason}"})

    def kill(self, slot: int) -> None:
        if self._actors[slot] is not None:
            self.ray.kill(self._actors[slot], no_restart=True)

    def stop(self) -> None:
        for slot, actor in enumerate(self._actors):
            if actor is not None:
                try:
                    self.ray.kill(actor, no_restart=True)
                except Exception as err:  # Ray already shut down
                    log.debug("could not kill actor %d: %s", slot, err)
            self._actors[slot] = None
        self._pending.clear()

    def label(self, slot: int) -> str:
        node = self._node.get(slot)
        return f"Ray worker {slot}" + (f" on node {node}" if node else "")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip()


class RayEvaluator(ParallelEvaluator):
    """Trains candidates in persistent Ray actors, locally or across a Ray cluster.

    Uses the running Ray instance if there is one; else, without an address, starts a
    private one (:func:`init_private_ray`: new, on 127.0.0.1 only, whatever else runs on
    the machine), and with one, ``ray.init(address=address)`` joins that cluster
    (``"auto"``: the cluster this machine belongs to; ``"ray://head:10001"``: a remote
    one). It shuts down only what it started.

    Args:
        n_workers: actors (default: as many as the cluster's CPUs, or GPUs, allow).
        address: the cluster to join (see above); ``None``: a private local instance.
        num_cpus: CPUs reserved per actor.
        num_gpus: GPUs per actor (fractions pack several on one GPU); ``None``: 1 when
            the problem's device is CUDA, else 0.
        threads: torch threads per actor.
        data: ``None`` puts the search's tensors in the object store once; a dataset name
            or :class:`~evolve.parallel.DatasetFactory` is called by each actor.
        timeout_s, max_attempts, start_timeout_s: see
            :class:`~evolve.parallel.dispatch.ParallelEvaluator`.
        init_options: further ``ray.init`` arguments (``runtime_env``...).
        actor_options: further ``ray.remote`` options of the actors (``resources``...).

    Example:
        >>> RayEvaluator(address="auto", num_gpus=0.25)  # doctest: +SKIP
        RayEvaluator(n_workers=None, address='auto', num_gpus=0.25)
    """

    def __init__(
        self,
        n_workers: int | None = None,
        *,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float | None = None,
        threads: int = 1,
        data: Any = None,
        timeout_s: float | None = None,
        max_attempts: int = 2,
        start_timeout_s: float = 300.0,
        init_options: dict | None = None,
        actor_options: dict | None = None,
    ):
        super().__init__(
            data=data,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            start_timeout_s=start_timeout_s,
        )
        self.n_workers = n_workers
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.threads = threads
        self.init_options = init_options
        self.actor_options = actor_options
        self._started_ray = False

    def _make_pool(self, problem: Problem, spool: Path) -> RayPool:
        ray = import_ray()
        if not ray.is_initialized():
            if self.address is None:
                init_private_ray(ray, **(self.init_options or {}))
            else:
                ray.init(address=self.address, **(self.init_options or {}))
            self._started_ray = True
        num_gpus = self.num_gpus
        if num_gpus is None:
            num_gpus = 1 if problem.device.type == "cuda" else 0
        n = self.n_workers or self._default_workers(ray, num_gpus)
        device = "cuda" if num_gpus > 0 else "cpu"
        data, arrays = self.data, None
        if data is None:
            arrays = ray.put(problem_arrays(problem))  # once, for every actor
        elif isinstance(data, str):
            from evolve.data import load_dataset

            data = DatasetFactory(load_dataset, data)
        spec = WorkerSpec(
            data, problem.objectives, problem.training.to_dict(), device, self.threads
        )
        options = {"num_cpus": self.num_cpus, "num_gpus": num_gpus, **(self.actor_options or {})}
        log.info("%d Ray actors (%s each)", n, options)
        return RayPool(ray, spec, arrays, n, options)

    def _default_workers(self, ray, num_gpus: float) -> int:
        resources = ray.cluster_resources()
        if num_gpus > 0:
            n = int(resources.get("GPU", 0) // num_gpus)
            if n < 1:
                raise ConfigError(
                    f"the Ray cluster has {resources.get('GPU', 0)} GPUs, fewer than num_gpus="
                    f"{num_gpus} per worker; lower num_gpus or use num_gpus=0"
                )
            return n
        return max(1, int(resources.get("CPU", 1) // self.num_cpus))

    def shutdown(self) -> None:
        """Stop the actors, and Ray itself if this evaluator started it."""
        super().shutdown()
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def __repr__(self) -> str:
        return (
            f"RayEvaluator(n_workers={self.n_workers}, address={self.address!r}, "
            f"num_gpus={self.num_gpus!r})"
        )
