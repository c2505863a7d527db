"""Deterministic subsets and splits, and per-channel standardisation, on numpy arrays.

Every choice draws from a :class:`numpy.random.Generator` passed in. Classification subsets
are *stratified*: each class gets its share of the subset by largest remainder, so the total
is exact and class proportions are kept to within one sample. Chosen indices come back
sorted, so subsets keep the original sample order.
"""

from __future__ import annotations

import numpy as np

from evolve.errors import DatasetError

__all__ = ["carve", "channel_stats", "pick", "to_standardized_float"]

_CHUNK = 4096  # samples per block when converting, to bound temporary memory


def _allocate(counts: np.ndarray, n: int) -> np.ndarray:
    """Split ``n`` over groups proportionally to ``counts`` (largest remainder, exact sum)."""
    quotas = counts * (n / counts.sum())
    shares = np.floor(quotas).astype(np.int64)
    remainder = n - int(shares.sum())
    order = np.argsort(-(quotas - shares), kind="stable")
    shares[order[:remainder]] += 1
    return shares


def pick(n_total: int, n: int, rng: np.random.Generator, labels: np.ndarray | None = None):
    """Choose ``n`` of ``n_total`` sample indices, stratified by ``labels`` when given.

    Args:
        n_total: Number of samples to choose from.
        n: Number to choose; ``n >= n_total`` returns every index.
        rng: The random generator.
        labels: Class labels of the samples, or ``None`` for a plain random choice.

    Returns:
        Sorted ``int64`` indices.

    Example:
        >>> labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        >>> chosen = pick(8, 4, np.random.default_rng(0), labels)
        >>> np.bincount(labels[chosen]).tolist()
        [2, 2]
    """
    if n >= n_total:
        return np.arange(n_total, dtype=np.int64)
    if labels is None:
        return np.sort(rng.choice(n_total, size=n, replace=False)).astype(np.int64)
    classes, inverse = np.unique(labels, return_inverse=True)
    shares = _allocate(np.bincount(inverse, minlength=len(classes)), n)
    chosen = [
        rng.permutation(np.flatnonzero(inverse == c))[:share] for c, share in enumerate(shares)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def carve(
    n_total: int, fraction: float, rng: np.random.Generator, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a share off ``n_total`` samples (a validation or test split).

    The carved share holds ``round(n_total * fraction)`` samples, at least one, and leaves
    at least one behind.

    Args:
        n_total: Number of samples.
        fraction: Share to carve off, in ``(0, 1)``.
        rng: The random generator.
        labels: Class labels to stratify by, or ``None``.

    Returns:
        ``(rest, carved)`` indices, disjoint, sorted, covering ``range(n_total)``.

    Raises:
        DatasetError: Fewer than two samples.

    Example:
        >>> rest, carved = carve(10, 0.2, np.random.default_rng(0))
        >>> len(rest), len(carved)
        (8, 2)
    """
    if n_total < 2:
        raise DatasetError(
            f"cannot split {n_total} sample(s) into training and held-out parts: need at least 2"
        )
    n_carved = min(max(1, int(np.floor(n_total * fraction + 0.5))), n_total - 1)
    carved = pick(n_total, n_carved, rng, labels)
    rest = np.setdiff1d(np.arange(n_total, dtype=np.int64), carved, assume_unique=True)
    return rest, carved


def _stat_axes(ndim: int) -> tuple[int, ...]:
    """Axes to reduce for per-channel statistics: all but axis 1 (channel, or feature)."""
    return (0, *range(2, ndim))


def channel_stats(x: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per channel (axis 1) of ``x / scale``, in float64.

    Samples of shape ``(C, ...)`` get one statistic per channel; feature vectors of shape
    ``(F,)`` one per feature. A constant channel gets a standard deviation of 1, so
    standardising leaves it at zero instead of dividing by zero.

    Args:
        x: Array of shape ``(n, C, ...)`` or ``(n, F)``.
        scale: Divide by this first (255 for ``uint8`` pixels), or ``None``.

    Returns:
        ``(mean, std)``, each of shape ``(C,)``.

    Example:
        >>> mean, std = channel_stats(np.array([[0.0, 1.0], [2.0, 1.0]]))
        >>> mean.tolist(), std.tolist()
        ([1.0, 1.0], [1.0, 1.0])
    """
    axes = _stat_axes(x.ndim)
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for start in range(0, len(x), _CHUNK):
        block = x[start : start + _CHUNK].astype(np.float64)
        if scale is not None:
            block /= scale
        total += block.sum(axis=axes)
        squares += np.square(block).sum(axis=axes)
    count = x.size // x.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    std[std < 1e-8] = 1.0
    return mean, std


def to_standardized_float(
    x: np.ndarray,
    scale: float | None = None,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> np.ndarray:
    """Convert to ``float32``: divide by ``scale``, then subtract ``mean`` and divide by ``std``.

    Works block by block so a large ``uint8`` array never has a float64 copy.

    Args:
        x: Array of shape ``(n, C, ...)`` or ``(n, F)``.
        scale: Divisor bringing pixels to ``[0, 1]``, or ``None``.
        mean: Per-channel mean (axis 1) to subtract, or ``None`` to skip standardising.
        std: Per-channel standard deviation to divide by (used with ``mean``).

    Returns:
        A new ``float32`` array of the same shape.

    Example:
        >>> to_standardized_float(np.array([[0], [255]], np.uint8), 255.0).ravel().tolist()
        [0.0, 1.0]
    """
    out = np.empty(x.shape, dtype=np.float32)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    for start in range(0, len(x), _CHUNK):
        block = x[start : start + _CHUNK].astype(np.float32)
        if scale is not None:
            block /= np.float32(scale)
        if mean is not None and std is not None:
            block -= mean.astype(np.float32).reshape(shape)
            block /= std.astype(np.float32).reshape(shape)
        out[start : start + _CHUNK] = block
    return out
