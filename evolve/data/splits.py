"""The two data types: :class:`RawData` (what a loader reads) and :class:`DataSplits` (what
the search trains and scores on).

Conventions, shared by every loader:

* ``input_shape`` is per sample and channels first: ``(C, H, W)`` for images (digits are
  ``(1, 8, 8)``), ``(C, L)`` for signals (MNIST-1D is ``(1, 40)``: one channel of 40 steps),
  ``(F,)`` for feature vectors (diabetes is ``(10,)``). :meth:`DataSplits.flat` gives the
  ``(C * H * W,)`` view that multilayer perceptrons want.
* Inputs are ``float32``. Images are first divided by ``pixel_scale`` (255 for 8-bit
  pixels, 16 for digits) into ``[0, 1]``, then standardised per channel with the mean and
  standard deviation of the *training* split only (``mean``, ``std``), so validation and
  test data never leak into the statistics. Feature vectors are standardised per feature.
* Classification labels are ``int64`` of shape ``(n,)``; regression targets are ``float32``
  of shape ``(n, n_outputs)``, standardised with training statistics
  (``target_mean``, ``target_std``) when the loader standardises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from torch.utils.data import Dataset, TensorDataset

from evolve.errors import DatasetError

__all__ = ["TASKS", "DataSplits", "RawData"]

#: The tasks a dataset can pose.
TASKS = ("classification", "regression")
Task = Literal["classification", "regression"]


@dataclass
class RawData:
    """Arrays as a loader reads them, before subsetting, splitting and standardising.

    A function registered with :func:`~evolve.data.register_dataset` returns one of these;
    :func:`~evolve.data.load_dataset` turns it into :class:`DataSplits`.

    Attributes:
        x_train: Training inputs, shape ``(n, *input_shape)``, any numeric type.
        y_train: Training labels (integers) or targets (floats, ``(n,)`` or ``(n, k)``).
        x_test: Test inputs, or ``None`` when the dataset has no test split.
        y_test: Test labels or targets.
        x_valid: Validation inputs when the source has its own; otherwise ``None`` and a
            validation share is carved from the training data.
        y_valid: Validation labels or targets.
        task: ``"classification"`` or ``"regression"``.
        n_classes: Number of classes; ``None`` infers ``max(label) + 1``.
        classes: Class names, index ``i`` naming label ``i``, if known.
        pixel_scale: Divisor bringing raw pixel values to ``[0, 1]``, or ``None``.

    Example:
        >>> import numpy as np
        >>> raw = RawData(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
        >>> raw.task, raw.x_test
        ('classification', None)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    task: Task = "classification"
    n_classes: int | None = None
    classes: tuple[str, ...] | None = None
    pixel_scale: float | None = None


class _FlatView(Dataset):
    """A dataset whose samples are those of another, inputs flattened to one axis."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index):
        x, *rest = self.dataset[index]
        return (x.reshape(-1), *rest)


def _flatten(dataset: Dataset | None) -> Dataset | None:
    if dataset is None:
        return None
    if isinstance(dataset, TensorDataset):
        x, *rest = dataset.tensors
        return TensorDataset(x.reshape(len(x), -1), *rest)
    return _FlatView(dataset)


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train, validation and (optional) test data with what a model needs to know about them.

    Attributes:
        train: Training samples ``(x, y)``; a :class:`~torch.utils.data.TensorDataset` for
            every built-in dataset, any map-style :class:`~torch.utils.data.Dataset` otherwise.
        valid: Validation samples (carved from the training data unless given).
        test: Test samples, or ``None``.
        task: ``"classification"`` or ``"regression"``.
        n_classes: Number of classes (classification), else ``None``.
        input_shape: Shape of one input, channels first (see the module notes).
        n_outputs: Model outputs needed: ``n_classes``, or the number of regression targets.
        name: Dataset name.
        mean: Per-channel (or per-feature) mean subtracted from inputs, or ``None``.
        std: Per-channel standard deviation inputs were divided by, or ``None``.
        pixel_scale: Divisor applied to raw pixels before standardising, or ``None``.
        target_mean: Per-target mean subtracted from regression targets, or ``None``.
        target_std: Per-target standard deviation they were divided by, or ``None``.
        classes: Class names, if known.

    Example:
        >>> import torch
        >>> data = TensorDataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]))
        >>> splits = DataSplits(data, data, None, "classification", 2, (1, 2, 2), 2, "toy")
        >>> splits
        DataSplits('toy', classification, train=4, valid=4, test=None, input_shape=(1, 2, 2), n_outputs=2)
        >>> splits.flat().input_shape
        (4,)
    """

    train: Dataset
    valid: Dataset
    test: Dataset | None
    task: Task
    n_classes: int | None
    input_shape: tuple[int, ...]
    n_outputs: int
    name: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    pixel_scale: float | None = None
    target_mean: tuple[float, ...] | None = None
    target_std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DatasetError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "classification" and (
            self.n_classes is None or self.n_classes < 2 or self.n_outputs != self.n_classes
        ):
            raise DatasetError(
                f"classification needs n_classes >= 2 and n_outputs == n_classes, "
                f"got n_classes={self.n_classes}, n_outputs={self.n_outputs}"
            )
        if not self.input_shape or any(int(n) < 1 for n in self.input_shape):
            raise DatasetError(
                f"input_shape must be a non-empty tuple of positive sizes, got {self.input_shape}"
            )

    @property
    def n_train(self) -> int:
        """Number of training samples."""
        return len(self.train)  # type: ignore[arg-type]

    @property
    def n_valid(self) -> int:
        """Number of validation samples."""
        return len(self.valid)  # type: ignore[arg-type]

    @property
    def n_test(self) -> int:
        """Number of test samples (0 when there is no test split)."""
        return 0 if self.test is None else len(self.test)  # type: ignore[arg-type]

    def flat(self) -> DataSplits:
        """The same splits with every input flattened to shape ``(prod(input_shape),)``.

        Tensor datasets are reshaped without copying; other datasets are wrapped in a view
        that flattens each sample as it is read.

        Returns:
            A new :class:`DataSplits`; normalisation statistics are kept as they were.

        Example:
            >>> import torch
            >>> data = TensorDataset(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 2]))
            >>> splits = DataSplits(data, data, data, "classification", 3, (1, 8, 8), 3, "x")
            >>> splits.flat().input_shape, splits.flat().train[0][0].shape
            ((64,), torch.Size([64]))
        """
        return replace(
            self,
            train=_flatten(self.train),
            valid=_flatten(self.valid),
            test=_flatten(self.test),
            input_shape=(math.prod(self.input_shape),),
        )

    def __repr__(self) -> str:
        return (
            f"DataSplits({self.name!r}, {self.task}, train={self.n_train}, valid={self.n_valid}, "
            f"test={self.n_test if self.test is not None else None}, input_shape={self.input_shape}, n_outputs={self.n_outputs})"
        )
