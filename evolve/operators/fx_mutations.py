"""Mutations of layer settings that keep every tensor shape: kernel size and activation.

Neither changes channel sizes, so the mutnas graph is untouched; the edits are made on
the modules directly and checked with ``mm.verify()`` by the mutation template.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from evolve.candidate import Candidate
from evolve.errors import ConfigError
from evolve.operators.fx_edits import ACTIVATION_TYPES
from evolve.operators.mutation import Mutation
from evolve.search_space import ACTIVATIONS

__all__ = ["ActivationMutation", "KernelSizeMutation", "resize_kernel"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _kernel_options(conv: nn.Module, sizes: Sequence[int]) -> list[int]:
    if (
        not isinstance(conv, _CONVS)
        or conv.padding_mode != "zeros"
        or isinstance(conv.padding, str)
        or any(d != 1 for d in conv.dilation)
    ):
        return []
    out = []
    for k in sizes:
        deltas = [k - c for c in conv.kernel_size]
        if all(d == 0 for d in deltas) or any(d % 2 for d in deltas):
            continue
        if all(p + d // 2 >= 0 for p, d in zip(conv.padding, deltas, strict=True)):
            out.append(k)
    return out


def resize_kernel(conv: nn.Module, k: int) -> None:
    """Give ``conv`` a ``k``-sized kernel, centred, with padding keeping output shapes.

    Growing pads the kernel with zeros, so the output is unchanged; shrinking crops it.

    Example:
        >>> conv = torch.nn.Conv1d(2, 3, 3, padding=1)
        >>> x = torch.randn(1, 2, 10)
        >>> before = conv(x)
        >>> resize_kernel(conv, 5)
        >>> conv.kernel_size, conv.padding, torch.allclose(conv(x), before, atol=1e-6)
        ((5,), (2,), True)
    """
    old = conv.weight.detach()
    nd = old.dim() - 2
    shape = list(old.shape[:2]) + [k] * nd
    new = torch.zeros(shape, dtype=old.dtype, device=old.device)
    src, dst = [slice(None)] * 2, [slice(None)] * 2
    for c in old.shape[2:]:
        if k >= c:
            start = (k - c) // 2
            src.append(slice(None))
            dst.append(slice(start, start + c))
        else:
            start = (c - k) // 2
            src.append(slice(start, start + k))
            dst.append(slice(None))
    new[tuple(dst)] = old[tuple(src)]
    deltas = [k - c for c in conv.kernel_size]
    conv.weight = nn.Parameter(new, requires_grad=conv.weight.requires_grad)
    conv.padding = tuple(p + d // 2 for p, d in zip(conv.padding, deltas, strict=True))
    conv.kernel_size = (k,) * nd


class KernelSizeMutation(Mutation):
    """Change one conv's kernel size (padding follows, so shapes stay; growing is exact).

    Example:
        >>> import numpy as np, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, padding=1), torch.nn.ReLU())
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 1, 8)))
        >>> child = KernelSizeMutation((3, 7)).do(parent, np.random.default_rng(0))
        >>> child.mutations, child.model.module.get_submodule("0").padding
        (['kernel 0 3 -> 7'], (3,))
    """

    def __init__(self, kernel_sizes: Sequence[int] = (1, 3, 5, 7), *, prob: float = 1.0):
        super().__init__(prob=prob)
        if len(kernel_sizes) < 2 or any(int(k) != k or k < 1 for k in kernel_sizes):
            raise ConfigError(
                f"kernel_sizes must list two or more positive sizes, got {kernel_sizes}"
            )
        self.kernel_sizes = tuple(kernel_sizes)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        gm = child.model.module
        convs = [
            (name, options)
            for name, module in gm.named_modules()
            if (options := _kernel_options(module, self.kernel_sizes))
        ]
        if not convs:
            return None
        name, options = convs[int(rng.integers(len(convs)))]
        conv = gm.get_submodule(name)
        old = conv.kernel_size[0]
        k = int(options[int(rng.integers(len(options)))])
        resize_kernel(conv, k)
        return f"kernel {name} {old} -> {k}"


class ActivationMutation(Mutation):
    """Replace one activation module by another from ``activations``.

    Example:
        >>> import numpy as np, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> parent = Candidate(0, mt.mutable(net, torch.zeros(1, 3)))
        >>> child = ActivationMutation(("relu", "gelu")).do(parent, np.random.default_rng(0))
        >>> child.mutations, type(child.model.module.get_submodule("1")).__name__
        (['activation 1 relu -> gelu'], 'GELU')
    """

    def __init__(self, activations: Sequence[str] = ("relu", "gelu", "silu"), *, prob: float = 1.0):
        super().__init__(prob=prob)
        bad = [a for a in activations if a not in ACTIVATIONS]
        if len(activations) < 2 or bad:
            raise ConfigError(
                f"activations must name two or more of {sorted(ACTIVATIONS)}; unknown: {bad}"
            )
        self.activations = tuple(activations)

    def _do(self, child: Candidate, rng: np.random.Generator) -> str | None:
        gm = child.model.module
        names = [
            n.target
            for n in gm.graph.nodes
            if n.op == "call_module" and isinstance(gm.get_submodule(n.target), ACTIVATION_TYPES)
        ]
        if not names:
            return None
        target = names[int(rng.integers(len(names)))]
        module = gm.get_submodule(target)
        old = next(
            (k for k, cls in ACTIVATIONS.items() if type(module) is cls), type(module).__name__
        )
        new = str(rng.choice([a for a in self.activations if a != old]))
        parent_name, _, attr = target.rpartition(".")
        parent = gm.get_submodule(parent_name) if parent_name else gm
        setattr(parent, attr, ACTIVATIONS[new]().train(module.training))
        return f"activation {target} {old} -> {new}"
