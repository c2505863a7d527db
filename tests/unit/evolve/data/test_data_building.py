"""From loader arrays to DataSplits: checks, limit, validation split, statistics, types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from evolve.data import DataSplits, RawData
from evolve.data.building import build_splits, check_raw
from evolve.errors import DatasetError


def _build(raw, **kwargs):
    kwargs.setdefault("valid_fraction", 0.1)
    return build_splits(raw, name="t", rng=np.random.default_rng(kwargs.pop("seed", 0)), **kwargs)


def _images(n, shape=(1, 4, 4)):
    return np.random.default_rng(n).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_images_become_standardized_float32_with_train_statistics():
    raw = RawData(_images(100), np.arange(100) % 4, _images(30), np.arange(30) % 4, pixel_scale=255.0)  # fmt: skip
    splits = _build(raw)
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-4
    # statistics come from the 90 training samples only, never from validation or test
    unscaled = _build(raw, standardize=False).train.tensors[0].double()
    assert splits.pixel_scale == 255.0
    assert splits.mean[0] == pytest.approx(unscaled.mean().item(), abs=1e-7)
    assert splits.std[0] == pytest.approx(unscaled.std(unbiased=False).item(), rel=1e-6)
    assert splits.mean[0] != pytest.approx(float((raw.x_train / 255.0).mean()), abs=1e-6)
    recovered = splits.test.tensors[0].numpy() * splits.std[0] + splits.mean[0]
    np.testing.assert_allclose(recovered, raw.x_test / 255.0, atol=1e-5)


def test_without_standardize_pixels_are_in_unit_range():
    raw = RawData(_images(50), np.arange(50) % 2, pixel_scale=255.0)
    splits = _build(raw, standardize=False)
    x = splits.train.tensors[0]
    assert x.min().item() >= 0.0 and x.max().item() <= 1.0
    assert splits.mean is None and splits.std is None and splits.test is None


def test_validation_split_is_stratified_and_deterministic():
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    raw = RawData(np.arange(100.0)[:, None], labels)
    first, again, other = _build(raw), _build(raw), _build(raw, seed=1)
    assert torch.equal(first.valid.tensors[0], again.valid.tensors[0])
    assert not torch.equal(first.valid.tensors[0], other.valid.tensors[0])
    assert torch.bincount(first.valid.tensors[1]).tolist() == [6, 3, 1]
    values = torch.cat([first.train.tensors[0], first.valid.tensors[0]])
    assert values.unique().numel() == 100  # disjoint and complete


def test_limit_caps_pool_test_and_given_validation():
    raw = RawData(
        _images(200), np.arange(200) % 10, _images(80), np.arange(80) % 10,
        x_valid=_images(60), y_valid=np.arange(60) % 10,
    )  # fmt: skip
    splits = _build(raw, limit=20)
    assert (splits.n_train, splits.n_valid, splits.n_test) == (20, 20, 20)
    assert torch.bincount(splits.train.tensors[1]).tolist() == [2] * 10
    carved = _build(RawData(_images(200), np.arange(200) % 10), limit=50)
    assert (carved.n_train, carved.n_valid) == (45, 5)


def test_regression_targets_are_standardized_columns():
    x = np.random.default_rng(0).normal(size=(60, 3))
    y = 100 + 5 * x[:, 0]
    splits = _build(RawData(x, y, x[:10], y[:10], task="regression"))
    targets = splits.train.tensors[1]
    assert targets.dtype == torch.float32 and targets.shape == (54, 1)
    assert abs(targets.mean().item()) < 1e-5 and abs(targets.std(unbiased=False).item() - 1) < 1e-4
    assert splits.n_outputs == 1 and splits.n_classes is None and len(splits.target_mean) == 1
    back = splits.test.tensors[1].numpy()[:, 0] * splits.target_std[0] + splits.target_mean[0]
    np.testing.assert_allclose(back, y[:10], rtol=1e-5)


def test_check_raw_infers_classes_and_squeezes_column_labels():
    raw = check_raw(RawData(np.zeros((4, 2)), np.array([[0], [3], [1], [1]]), np.zeros((2, 2)), np.array([5, 0])))  # fmt: skip
    assert raw.n_classes == 6 and raw.y_train.shape == (4,)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (RawData(np.zeros((3, 2)), np.zeros(3, int), task="ranking"), r"^task must be one of \('classification', 'regression'\), got 'ranking'$"),
        (RawData(np.zeros((3, 2)), np.zeros(3, int), x_test=np.zeros((3, 2))), "^test split has inputs only$"),
        (RawData(np.zeros((3, 2)), np.zeros(3, int), y_valid=np.zeros(3, int)), "^valid split has labels only$"),
        (RawData(np.zeros((0, 2)), np.zeros(0, int)), "^the training split is empty$"),
        (RawData(np.zeros(3), np.zeros(3, int)), r"^train inputs must have shape \(samples, \*input_shape\), got \(3,\); add a feature axis"),
        (RawData(np.array([["a"], ["b"]]), np.zeros(2, int)), "^train inputs must be numeric, got dtype <U1$"),
        (RawData(np.zeros((3, 2)), np.zeros(4, int)), "^train inputs hold 3 samples but the labels hold 4; they must match$"),
        (RawData(np.zeros((3, 2)), np.zeros(3, int), np.zeros((2, 3)), np.zeros(2, int)), r"^test samples have shape \(3,\) but training samples have \(2,\)$"),
        (RawData(np.zeros((3, 2)), np.zeros(3)), r"^train classification labels must be integers of shape \(n,\), got float64 of shape \(3,\); pass task='regression'"),
        (RawData(np.zeros((3, 2)), np.zeros((3, 2), int)), r"labels must be integers of shape \(n,\), got int64 of shape \(3, 2\)"),
        (RawData(np.zeros((3, 2)), np.array([0, -1, 2])), "^train labels must be >= 0, found -1$"),
        (RawData(np.zeros((3, 2)), np.array([0, 1, 2]), n_classes=2), "^label 2 is out of range for n_classes=2$"),
        (RawData(np.zeros((3, 2)), np.zeros((3, 1, 1)), task="regression"), r"^train regression targets must be numbers of shape \(n,\) or \(n, k\), got float64 of shape \(3, 1, 1\)$"),
    ],
)  # fmt: skip
def test_check_raw_errors(raw, message):
    with pytest.raises(DatasetError, match=message):
        check_raw(raw)


def _data(n=4, shape=(1, 2, 2)):
    return TensorDataset(torch.zeros(n, *shape), torch.arange(n) % 2)


def test_data_splits_validates_itself():
    ok = DataSplits(_data(), _data(), None, "regression", None, (1, 2, 2), 1, "r")
    assert ok.n_test == 0 and "test=None" in repr(ok)
    with pytest.raises(DatasetError, match=r"^task must be one of .*, got 'ranking'$"):
        DataSplits(_data(), _data(), None, "ranking", None, (1, 2, 2), 1, "r")
    with pytest.raises(DatasetError, match=r"^classification needs n_classes >= 2 and n_outputs == n_classes, got n_classes=1, n_outputs=1$"):  # fmt: skip
        DataSplits(_data(), _data(), None, "classification", 1, (1, 2, 2), 1, "c")
    with pytest.raises(DatasetError, match=r"^input_shape must be a non-empty tuple of positive sizes, got \(0, 2\)$"):  # fmt: skip
        DataSplits(_data(), _data(), None, "classification", 2, (0, 2), 2, "c")


def test_flat_view_reshapes_without_copying():
    splits = DataSplits(_data(), _data(), _data(), "classification", 2, (1, 2, 2), 2, "c")
    flat = splits.flat()
    assert flat.input_shape == (4,) and flat.train.tensors[0].shape == (4, 4)
    assert flat.train.tensors[0].data_ptr() == splits.train.tensors[0].data_ptr()
    assert flat.n_test == 4 and splits.input_shape == (1, 2, 2)  # original untouched
