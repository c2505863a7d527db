"""Bring your own data: :func:`as_splits` wraps tensors, arrays or any torch ``Dataset``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from evolve.data.building import build_splits
from evolve.data.splits import TASKS, DataSplits, RawData
from evolve.data.splitting import carve
from evolve.errors import DatasetError

__all__ = ["as_splits"]


def _is_pair(data: object) -> bool:
    return isinstance(data, Sequence) and not isinstance(data, str | Dataset) and len(data) == 2


def _to_numpy(array: object, what: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{what} cannot be converted to an array: {error}") from error


def _infer_task(label: object) -> str:
    """``"classification"`` for integer labels, ``"regression"`` for anything else."""
    kind = np.asarray(label.detach().cpu() if isinstance(label, torch.Tensor) else label).dtype
    return "classification" if kind.kind in "iu" else "regression"


def _check_shape(splits: DataSplits, input_shape: Sequence[int] | None) -> DataSplits:
    if input_shape is not None and tuple(int(n) for n in input_shape) != splits.input_shape:
        raise DatasetError(
            f"wrong input shape: samples have shape {splits.input_shape} but "
            f"{tuple(input_shape)} was expected; reshape the inputs or change input_shape"
        )
    return splits


def _pair_splits(data, valid, test, task, n_classes, valid_fraction, rng, standardize, name):
    """(X, y) pairs: checked and built like a registered dataset's arrays."""
    arrays: dict[str, np.ndarray] = {}
    for split, pair in (("train", data), ("valid", valid), ("test", test)):
        if pair is None:
            continue
        if not _is_pair(pair):
            raise DatasetError(f"{split} must be an (X, y) pair like the training data")
        arrays[f"x_{split}"] = _to_numpy(pair[0], f"{split} X")
        arrays[f"y_{split}"] = _to_numpy(pair[1], f"{split} y")
    task = task or _infer_task(arrays["y_train"][:1])
    raw = RawData(task=task, n_classes=n_classes, **arrays)
    return build_splits(
        raw, name=name, valid_fraction=valid_fraction, rng=rng, standardize=standardize
    )


def _first_sample(dataset: Dataset, split: str) -> tuple[object, object]:
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DatasetError(f"the {split} dataset is empty")
    sample = dataset[0]
    if not isinstance(sample, tuple | list) or len(sample) < 2:
        raise DatasetError(
            f"{split} samples must be (input, target) pairs; sample 0 is {type(sample).__name__}"
        )
    return sample[0], sample[1]


def _cheap_labels(dataset: Dataset) -> np.ndarray | None:
    """Labels without reading samples: TensorDataset, ``.targets``, or a Subset of those."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return _to_numpy(dataset.tensors[1], "labels")
    if isinstance(dataset, Subset):
        parent = _cheap_labels(dataset.dataset)
        return None if parent is None else parent[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else _to_numpy(targets, "targets")


def _dataset_labels(dataset: Dataset) -> np.ndarray:
    labels = _cheap_labels(dataset)
    if labels is None:  # reads every sample once
        labels = np.asarray([int(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]
    return labels.reshape(-1)


def _as_dataset(part, split: str, shape: tuple[int, ...]) -> Dataset:
    """A held-out split given as a Dataset or (X, y) pair, checked against the train shape."""
    if _is_pair(part):
        part = TensorDataset(torch.as_tensor(part[0]), torch.as_tensor(part[1]))
    if not isinstance(part, Dataset):
        raise DatasetError(f"{split} must be a torch Dataset or an (X, y) pair")
    x, _ = _first_sample(part, split)
    if tuple(torch.as_tensor(x).shape) != shape:
        raise DatasetError(
            f"{split} samples have shape {tuple(torch.as_tensor(x).shape)} but training "
            f"samples have {shape}"
        )
    return part


def _dataset_splits(data, valid, test, task, n_classes, valid_fraction, rng, name) -> DataSplits:
    """Any map-style Dataset of (input, target) samples, used as it is (no copies)."""
    x, y = _first_sample(data, "train")
    shape = tuple(torch.as_tensor(x).shape)
    task = task or _infer_task(y)
    labels = None
    if task == "classification":
        labels = _cheap_labels(data)
        if labels is None and n_classes is None:
            labels = _dataset_labels(data)
        if labels is not None:
            labels = labels.reshape(-1)
            top = int(labels.max())
            n_classes = top + 1 if n_classes is None else n_classes
            if top >= n_classes:
                raise DatasetError(f"label {top} is out of range for n_classes={n_classes}")
    if valid is None:
        train_index, valid_index = carve(len(data), valid_fraction, rng, labels)
        data, valid = Subset(data, train_index.tolist()), Subset(data, valid_index.tolist())
    else:
        valid = _as_dataset(valid, "valid", shape)
    test = None if test is None else _as_dataset(test, "test", shape)
    n_outputs = n_classes if task == "classification" else int(torch.as_tensor(y).numel())
    return DataSplits(data, valid, test, task, n_classes, shape, int(n_outputs or 0), name)


def as_splits(
    data: DataSplits | Dataset | tuple,
    *,
    valid: Dataset | tuple | None = None,
    test: Dataset | tuple | None = None,
    task: str | None = None,
    n_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    valid_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    standardize: bool = False,
    name: str = "custom",
) -> DataSplits:
    """Wrap your own data as :class:`DataSplits`, inferring what a model needs to know.

    * ``(X, y)`` arrays or tensors: ``X`` of shape ``(n, *input_shape)`` becomes
      ``float32`` (values unchanged unless ``standardize``); integer ``y`` means
      classification (``int64`` labels, ``n_classes = max(y) + 1`` unless given), real
      ``y`` regression (``float32`` of shape ``(n, k)``).
    * A map-style torch ``Dataset`` of ``(input, target)`` samples is used as it is; the
      validation split is a pair of :class:`~torch.utils.data.Subset` views, stratified
      when labels are cheap to get (``TensorDataset``, a ``targets`` attribute). Without
      those and without ``n_classes``, every sample is read once to find the labels.
    * A :class:`DataSplits` is returned unchanged (after the ``input_shape`` check).

    Args:
        data: The training data (or everything, when ``valid`` is not given).
        valid: Validation data of the same kind; ``None`` carves ``valid_fraction`` of ``data``.
        test: Test data of the same kind, or ``None``.
        task: ``"classification"`` or ``"regression"``; ``None`` infers it from the labels.
        n_classes: Number of classes; ``None`` infers ``max(label) + 1``.
        input_shape: Expected shape of one input; a different shape raises.
        valid_fraction: Validation share when ``valid`` is ``None``.
        seed: Seed (or generator) for the validation split.
        standardize: Standardise inputs per channel (and regression targets) with training
            statistics; ``(X, y)`` pairs only.
        name: Name of the result.

    Returns:
        The splits.

    Raises:
        DatasetError: Unsupported data, mismatched lengths or shapes, bad labels, a wrong
            ``input_shape``, or ``standardize`` with a generic ``Dataset``.

    Example:
        >>> import torch
        >>> X, y = torch.rand(50, 3, 4, 4), torch.arange(50) % 5
        >>> splits = as_splits((X, y), valid_fraction=0.2, input_shape=(3, 4, 4))
        >>> splits.task, splits.n_classes, splits.n_train, splits.n_valid
        ('classification', 5, 40, 10)
        >>> as_splits((X, y), input_shape=(48,))
        Traceback (most recent call last):
        ...
        evolve.errors.DatasetError: wrong input shape: samples have shape (3, 4, 4) but (48,) ...
    """
    if task is not None and task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS} or None, got {task!r}")
    if not 0.0 < valid_fraction < 1.0:
        raise DatasetError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    rng = np.random.default_rng(seed)
    if isinstance(data, DataSplits):
        if valid is not None or test is not None:
            raise DatasetError("data is already a DataSplits: do not pass valid= or test=")
        return _check_shape(data, input_shape)
    if _is_pair(data):
        splits = _pair_splits(
            data, valid, test, task, n_classes, valid_fraction, rng, standardize, name
        )
        return _check_shape(splits, input_shape)
    if isinstance(data, Dataset):
        if standardize:
            raise DatasetError(
                "standardize=True needs (X, y) tensors; normalise a Dataset in its own transform"
            )
        splits = _dataset_splits(data, valid, test, task, n_classes, valid_fraction, rng, name)
        return _check_shape(splits, input_shape)
    raise DatasetError(
        f"as_splits takes a DataSplits, a torch Dataset or an (X, y) pair, got {type(data).__name__}"
    )
