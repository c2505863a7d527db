"""Datasets for the search, with no downloads at run time.

Everyday use::

    splits = load_dataset("mnist1d")                        # generated, cached as .npz
    splits = load_dataset("cifar10", root="~/data")          # native files in a local folder
    splits = as_splits((X, y))                               # your own tensors or Dataset
    splits.train, splits.valid, splits.test, splits.input_shape, splits.n_outputs

Extension: register a loader returning :class:`RawData` with :func:`register_dataset`.
Readers of the native formats live in :mod:`evolve.data.formats` and
:mod:`evolve.data.images`.
"""

from evolve.data import builtin as _builtin  # registers mnist1d, digits, diabetes
from evolve.data import native as _native  # registers mnist, fashion_mnist, cifar*, image_folder
from evolve.data.datasets import (
    DatasetEntry,
    dataset_entry,
    list_datasets,
    load_dataset,
    register_dataset,
)
from evolve.data.formats import read_cifar_binary, read_cifar_python, read_idx
from evolve.data.images import read_images, scan_image_folder
from evolve.data.safe_pickle import restricted_loads
from evolve.data.splits import DataSplits, RawData
from evolve.data.wrapping import as_splits

__all__ = [
    "DataSplits",
    "DatasetEntry",
    "RawData",
    "as_splits",
    "dataset_entry",
    "list_datasets",
    "load_dataset",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
    "read_images",
    "register_dataset",
    "restricted_loads",
    "scan_image_folder",
]

del _builtin, _native
