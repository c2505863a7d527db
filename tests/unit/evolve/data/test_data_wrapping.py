"""as_splits: tensors, arrays, any torch Dataset, or DataSplits, with clear shape errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from evolve.data import DataSplits, as_splits, load_dataset
from evolve.errors import DatasetError


class Squares(Dataset):
    """A map-style dataset exposing nothing but __len__ and __getitem__."""

    def __init__(self, n=30, n_classes=3, regression=False):
        self.n, self.n_classes, self.regression = n, n_classes, regression
        self.reads = 0

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        self.reads += 1
        x = torch.full((2, 3), float(index))
        y = torch.tensor([float(index) ** 2]) if self.regression else index % self.n_classes
        return x, y


class WithTargets(Squares):
    @property
    def targets(self):
        return [i % self.n_classes for i in range(self.n)]


# --- (X, y) pairs ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["torch", "numpy", "list"])
def test_pairs_of_tensors_arrays_or_lists(kind):
    X = np.random.default_rng(0).integers(0, 9, (40, 3, 4)).astype(np.uint8)
    y = np.arange(40) % 4
    if kind == "torch":
        X, y = torch.from_numpy(X), torch.from_numpy(y)
    elif kind == "list":
        X, y = X.tolist(), y.tolist()
    splits = as_splits([X, y], valid_fraction=0.25)
    assert (splits.task, splits.n_classes, splits.n_outputs) == ("classification", 4, 4)
    assert (splits.n_train, splits.n_valid, splits.test) == (30, 10, None)
    x, labels = splits.train.tensors
    assert x.dtype == torch.float32 and labels.dtype == torch.int64 and splits.mean is None
    assert x.max().item() == 8.0  # values unchanged without standardize
    assert sorted(torch.bincount(splits.valid.tensors[1]).tolist()) == [2, 2, 3, 3]
    assert splits.input_shape == (3, 4) and splits.name == "custom"


def test_pairs_with_validation_test_and_standardize():
    rng = np.random.default_rng(0)
    X, y = rng.normal(5, 2, (50, 6)), rng.integers(0, 3, 50)
    splits = as_splits(
        (X, y), valid=(X[:5], y[:5]), test=(X[:7], y[:7]), standardize=True, name="mine"
    )
    assert (splits.n_train, splits.n_valid, splits.n_test) == (50, 5, 7)
    np.testing.assert_allclose(splits.train.tensors[0].mean(0).numpy(), 0, atol=1e-5)
    assert len(splits.mean) == 6 and splits.name == "mine"


def test_real_targets_mean_regression():
    X, y = torch.rand(20, 5), torch.rand(20, 2)
    splits = as_splits((X, y), seed=3)
    assert (splits.task, splits.n_classes, splits.n_outputs) == ("regression", None, 2)
    assert splits.train.tensors[1].dtype == torch.float32
    forced = as_splits((X, torch.arange(20)), task="regression")
    assert forced.task == "regression" and forced.train.tensors[1].shape[1:] == (1,)


def test_same_seed_same_split():
    X, y = torch.rand(60, 2), torch.arange(60) % 3
    first, again, other = (as_splits((X, y), seed=s) for s in (5, 5, 6))
    assert torch.equal(first.valid.tensors[0], again.valid.tensors[0])
    assert not torch.equal(first.valid.tensors[0], other.valid.tensors[0])


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        ((torch.rand(10, 3), torch.arange(9)), {}, "^train inputs hold 10 samples but the labels hold 9; they must match$"),
        ((torch.rand(10), torch.arange(10)), {}, r"^train inputs must have shape \(samples, \*input_shape\), got \(10,\)"),
        ((torch.rand(10, 3), torch.rand(10)), {"task": "classification"}, "^train classification labels must be integers"),
        ((torch.rand(10, 3), torch.arange(10)), {"n_classes": 5}, "^label 9 is out of range for n_classes=5$"),
        ((torch.rand(10, 3), torch.arange(10)), {"input_shape": (1, 3)}, r"^wrong input shape: samples have shape \(3,\) but \(1, 3\) was expected; reshape the inputs or change input_shape$"),
        ((torch.rand(10, 3), torch.arange(10)), {"valid": torch.rand(3, 3)}, r"^valid must be an \(X, y\) pair like the training data$"),
        ((torch.rand(10, 3), torch.arange(10)), {"test": (torch.rand(2, 4), torch.arange(2))}, r"^test samples have shape \(4,\) but training samples have \(3,\)$"),
        ((torch.rand(10, 3), torch.arange(10)), {"task": "ranking"}, r"^task must be one of \('classification', 'regression'\) or None, got 'ranking'$"),
        ((torch.rand(10, 3), torch.arange(10)), {"valid_fraction": 0}, r"^valid_fraction must lie in \(0, 1\), got 0$"),
        (([[1, 2], [3]], [0, 1]), {}, "^train X cannot be converted to an array: "),
        ((torch.rand(1, 3), torch.arange(1)), {}, "^cannot split 1 sample"),
        (42, {}, "^as_splits takes a DataSplits, a torch Dataset or an .X, y. pair, got int$"),
        ("ab", {}, "^as_splits takes a DataSplits, a torch Dataset or an .X, y. pair, got str$"),
    ],
)  # fmt: skip
def test_bad_input(data, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        as_splits(data, **kwargs)


# --- torch Datasets -------------------------------------------------------------------------------


def test_tensor_dataset_is_split_into_stratified_subsets():
    data = TensorDataset(torch.rand(100, 1, 4), torch.arange(100) % 5)
    splits = as_splits(data, valid_fraction=0.2)
    assert isinstance(splits.train, Subset) and splits.train.dataset is data
    assert (splits.n_train, splits.n_valid, splits.input_shape) == (80, 20, (1, 4))
    valid_labels = torch.stack([splits.valid[i][1] for i in range(20)])
    assert torch.bincount(valid_labels).tolist() == [4] * 5
    assert splits.n_classes == 5 and splits.mean is None


def test_generic_dataset_labels_read_once_unless_n_classes_given():
    data = Squares(n=30, n_classes=3)
    splits = as_splits(data, test=Squares(n=6), name="sq")
    assert splits.n_classes == 3 and splits.n_outputs == 3 and splits.input_shape == (2, 3)
    assert data.reads == 31  # the first sample, then every label once
    quick = Squares(n=30)
    as_splits(quick, n_classes=3)
    assert quick.reads == 1


def test_dataset_with_targets_attribute_and_subset_of_it():
    data = WithTargets(n=40, n_classes=4)
    splits = as_splits(Subset(data, list(range(20))), valid_fraction=0.2)
    assert data.reads == 1 and splits.n_valid == 4 and splits.n_classes == 4
    labels = [splits.valid[i][1] for i in range(4)]
    assert sorted(labels) == [0, 1, 2, 3]


def test_regression_dataset():
    splits = as_splits(Squares(regression=True), valid=(torch.rand(4, 2, 3), torch.rand(4, 1)))
    assert (splits.task, splits.n_outputs, splits.n_valid) == ("regression", 1, 4)


def test_flat_view_of_a_generic_dataset():
    flat = as_splits(Squares(), n_classes=3).flat()
    x, y = flat.train[0]
    assert x.shape == (6,) and flat.input_shape == (6,) and isinstance(y, int)


class Unlabelled(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return torch.zeros(2)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (Squares(n=0), {}, "^the train dataset is empty$"),
        (Unlabelled(), {}, r"^train samples must be \(input, target\) pairs; sample 0 is Tensor$"),
        (Squares(), {"standardize": True}, r"^standardize=True needs \(X, y\) tensors; normalise a Dataset in its own transform$"),
        (WithTargets(), {"n_classes": 2}, "^label 2 is out of range for n_classes=2$"),
        (Squares(), {"valid": [1, 2, 3]}, "^valid must be a torch Dataset or an .X, y. pair$"),
        (Squares(), {"test": TensorDataset(torch.zeros(2, 6), torch.zeros(2))}, r"^test samples have shape \(6,\) but training samples have \(2, 3\)$"),
        (Squares(), {"input_shape": (6,)}, r"^wrong input shape: samples have shape \(2, 3\) but \(6,\) was expected"),
    ],
)  # fmt: skip
def test_bad_dataset(data, kwargs, message):
    with pytest.raises(DatasetError, match=message):
        as_splits(data, **kwargs)


# --- DataSplits ---------------------------------------------------------------------------------


def test_data_splits_pass_through_with_shape_check():
    digits = load_dataset("digits", limit=50)
    assert as_splits(digits) is digits
    assert as_splits(digits, input_shape=[1, 8, 8]) is digits
    with pytest.raises(DatasetError, match=r"^wrong input shape: samples have shape \(1, 8, 8\) but \(64,\) was expected"):  # fmt: skip
        as_splits(digits, input_shape=(64,))
    assert as_splits(digits.flat(), input_shape=(64,)).input_shape == (64,)
    with pytest.raises(DatasetError, match=r"^data is already a DataSplits: do not pass valid= or test=$"):  # fmt: skip
        as_splits(digits, valid=(torch.rand(2, 64), torch.arange(2)))
    assert isinstance(digits, DataSplits)
