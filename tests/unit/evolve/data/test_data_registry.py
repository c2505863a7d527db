"""The dataset registry and load_dataset's argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from evolve.data import RawData, dataset_entry, list_datasets, load_dataset, register_dataset
from evolve.data import datasets as registry
from evolve.errors import DatasetError

BUILT_IN = [
    "cifar10", "cifar100", "diabetes", "digits", "fashion_mnist", "image_folder", "mnist",
    "mnist1d",
]  # fmt: skip


@pytest.fixture
def scratch_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _toy(root, *, rng, limit, n=20):
    """Twenty two-feature samples of two classes."""
    x = np.arange(2 * n, dtype=np.float32).reshape(n, 2)
    return RawData(x, np.arange(n) % 2)


def test_built_in_datasets_are_listed():
    assert set(BUILT_IN) <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


@pytest.mark.parametrize("name", BUILT_IN)
def test_entries_describe_themselves(name):
    entry = dataset_entry(name)
    assert entry.name == name and entry.description
    assert entry.needs_root == (name not in ("digits", "diabetes", "mnist1d"))


@pytest.mark.parametrize("alias", ["Fashion-MNIST", "FASHION_MNIST", "fashionmnist", "fashion mnist"])  # fmt: skip
def test_names_ignore_case_dashes_and_underscores(alias):
    assert dataset_entry(alias).name == "fashion_mnist"


def test_unknown_name_suggests_the_closest():
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar")
    message = str(info.value)
    assert message.startswith("unknown dataset 'cifar': did you mean 'cifar10' or 'cifar100'?")
    assert "known datasets: cifar10, cifar100, diabetes, digits" in message
    assert "\n" not in message


def test_unknown_name_without_a_close_match():
    with pytest.raises(DatasetError, match=r"^unknown dataset 'zzzz': known datasets: cifar10"):
        dataset_entry("zzzz")


def test_register_and_load_a_custom_dataset(scratch_registry):
    register_dataset("toy")(_toy)
    assert "toy" in list_datasets()
    entry = dataset_entry("toy")
    assert entry.description == "Twenty two-feature samples of two classes."
    assert entry.options() == ["n"]
    splits = load_dataset("toy", valid_fraction=0.25, n=40)
    assert (splits.n_train, splits.n_valid, splits.test) == (30, 10, None)


def test_register_twice_is_refused(scratch_registry):
    register_dataset("toy")(_toy)
    with pytest.raises(DatasetError, match=r"dataset 'TOY' is already registered \(as 'toy'\); pick another name or pass overwrite=True"):  # fmt: skip
        register_dataset("TOY")(_toy)
    register_dataset("TOY", overwrite=True, description="replaced")(_toy)
    assert dataset_entry("toy").description == "replaced"


def test_unknown_option(scratch_registry):
    register_dataset("toy")(_toy)
    with pytest.raises(DatasetError, match=r"^dataset 'toy' takes no option size; its options: n$"):
        load_dataset("toy", size=3)
    with pytest.raises(DatasetError, match=r"dataset 'digits' takes no option colour; its options: test_fraction"):  # fmt: skip
        load_dataset("digits", colour="red")


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_valid_fraction_out_of_range(fraction):
    with pytest.raises(DatasetError, match=rf"^valid_fraction must lie in \(0, 1\), got {fraction}$"):  # fmt: skip
        load_dataset("digits", valid_fraction=fraction)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True, "10"])
def test_limit_must_be_a_positive_integer(limit):
    with pytest.raises(DatasetError, match=r"^limit must be a positive integer or None, got "):
        load_dataset("digits", limit=limit)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist", "image_folder"])
def test_file_datasets_need_root(name):
    with pytest.raises(DatasetError, match=rf"^dataset '{name}' reads local files: pass root="):
        load_dataset(name)


def test_generated_datasets_take_no_root(tmp_path):
    with pytest.raises(DatasetError, match=r"^dataset 'digits' needs no files: drop root="):
        load_dataset("digits", root=tmp_path)


def test_loader_receives_path_and_generator(scratch_registry, tmp_path):
    seen = {}

    @register_dataset("spy", needs_root=True)
    def spy(root, *, rng, limit):
        seen.update(root=root, rng=rng, limit=limit)
        return _toy(root, rng=rng, limit=limit)

    load_dataset("spy", root=str(tmp_path), limit=7)
    assert seen["root"] == tmp_path and seen["limit"] == 7
    assert isinstance(seen["rng"], np.random.Generator)
