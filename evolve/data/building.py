"""From :class:`~evolve.data.splits.RawData` to :class:`~evolve.data.splits.DataSplits`.

A short pipeline of named steps: check the arrays, cap the sample counts (``limit``), carve
the validation split, compute training statistics, convert to tensors.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import TensorDataset

from evolve.data.splits import TASKS, DataSplits, RawData
from evolve.data.splitting import carve, channel_stats, pick, to_standardized_float
from evolve.errors import DatasetError

__all__ = ["build_splits", "check_raw"]

_SPLITS = ("train", "valid", "test")


def _check_inputs(x: np.ndarray, y: np.ndarray, split: str) -> None:
    """Shape and type checks of one split's inputs against its labels."""
    if x.ndim < 2:
        raise DatasetError(
            f"{split} inputs must have shape (samples, *input_shape), got {x.shape}; "
            "add a feature axis, e.g. X.reshape(-1, 1)"
        )
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{split} inputs must be numeric, got dtype {x.dtype}")
    if len(x) != len(y):
        raise DatasetError(
            f"{split} inputs hold {len(x)} samples but the labels hold {len(y)}; they must match"
        )


def _check_labels(y: np.ndarray, split: str) -> np.ndarray:
    """Classification labels: integers >= 0 of shape ``(n,)``."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(
            f"{split} classification labels must be integers of shape (n,), got {y.dtype} of "
            f"shape {y.shape}; pass task='regression' for real-valued targets"
        )
    if y.size and y.min() < 0:
        raise DatasetError(f"{split} labels must be >= 0, found {int(y.min())}")
    return y.astype(np.int64, copy=False)


def _check_targets(y: np.ndarray, split: str) -> np.ndarray:
    """Regression targets: numbers of shape ``(n, k)`` (``(n,)`` becomes ``(n, 1)``)."""
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.dtype.kind not in "biuf":
        raise DatasetError(
            f"{split} regression targets must be numbers of shape (n,) or (n, k), got "
            f"{y.dtype} of shape {y.shape}"
        )
    return y


def check_raw(raw: RawData) -> RawData:
    """Validate a loader's arrays and bring the labels to their canonical form.

    Args:
        raw: The arrays to check.

    Returns:
        A copy whose labels are ``int64`` ``(n,)`` (classification) or ``(n, k)`` targets
        (regression), and whose ``n_classes`` is set (inferred as ``max(label) + 1``).

    Raises:
        DatasetError: Unknown task, missing labels, empty training data, inputs without a
            sample axis, non-numeric inputs, mismatched lengths, sample shapes that differ
            between splits, bad labels, or labels outside ``0 .. n_classes - 1``.

    Example:
        >>> raw = check_raw(RawData(np.zeros((3, 2)), np.array([0, 2, 1], np.uint8)))
        >>> raw.n_classes, raw.y_train.dtype
        (3, dtype('int64'))
    """
    if raw.task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS}, got {raw.task!r}")
    changes: dict[str, np.ndarray] = {}
    shape = None
    for split in _SPLITS:
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if x is None and y is None:
            continue
        if x is None or y is None:
            raise DatasetError(f"{split} split has {'labels' if x is None else 'inputs'} only")
        x, y = np.asarray(x), np.asarray(y)
        _check_inputs(x, y, split)
        if shape is None and len(x) == 0:
            raise DatasetError("the training split is empty")
        if shape is not None and x.shape[1:] != shape:
            raise DatasetError(
                f"{split} samples have shape {x.shape[1:]} but training samples have {shape}"
            )
        shape = x.shape[1:]
        check = _check_labels if raw.task == "classification" else _check_targets
        changes[f"x_{split}"], changes[f"y_{split}"] = x, check(y, split)
    n_classes = raw.n_classes
    if raw.task == "classification":
        labels = [changes[f"y_{s}"] for s in _SPLITS if f"y_{s}" in changes]
        top = max(int(y.max()) for y in labels if y.size)
        if n_classes is None:
            n_classes = top + 1
        elif top >= n_classes:
            raise DatasetError(f"label {top} is out of range for n_classes={n_classes}")
    return replace(raw, n_classes=n_classes, **changes)


def _take(x: np.ndarray | None, y: np.ndarray | None, index: np.ndarray):
    return (None, None) if x is None or y is None else (x[index], y[index])


def _tensors(x: np.ndarray, y: np.ndarray, raw: RawData, stats: dict) -> TensorDataset:
    inputs = to_standardized_float(x, raw.pixel_scale, stats.get("mean"), stats.get("std"))
    if raw.task == "classification":
        return TensorDataset(torch.from_numpy(inputs), torch.from_numpy(y.astype(np.int64)))
    targets = y.astype(np.float32)
    if "target_mean" in stats:
        targets = (targets - stats["target_mean"]) / stats["target_std"]
    return TensorDataset(torch.from_numpy(inputs), torch.from_numpy(targets.astype(np.float32)))


def build_splits(
    raw: RawData,
    *,
    name: str,
    valid_fraction: float,
    rng: np.random.Generator,
    limit: int | None = None,
    standardize: bool = True,
) -> DataSplits:
    """Check, cap, split, standardise and convert a loader's arrays.

    Args:
        raw: Arrays from a loader.
        name: Dataset name for the result.
        valid_fraction: Validation share carved from the training data when ``raw`` has no
            validation split; stratified for classification.
        rng: Random generator for ``limit`` subsets and the validation split.
        limit: Keep at most this many samples in the training pool (before the validation
            split), in the test split and in a given validation split; stratified subsets.
        standardize: Standardise inputs per channel (and regression targets) with training
            statistics.

    Returns:
        The splits as tensor datasets.

    Example:
        >>> raw = RawData(np.arange(20.0).reshape(10, 2), np.array([0, 1] * 5))
        >>> splits = build_splits(raw, name="toy", valid_fraction=0.2,
        ...                       rng=np.random.default_rng(0))
        >>> splits.n_train, splits.n_valid, len(splits.mean)
        (8, 2, 2)
        >>> splits.train.tensors[0].mean(dim=0).abs().max().item() < 1e-6
        True
    """
    raw = check_raw(raw)
    classes = raw.task == "classification"
    if limit is not None:
        for split in ("train", "valid", "test"):
            x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
            if x is not None:
                index = pick(len(x), limit, rng, y if classes else None)
                x, y = _take(x, y, index)
                raw = replace(raw, **{f"x_{split}": x, f"y_{split}": y})
    if raw.x_valid is None:
        train, valid = carve(
            len(raw.x_train), valid_fraction, rng, raw.y_train if classes else None
        )
        x_valid, y_valid = _take(raw.x_train, raw.y_train, valid)
        x_train, y_train = _take(raw.x_train, raw.y_train, train)
        raw = replace(raw, x_train=x_train, y_train=y_train, x_valid=x_valid, y_valid=y_valid)
    stats: dict[str, np.ndarray] = {}
    if standardize:
        stats["mean"], stats["std"] = channel_stats(raw.x_train, raw.pixel_scale)
        if not classes:
            targets = raw.y_train.astype(np.float64)
            stats["target_mean"], stats["target_std"] = channel_stats(targets)
    datasets = {
        split: _tensors(getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}"), raw, stats)
        for split in _SPLITS
        if getattr(raw, f"x_{split}") is not None
    }
    as_tuple = {key: tuple(float(v) for v in value) for key, value in stats.items()}
    n_outputs = raw.n_classes if classes else raw.y_train.shape[1]
    return DataSplits(
        datasets["train"],
        datasets["valid"],
        datasets.get("test"),
        raw.task,
        raw.n_classes if classes else None,
        tuple(int(n) for n in raw.x_train.shape[1:]),
        int(n_outputs),
        name,
        pixel_scale=raw.pixel_scale,
        classes=raw.classes,
        **as_tuple,
    )
