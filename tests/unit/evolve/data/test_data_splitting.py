"""Stratified subsets and splits, per-channel statistics and conversion."""

from __future__ import annotations

import numpy as np
import pytest

from evolve.data.splitting import carve, channel_stats, pick, to_standardized_float
from evolve.errors import DatasetError


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_pick_is_stratified_exact_and_sorted():
    labels = _labels([50, 30, 20])
    chosen = pick(100, 10, np.random.default_rng(0), labels)
    assert len(chosen) == 10 and np.all(np.diff(chosen) > 0)
    assert np.bincount(labels[chosen]).tolist() == [5, 3, 2]


def test_pick_largest_remainder_keeps_total():
    labels = _labels([7, 7, 7])
    chosen = pick(21, 10, np.random.default_rng(0), labels)
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1


def test_pick_everything_and_unstratified():
    rng = np.random.default_rng(0)
    assert pick(5, 9, rng).tolist() == [0, 1, 2, 3, 4]
    chosen = pick(100, 7, rng)
    assert len(set(chosen.tolist())) == 7 and chosen.max() < 100


def test_pick_is_deterministic_per_seed():
    labels = _labels([40, 60])
    first = pick(100, 20, np.random.default_rng(3), labels)
    again = pick(100, 20, np.random.default_rng(3), labels)
    other = pick(100, 20, np.random.default_rng(4), labels)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(("n", "fraction", "n_carved"), [(4000, 0.1, 400), (10, 0.01, 1), (3, 0.99, 2)])  # fmt: skip
def test_carve_sizes(n, fraction, n_carved):
    rest, carved = carve(n, fraction, np.random.default_rng(0))
    assert len(carved) == n_carved and len(rest) == n - n_carved
    assert sorted(np.concatenate([rest, carved]).tolist()) == list(range(n))


def test_carve_stratified_proportions():
    labels = _labels([500, 300, 200])
    _, carved = carve(1000, 0.1, np.random.default_rng(0), labels)
    assert np.bincount(labels[carved]).tolist() == [50, 30, 20]


@pytest.mark.parametrize("n", [0, 1])
def test_carve_needs_two_samples(n):
    with pytest.raises(DatasetError, match=rf"cannot split {n} sample.* need at least 2"):
        carve(n, 0.5, np.random.default_rng(0))


def test_channel_stats_per_channel_and_per_feature():
    rng = np.random.default_rng(0)
    x = (
        rng.normal(size=(5000, 3, 4, 4)) * np.array([1, 2, 3])[:, None, None]
        + np.array([0, 10, -5])[:, None, None]
    )
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, [0, 10, -5], atol=0.1)
    np.testing.assert_allclose(std, [1, 2, 3], rtol=0.05)
    features = np.stack([np.arange(10.0), np.full(10, 4.0)], axis=1)
    mean, std = channel_stats(features)
    np.testing.assert_allclose(mean, [4.5, 4.0])
    np.testing.assert_allclose(std, [np.arange(10.0).std(), 1.0])  # constant feature: std 1


def test_channel_stats_with_scale_matches_float_path():
    x = np.random.default_rng(0).integers(0, 256, (10000, 2, 3, 3), dtype=np.uint8)
    mean, std = channel_stats(x, 255.0)
    np.testing.assert_allclose(mean, (x / 255.0).mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, (x / 255.0).std(axis=(0, 2, 3)), rtol=1e-6)


def test_to_standardized_float():
    x = np.random.default_rng(0).integers(0, 256, (9000, 3, 2, 2), dtype=np.uint8)
    mean, std = channel_stats(x, 255.0)
    out = to_standardized_float(x, 255.0, mean, std)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, atol=1e-4)
    plain = to_standardized_float(x[:2])
    np.testing.assert_array_equal(plain, x[:2].astype(np.float32))
