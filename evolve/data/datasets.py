"""Datasets by name: a registry of loaders filled by decorators, and :func:`load_dataset`.

A loader is a function ``loader(root, *, rng, limit, **options) -> RawData`` registered
with :func:`register_dataset`. It reads arrays (``root`` is a :class:`~pathlib.Path` or
``None``); :func:`load_dataset` then caps, splits and standardises them the same way for
every dataset (see :mod:`evolve.data.splits` for the conventions). Nothing is downloaded:
built-in datasets are generated (MNIST-1D), bundled with scikit-learn (digits, diabetes) or
read from a local folder in their native file format (MNIST, Fashion-MNIST, CIFAR, images).

Names are matched ignoring case, ``-`` and ``_``: ``"Fashion-MNIST"`` is ``"fashion_mnist"``.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evolve.data.building import build_splits
from evolve.data.splits import DataSplits, RawData
from evolve.errors import DatasetError

__all__ = [
    "DataSplits",
    "DatasetEntry",
    "RawData",
    "dataset_entry",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

Loader = Callable[..., RawData]
_FIXED_ARGUMENTS = ("root", "rng", "limit")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    Attributes:
        name: The name it was registered under.
        loader: ``loader(root, *, rng, limit, **options) -> RawData``.
        needs_root: Whether ``load_dataset`` must be given a ``root`` folder.
        description: One line shown by listings.
    """

    name: str
    loader: Loader
    needs_root: bool
    description: str

    def options(self) -> list[str]:
        """Names of the extra keyword options the loader accepts."""
        parameters = inspect.signature(self.loader).parameters.values()
        return [
            p.name
            for p in parameters
            if p.name not in _FIXED_ARGUMENTS and p.kind is not p.VAR_KEYWORD
        ]


_REGISTRY: dict[str, DatasetEntry] = {}


def _key(name: str) -> str:
    return re.sub(r"[\s_-]", "", name.lower())


def register_dataset(
    name: str, *, needs_root: bool = False, description: str = "", overwrite: bool = False
) -> Callable[[Loader], Loader]:
    """Decorator registering ``loader(root, *, rng, limit, **options) -> RawData`` by name.

    Args:
        name: Name for :func:`load_dataset` (matched ignoring case, ``-`` and ``_``).
        needs_root: Require a ``root`` folder argument.
        description: One line for listings; defaults to the first line of the docstring.
        overwrite: Replace a dataset already registered under this name.

    Returns:
        The decorator; it returns the loader unchanged.

    Raises:
        DatasetError: The name is taken and ``overwrite`` is false.

    Example:
        >>> import numpy as np
        >>> @register_dataset("toy_xor", overwrite=True)
        ... def toy_xor(root, *, rng, limit):
        ...     x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 5, dtype=np.float32)
        ...     return RawData(x, (x[:, 0] != x[:, 1]).astype(np.int64))
        >>> load_dataset("toy_xor", valid_fraction=0.2).n_train
        16
    """

    def decorator(loader: Loader) -> Loader:
        key = _key(name)
        if key in _REGISTRY and not overwrite:
            raise DatasetError(
                f"dataset {name!r} is already registered (as {_REGISTRY[key].name!r}); "
                "pick another name or pass overwrite=True"
            )
        text = description or (inspect.getdoc(loader) or "").partition("\n")[0]
        _REGISTRY[key] = DatasetEntry(name, loader, needs_root, text)
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted.

    Returns:
        The names as registered.

    Example:
        >>> {"digits", "mnist1d", "cifar10"} <= set(list_datasets())
        True
    """
    return sorted(entry.name for entry in _REGISTRY.values())


def dataset_entry(name: str) -> DatasetEntry:
    """Look up a registered dataset.

    Args:
        name: The dataset name (case, ``-`` and ``_`` ignored).

    Returns:
        Its registry entry.

    Raises:
        DatasetError: No dataset has that name; the message suggests the closest ones.

    Example:
        >>> dataset_entry("Fashion-MNIST").name
        'fashion_mnist'
    """
    try:
        return _REGISTRY[_key(name)]
    except KeyError:
        pass
    names = list_datasets()
    close = difflib.get_close_matches(name.lower(), names, n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise DatasetError(f"unknown dataset {name!r}: {hint}known datasets: {', '.join(names)}")


def _check_arguments(entry: DatasetEntry, root, valid_fraction, limit, options) -> None:
    """Validate load_dataset's arguments before any file is touched."""
    if not 0.0 < valid_fraction < 1.0:
        raise DatasetError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive integer or None, got {limit!r}")
    if entry.needs_root and root is None:
        raise DatasetError(
            f"dataset {entry.name!r} reads local files: pass root= (the folder holding them)"
        )
    if not entry.needs_root and root is not None:
        raise DatasetError(f"dataset {entry.name!r} needs no files: drop root={str(root)!r}")
    try:
        inspect.signature(entry.loader).bind(root, rng=None, limit=limit, **options)
    except TypeError:
        unknown = sorted(set(options) - set(entry.options()))
        raise DatasetError(
            f"dataset {entry.name!r} takes no option {', '.join(unknown)}; "
            f"its options: {', '.join(entry.options()) or 'none'}"
        ) from None


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    valid_fraction: float = 0.1,
    seed: int | np.random.Generator = 0,
    limit: int | None = None,
    standardize: bool = True,
    flat: bool = False,
    **options,
) -> DataSplits:
    """Load a registered dataset as train, validation and test tensors.

    Args:
        name: A name from :func:`list_datasets`: ``"mnist1d"``, ``"digits"``,
            ``"diabetes"`` (regression), ``"cifar10"``, ``"cifar100"``, ``"mnist"``,
            ``"fashion_mnist"``, ``"image_folder"``.
        root: Folder holding the dataset's native files (file-based datasets only): the
            folder itself or its parent holding the canonical subfolder (for example
            ``cifar-10-batches-bin``).
        valid_fraction: Share of the training data held out for validation, stratified by
            class for classification.
        seed: Seed (or generator) for the validation split and ``limit`` subsets; the same
            seed gives the same split.
        limit: Keep at most this many samples in the training pool (before the validation
            split) and in the test split, for small budgets; subsets are stratified.
        standardize: Standardise inputs per channel with training statistics (and
            regression targets); see :mod:`evolve.data.splits`.
        flat: Flatten inputs to one axis (:meth:`DataSplits.flat`).
        **options: Dataset-specific options (``image_size`` for ``"image_folder"``,
            ``label_mode`` for ``"cifar100"``, ``cache_dir`` for ``"mnist1d"`` ...).

    Returns:
        The splits.

    Raises:
        DatasetError: Unknown name or option, bad arguments, missing or corrupt files.

    Example:
        >>> splits = load_dataset("digits", seed=0)
        >>> splits
        DataSplits('digits', classification, train=1294, valid=144, test=359, input_shape=(1, 8, 8), n_outputs=10)
        >>> splits.train.tensors[0].dtype, splits.train.tensors[1].dtype
        (torch.float32, torch.int64)
    """
    entry = dataset_entry(name)
    _check_arguments(entry, root, valid_fraction, limit, options)
    rng = np.random.default_rng(seed)
    folder = None if root is None else Path(root).expanduser()
    raw = entry.loader(folder, rng=rng, limit=limit, **options)
    splits = build_splits(
        raw,
        name=entry.name,
        valid_fraction=valid_fraction,
        rng=rng,
        limit=limit,
        standardize=standardize,
    )
    return splits.flat() if flat else splits
