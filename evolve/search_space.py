"""The built-in search space: small MLPs, 1-D and 2-D conv nets, and the operators' choices.

Input shapes follow :mod:`evolve.data`: ``(F,)`` feature vectors get an MLP, ``(C, L)``
signals a 1-D conv net, ``(C, H, W)`` images a 2-D conv net. A conv net is a stack of
conv → BatchNorm → activation blocks (stride 2 while the signal is long enough), then an
adaptive average pool to a fixed size, flatten and a linear head; the adaptive pool keeps
the head's input size fixed when mutations change strides or add pooling. Layers are named
(``conv1``, ``norm1``, ``act1`` ... ``head``), so logs and model files read well.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from torch import nn

from evolve.errors import ConfigError

__all__ = ["ACTIVATIONS", "SearchSpace"]

#: Activation names (as in :mod:`mutnas_torch.structure`) and their modules.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "hardswish": nn.Hardswish,
}


def _check_choices(name: str, values, allowed=None) -> None:
    if not values:
        raise ConfigError(f"{name} must list at least one choice")
    if allowed is not None:
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ConfigError(f"{name} has unknown choice(s) {bad}; use {sorted(allowed)}")


@dataclass(frozen=True)
class SearchSpace:
    """Where the search starts and what its operators may choose.

    Attributes:
        widths: channel / unit counts of initial layers.
        min_depth, max_depth: number of hidden blocks of initial models.
        kernel_sizes: kernel sizes for initial convs and for mutations.
        stem_kernel: kernel size of the first conv (``None``: drawn from ``kernel_sizes``).
        activations: activations for initial models (the first) and for mutations.
        norm: use BatchNorm in initial blocks.
        pooled_size: spatial size the adaptive pool before the head reduces to.
        min_width, max_width: bounds that size mutations respect.
        layer_kinds: what ``AddLayerMutation`` may insert: ``"block"`` (conv or linear +
            norm + activation), ``"conv"``, ``"linear"``, ``"norm"``, ``"pool"``, or an
            activation name.
        batch_sizes: what ``BatchSizeMutation`` may choose (smaller batches cost more
            time per epoch).

    Example:
        >>> import numpy as np, torch
        >>> net = SearchSpace(widths=(8,)).build((1, 40), 10, np.random.default_rng(0))
        >>> net(torch.zeros(2, 1, 40)).shape
        torch.Size([2, 10])
    """

    widths: tuple[int, ...] = (8, 16, 24, 32)
    min_depth: int = 2
    max_depth: int = 3
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    stem_kernel: int | None = 5
    activations: tuple[str, ...] = ("relu", "gelu", "silu")
    norm: bool = True
    pooled_size: int = 4
    min_width: int = 2
    max_width: int = 256
    layer_kinds: tuple[str, ...] = ("block", "conv", "norm", "pool", "relu")
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)

    def __post_init__(self) -> None:
        if not 1 <= self.min_depth <= self.max_depth:
            raise ConfigError(
                f"need 1 <= min_depth <= max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if not 1 <= self.min_width <= self.max_width:
            raise ConfigError(
                f"need 1 <= min_width <= max_width, got {self.min_width}, {self.max_width}"
            )
        _check_choices("widths", self.widths)
        if any(not self.min_width <= w <= self.max_width for w in self.widths):
            raise ConfigError(f"widths {self.widths} must lie in [min_width, max_width]")
        _check_choices("kernel_sizes", self.kernel_sizes)
        if any(k < 1 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes must be positive, got {self.kernel_sizes}")
        _check_choices("activations", self.activations, ACTIVATIONS)
        kinds = {"block", "conv", "linear", "norm", "pool", *ACTIVATIONS}
        _check_choices("layer_kinds", self.layer_kinds, kinds)
        if len(self.batch_sizes) < 2 or any(int(b) != b or b < 1 for b in self.batch_sizes):
            raise ConfigError(
                f"batch_sizes must list two or more positive sizes, got {self.batch_sizes}"
            )
        if self.pooled_size < 1:
            raise ConfigError(f"pooled_size must be >= 1, got {self.pooled_size}")

    def activation(self, name: str | None = None) -> nn.Module:
        """A fresh activation module (default: the first of ``activations``)."""
        return ACTIVATIONS[name or self.activations[0]]()

    def build(self, input_shape: tuple[int, ...], n_outputs: int, rng: np.random.Generator):
        """A random initial model for inputs of ``input_shape`` (one sample, channels first)."""
        shape = tuple(int(s) for s in input_shape)
        depth = int(rng.integers(self.min_depth, self.max_depth + 1))
        widths = [int(rng.choice(self.widths)) for _ in range(depth)]
        if len(shape) == 1:
            return self._mlp(shape[0], widths, n_outputs)
        if len(shape) in (2, 3):
            kernels = [int(rng.choice(self.kernel_sizes)) for _ in range(depth)]
            if self.stem_kernel is not None:
                kernels[0] = self.stem_kernel
            return self._convnet(shape, widths, kernels, n_outputs)
        raise ConfigError(
            f"the built-in search space handles inputs of shape (F,), (C, L) or (C, H, W), "
            f"not {shape}; pass model= with your own network"
        )

    def _mlp(self, n_in: int, widths: list[int], n_out: int) -> nn.Sequential:
        layers: dict[str, nn.Module] = {}
        for i, width in enumerate(widths, 1):
            layers[f"fc{i}"] = nn.Linear(n_in, width)
            if self.norm:
                layers[f"norm{i}"] = nn.BatchNorm1d(width)
            layers[f"act{i}"] = self.activation()
            n_in = width
        layers["head"] = nn.Linear(n_in, n_out)
        return nn.Sequential(OrderedDict(layers))

    def _convnet(self, shape, widths, kernels, n_out) -> nn.Sequential:
        ndim = len(shape) - 1
        conv = (nn.Conv1d, nn.Conv2d)[ndim - 1]
        norm = (nn.BatchNorm1d, nn.BatchNorm2d)[ndim - 1]
        pool = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)[ndim - 1]
        size, channels = min(shape[1:]), shape[0]
        layers: dict[str, nn.Module] = {}
        for i, (width, kernel) in enumerate(zip(widths, kernels, strict=True), 1):
            stride = 2 if size >= 2 * self.pooled_size else 1
            layers[f"conv{i}"] = conv(channels, width, kernel, stride=stride, padding=kernel // 2)
            if self.norm:
                layers[f"norm{i}"] = norm(width)
            layers[f"act{i}"] = self.activation()
            size = (size + 2 * (kernel // 2) - kernel) // stride + 1
            channels = width
        pooled = min(self.pooled_size, size)
        layers["pool"] = pool(pooled)
        layers["flatten"] = nn.Flatten()
        layers["head"] = nn.Linear(channels * pooled**ndim, n_out)
        return nn.Sequential(OrderedDict(layers))
