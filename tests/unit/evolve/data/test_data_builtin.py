"""Datasets without files: MNIST-1D (generated, cached), scikit-learn digits and diabetes."""

from __future__ import annotations

import logging
import random
import zipfile

import numpy as np
import pytest
import torch

from evolve.data import load_dataset
from evolve.data.builtin import default_cache_dir
from evolve.errors import DatasetError

# --- digits ---------------------------------------------------------------------------------


def test_digits_sizes_types_and_statistics():
    splits = load_dataset("digits")
    assert (splits.n_train, splits.n_valid, splits.n_test) == (1294, 144, 359)
    assert splits.n_train + splits.n_valid + splits.n_test == 1797
    assert splits.task == "classification" and splits.n_classes == splits.n_outputs == 10
    assert splits.input_shape == (1, 8, 8) and splits.pixel_scale == 16.0
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and x.shape == (1294, 1, 8, 8)
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))
    assert abs(x.mean().item()) < 1e-5 and abs(x.std(unbiased=False).item() - 1) < 1e-4
    assert 0 < splits.mean[0] < 1 and splits.classes == tuple("0123456789")


def test_digits_raw_pixels_in_unit_range():
    x = load_dataset("digits", standardize=False).train.tensors[0]
    assert x.min().item() == 0.0 and x.max().item() == 1.0


def test_digits_split_is_deterministic_stratified_and_test_is_fixed():
    first, again, other = (load_dataset("digits", seed=s) for s in (0, 0, 1))
    assert torch.equal(first.valid.tensors[0], again.valid.tensors[0])
    assert torch.equal(first.train.tensors[1], again.train.tensors[1])
    assert not torch.equal(first.valid.tensors[0], other.valid.tensors[0])
    # the held-out test set does not move with the seed (up to standardisation)
    assert torch.equal(first.test.tensors[1], other.test.tensors[1])
    counts = torch.bincount(first.valid.tensors[1], minlength=10)
    assert counts.min().item() >= 13 and counts.max().item() <= 16


def test_digits_limit_and_flat_view():
    splits = load_dataset("digits", limit=100, flat=True, seed=3)
    assert (splits.n_train, splits.n_valid, splits.n_test) == (90, 10, 100)
    assert splits.input_shape == (64,) and splits.train.tensors[0].shape == (90, 64)
    assert torch.bincount(splits.valid.tensors[1]).tolist() == [1] * 10


@pytest.mark.parametrize("name", ["digits", "diabetes"])
@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_test_fraction_out_of_range(name, fraction):
    with pytest.raises(DatasetError, match=rf"^test_fraction must lie in \(0, 1\), got {fraction}$"):  # fmt: skip
        load_dataset(name, test_fraction=fraction)


# --- diabetes (regression) --------------------------------------------------------------------


def test_diabetes_is_standardized_regression():
    splits = load_dataset("diabetes")
    assert splits.task == "regression" and splits.n_classes is None and splits.n_outputs == 1
    assert (splits.n_train, splits.n_valid, splits.n_test) == (319, 35, 88)
    assert splits.input_shape == (10,)
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.float32 and y.shape == (319, 1)
    np.testing.assert_allclose(x.mean(0).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(0, unbiased=False).numpy(), 1, atol=1e-4)
    assert abs(y.mean().item()) < 1e-5 and abs(y.std(unbiased=False).item() - 1) < 1e-4
    # the reported scaling maps targets back to disease progression (25 .. 346)
    original = splits.test.tensors[1] * splits.target_std[0] + splits.target_mean[0]
    assert original.min().item() >= 25 and original.max().item() <= 346
    assert 140 < splits.target_mean[0] < 165 and len(splits.mean) == len(splits.std) == 10


def test_diabetes_limit_is_a_random_subset():
    splits = load_dataset("diabetes", limit=50, seed=1)
    assert (splits.n_train, splits.n_valid, splits.n_test) == (45, 5, 50)


# --- MNIST-1D ---------------------------------------------------------------------------------


@pytest.fixture
def cold_cache(tmp_path):
    return tmp_path / "cache"


def test_mnist1d_default_split_and_cache(cold_cache):
    splits = load_dataset("mnist1d", cache_dir=cold_cache)
    assert (splits.n_train + splits.n_valid, splits.n_test) == (4000, 1000)
    assert (splits.n_train, splits.n_valid) == (3600, 400)
    assert splits.input_shape == (1, 40) and splits.n_classes == 10
    x, y = splits.train.tensors
    assert x.dtype == torch.float32 and x.shape == (3600, 1, 40) and y.dtype == torch.int64
    assert torch.bincount(splits.valid.tensors[1]).min().item() >= 35
    (cached,) = cold_cache.iterdir()
    assert cached.suffix == ".npz"
    with zipfile.ZipFile(cached) as archive:  # plain arrays, no pickled objects
        assert sorted(archive.namelist()) == ["x.npy", "x_test.npy", "y.npy", "y_test.npy"]
    with np.load(cached, allow_pickle=False) as stored:
        assert stored["x"].shape == (4000, 40) and stored["x_test"].shape == (1000, 40)
    warm = load_dataset("mnist1d", cache_dir=cold_cache)
    for split in ("train", "valid", "test"):
        for a, b in zip(getattr(splits, split).tensors, getattr(warm, split).tensors, strict=True):
            assert torch.equal(a, b)


def test_mnist1d_restores_global_random_state(cold_cache):
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    load_dataset("mnist1d", cache_dir=cold_cache, args={"num_samples": 200}, cache=False)
    assert (random.random(), np.random.random()) == expected


def test_mnist1d_args_key_the_cache(cold_cache):
    small = load_dataset("mnist1d", cache_dir=cold_cache, args={"num_samples": 200})
    other = load_dataset("mnist1d", cache_dir=cold_cache, args={"num_samples": 200, "seed": 1})
    assert small.n_train + small.n_valid == 160 and small.n_test == 40
    assert not torch.equal(small.test.tensors[0], other.test.tensors[0])
    assert len(list(cold_cache.iterdir())) == 2


def test_mnist1d_without_cache_writes_nothing(cold_cache):
    load_dataset("mnist1d", cache_dir=cold_cache, args={"num_samples": 100}, cache=False)
    assert not cold_cache.exists()


def test_mnist1d_corrupt_cache_is_regenerated(cold_cache, caplog):
    args = {"num_samples": 100}
    first = load_dataset("mnist1d", cache_dir=cold_cache, args=args)
    (cached,) = cold_cache.iterdir()
    cached.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="evolve.data.builtin"):
        again = load_dataset("mnist1d", cache_dir=cold_cache, args=args)
    assert "ignoring unreadable MNIST-1D cache" in caplog.text
    assert torch.equal(first.test.tensors[0], again.test.tensors[0])
    with np.load(cached, allow_pickle=False) as stored:
        assert stored["x"].shape == (80, 40)


def test_mnist1d_unwritable_cache_warns_and_still_loads(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="evolve.data.builtin"):
        splits = load_dataset("mnist1d", cache_dir=blocker / "sub", args={"num_samples": 100})
    assert splits.n_test == 20 and "cannot cache MNIST-1D" in caplog.text


@pytest.mark.parametrize("key", ["url", "colour"])
def test_mnist1d_unknown_args(cold_cache, key):
    with pytest.raises(DatasetError, match=rf"^unknown MNIST-1D argument\(s\) {key} \(nothing is downloaded\); known: corr_noise_scale, "):  # fmt: skip
        load_dataset("mnist1d", cache_dir=cold_cache, args={key: 1})


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MUTNAS_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("MUTNAS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mutnas"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir().parts[-2:] == (".cache", "mutnas")
