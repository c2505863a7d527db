"""A candidate: a mutable model with its training settings, lineage and scores."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx

from evolve.config import Hyperparams

__all__ = ["STATUSES", "Candidate", "architecture_fingerprint", "candidate_seed"]

#: ``pending`` (not evaluated yet), ``ok``, ``failed`` (with a reason), ``culled``.
STATUSES = ("pending", "ok", "failed", "culled")


def candidate_seed(seed: int, candidate_id: int, stream: int = 0) -> int:
    """A 63-bit seed for one candidate, independent of evaluation order.

    Example:
        >>> candidate_seed(0, 5) == candidate_seed(0, 5) != candidate_seed(0, 6)
        True
    """
    sequence = np.random.SeedSequence([int(seed), int(candidate_id), int(stream)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _arg(value: Any, index: dict[fx.Node, int]) -> Any:
    if isinstance(value, fx.Node):
        return f"%{index[value]}"
    if isinstance(value, list | tuple):
        return [_arg(v, index) for v in value]
    if isinstance(value, dict):
        return {k: _arg(v, index) for k, v in sorted(value.items())}
    if isinstance(value, torch.dtype | torch.device | slice):
        return str(value)
    return value if isinstance(value, int | float | str | bool | None) else repr(value)


def architecture_fingerprint(module: fx.GraphModule) -> str:
    """A hash of the graph structure and layer settings, independent of names and weights.

    Example:
        >>> import torch, mutnas_torch as mt
        >>> a = mt.mutable(torch.nn.Sequential(torch.nn.Linear(3, 4)), torch.zeros(1, 3))
        >>> b = mt.mutable(torch.nn.Sequential(torch.nn.Linear(3, 4)), torch.zeros(1, 3))
        >>> architecture_fingerprint(a.module) == architecture_fingerprint(b.module)
        True
    """
    nodes = list(module.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    lines = []
    for node in nodes:
        if node.op == "call_module":
            sub = module.get_submodule(node.target)
            what = f"{type(sub).__name__}({sub.extra_repr()})"
        elif node.op == "get_attr":
            value = getattr(module, node.target, None) if "." not in node.target else None
            what = str(tuple(value.shape)) if torch.is_tensor(value) else node.target
        elif node.op == "call_function":
            what = f"{getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', node.target)}"
        else:
            what = str(node.target) if node.op == "call_method" else node.op
        lines.append(json.dumps([node.op, what, _arg(node.args, index), _arg(node.kwargs, index)]))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(eq=False)
class Candidate:
    """One individual of the search.

    Attributes:
        id: unique, increasing with birth order (``None`` while a draft).
        model: the :class:`~mutnas_torch.MutableModel` (kept on the CPU between evaluations).
        hparams: its training settings.
        parents: ids of its parents (empty for the initial population).
        mutations: what was done to the parents' copy, in order.
        generation: the generation it was born in.
        status: one of :data:`STATUSES`; ``reason`` says why it failed or was culled.
        scores: objective values (validation metrics and costs).
        train_steps: optimizer steps its weights have seen, inherited ones included.
        train_seconds: wall time of its own evaluation.
    """

    id: int | None
    model: Any
    hparams: Hyperparams = field(default_factory=Hyperparams)
    parents: tuple[int, ...] = ()
    mutations: list[str] = field(default_factory=list)
    generation: int = 0
    status: str = "pending"
    reason: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    train_steps: int = 0
    train_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Evaluated successfully."""
        return self.status == "ok"

    def fingerprint(self) -> str:
        """Architecture plus hyper-parameters: equal fingerprints are duplicates."""
        arch = architecture_fingerprint(self.model.module)
        return hashlib.sha256((arch + json.dumps(self.hparams.to_dict())).encode()).hexdigest()

    def spawn(self) -> Candidate:
        """A draft child: a deep copy of the model (weights included) and the same settings."""
        return Candidate(
            None,
            copy.deepcopy(self.model),
            self.hparams,
            parents=(self.id,) if self.id is not None else (),
            train_steps=self.train_steps,
        )

    def fail(self, reason: str, status: str = "failed") -> None:
        """Mark as failed (or culled) with a one-line reason."""
        self.status, self.reason = status, reason

    def sizes(self) -> dict[str, int]:
        """Output size of each mutable layer."""
        return {name: self.model.graph[name].nout for name in self.model.layers()}

    def record(self) -> dict[str, Any]:
        """Everything but the weights, as JSON (the candidate log line, the checkpoint)."""
        return {
            "id": self.id,
            "parents": list(self.parents),
            "generation": self.generation,
            "mutations": list(self.mutations),
            "hparams": self.hparams.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "scores": dict(self.scores),
            "train_steps": self.train_steps,
            "train_seconds": round(self.train_seconds, 4),
            "n_parameters": int(self.model.n_parameters()) if self.model is not None else None,
            "sizes": self.sizes() if self.model is not None else {},
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], model: Any) -> Candidate:
        """Rebuild from :meth:`record` and the model.

        Example:
            >>> c = Candidate(3, None, parents=(1,), status="ok", scores={"accuracy": 0.5})
            >>> Candidate.from_record(c.record(), None).scores
            {'accuracy': 0.5}
        """
        return cls(
            record["id"],
            model,
            Hyperparams.from_dict(record["hparams"]),
            parents=tuple(record["parents"]),
            mutations=list(record["mutations"]),
            generation=record["generation"],
            status=record["status"],
            reason=record["reason"],
            scores=dict(record["scores"]),
            train_steps=record["train_steps"],
            train_seconds=record["train_seconds"],
        )

    def __repr__(self) -> str:
        scores = ", ".join(f"{k}={v:.4g}" for k, v in self.scores.items())
        return f"Candidate(id={self.id}, {self.status}, {scores})"
