"""Mutations of a candidate's training hyper-parameters (the model is left as it is)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from evolve.candidate import Candidate
from evolve.config import OPTIMIZERS
from evolve.errors import ConfigError
from evolve.operators.mutation import Mutation

__all__ = ["BatchSizeMutation", "LearningRateMutation", "OptimizerMutation"]


class OptimizerMutation(Mutation):
    """Switch to another optimizer from ``choices``.

    Example:
        >>> import numpy as np
        >>> child = OptimizerMutation().do(Candidate(0, None), np.random.default_rng(0))
        >>> child.hparams.optimizer != "adam"
        True
    """

    touches_model = False

    def __init__(self, choices: Sequence[str] = ("adam", "adamw", "sgd"), *, prob: float = 1.0):
        super().__init__(prob=prob)
        bad = [c for c in choices if c not in OPTIMIZERS]
        if len(choices) < 2 or bad:
            raise ConfigError(f"choices must name at least two of {OPTIMIZERS}; bad: {bad}")
        self.choices = tuple(choices)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        old = child.hparams.optimizer
        options = [c for c in self.choices if c != old]
        new = str(rng.choice(options))
        child.hparams = dataclasses.replace(child.hparams, optimizer=new)
        return f"optimizer {old} -> {new}"


class LearningRateMutation(Mutation):
    """Multiply the learning rate by ``exp(N(0, sigma))``, clipped to [min_lr, max_lr].

    Example:
        >>> import numpy as np
        >>> child = LearningRateMutation(max_lr=0.01).do(Candidate(0, None), np.random.default_rng(1))
        >>> child.hparams.lr <= 0.01
        True
    """

    touches_model = False

    def __init__(
        self, *, sigma: float = 0.5, min_lr: float = 1e-5, max_lr: float = 1.0, prob: float = 1.0
    ):
        super().__init__(prob=prob)
        if not (sigma > 0 and 0 < min_lr < max_lr):
            raise ConfigError(
                f"need sigma > 0 and 0 < min_lr < max_lr, got {sigma}, {min_lr}, {max_lr}"
            )
        self.sigma, self.min_lr, self.max_lr = sigma, min_lr, max_lr

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        old = child.hparams.lr
        new = float(np.clip(old * math.exp(rng.normal(0.0, self.sigma)), self.min_lr, self.max_lr))
        new = float(f"{new:.4g}")
        if new == old:
            return None
        child.hparams = dataclasses.replace(child.hparams, lr=new)
        return f"lr {old:.4g} -> {new:.4g}"


class BatchSizeMutation(Mutation):
    """Move the batch size to a neighbouring value of ``choices``.

    Example:
        >>> import numpy as np
        >>> child = BatchSizeMutation().do(Candidate(0, None), np.random.default_rng(0))
        >>> child.hparams.batch_size in (32, 128)
        True
    """

    touches_model = False

    def __init__(self, choices: Sequence[int] = (16, 32, 64, 128, 256), *, prob: float = 1.0):
        super().__init__(prob=prob)
        if len(choices) < 2 or any(int(c) != c or c < 1 for c in choices):
            raise ConfigError(f"choices must list at least two positive integers, got {choices}")
        self.choices = tuple(sorted(int(c) for c in choices))

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        old = child.hparams.batch_size
        below = [c for c in self.choices if c < old][-1:]
        above = [c for c in self.choices if c > old][:1]
        options = below + above
        if not options:
            return None
        new = int(rng.choice(options))
        child.hparams = dataclasses.replace(child.hparams, batch_size=new)
        return f"batch_size {old} -> {new}"
