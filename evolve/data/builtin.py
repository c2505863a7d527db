"""Datasets that need no files: MNIST-1D (generated), scikit-learn's digits and diabetes.

MNIST-1D is generated with the ``mnist1d`` package's own procedure and default arguments
(5,000 signals of length 40, split 4,000 train / 1,000 test), never downloaded: the
package's ``get_dataset`` would fetch or unpickle a file, so only ``make_dataset`` is used.
Generating takes about two seconds, so the arrays are cached as a plain ``.npz`` (read with
``allow_pickle=False``) keyed by the ``mnist1d`` version and the argument overrides.

Digits and diabetes have no official test split; a fixed 20 % is held out with a seed of
its own, so searches with different seeds are scored on the same test samples.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import random
import tempfile
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from evolve.data.datasets import RawData, register_dataset
from evolve.data.splitting import carve
from evolve.errors import DatasetError

__all__ = ["default_cache_dir", "load_diabetes_raw", "load_digits_raw", "load_mnist1d_raw"]

logger = logging.getLogger(__name__)

_TEST_SPLIT_SEED = 20240601  # fixed: the held-out test split does not move with ``seed``
_MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


def default_cache_dir() -> Path:
    """Where generated data is cached: ``$MUTNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mutnas``,
    else ``~/.cache/mutnas``.

    Returns:
        The folder (not created here).

    Example:
        >>> isinstance(default_cache_dir(), Path)
        True
    """
    if os.environ.get("MUTNAS_CACHE_DIR"):
        return Path(os.environ["MUTNAS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mutnas"


def _generate_mnist1d(overrides: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Run ``mnist1d.data.make_dataset``; the global random states it seeds are restored."""
    from mnist1d.data import get_dataset_args, make_dataset  # slow import (matplotlib)

    settings = get_dataset_args(as_dict=True)
    allowed = set(settings) - {"url"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise DatasetError(
            f"unknown MNIST-1D argument(s) {', '.join(unknown)} (nothing is downloaded); "
            f"known: {', '.join(sorted(allowed))}"
        )
    settings.update(overrides)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(types.SimpleNamespace(**settings))
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {key: np.asarray(data[key]) for key in _MNIST1D_KEYS}


def _mnist1d_cache_file(folder: Path, overrides: Mapping[str, object]) -> Path:
    version = importlib.metadata.version("mnist1d")
    text = json.dumps({"mnist1d": version, **overrides}, sort_keys=True, default=str)
    return folder / f"mnist1d-{hashlib.sha256(text.encode()).hexdigest()[:16]}.npz"


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in _MNIST1D_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        logger.warning("ignoring unreadable MNIST-1D cache %s (%s); regenerating", path, error)
        return None


def _write_cache(path: Path, data: dict[str, np.ndarray]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez(handle, **data)
        os.replace(handle.name, path)
    except OSError as error:
        logger.warning("cannot cache MNIST-1D at %s (%s); it will be regenerated", path, error)


@register_dataset("mnist1d", description="MNIST-1D: 10 classes of 1-D signals (generated)")
def load_mnist1d_raw(
    root: Path | None,
    *,
    rng: np.random.Generator,
    limit: int | None,
    args: Mapping[str, object] | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
) -> RawData:
    """MNIST-1D as signals of shape ``(1, 40)``: 4,000 train and 1,000 test by default.

    Args:
        root: Unused (``None``).
        rng: Unused: the data come from ``mnist1d``'s own seed (``args["seed"]``).
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.
        args: Overrides of ``mnist1d.data.get_dataset_args()`` (``num_samples``, ``seed`` ...).
        cache_dir: Cache folder; default :func:`default_cache_dir`.
        cache: Read and write the cache.

    Returns:
        The arrays; ``pixel_scale`` is ``None`` (the package already centres the signals).

    Raises:
        DatasetError: ``args`` holds an unknown key (or ``url``: nothing is downloaded).

    Example:
        >>> import tempfile
        >>> raw = load_mnist1d_raw(None, rng=None, limit=None, args={"num_samples": 100},
        ...                        cache_dir=tempfile.mkdtemp())
        >>> raw.x_train.shape, raw.x_test.shape
        ((80, 1, 40), (20, 1, 40))
    """
    overrides = dict(args or {})
    path = _mnist1d_cache_file(Path(cache_dir or default_cache_dir()), overrides)
    data = _read_cache(path) if cache else None
    if data is None:
        data = _generate_mnist1d(overrides)
        if cache:
            _write_cache(path, data)
    return RawData(
        data["x"][:, None, :],
        data["y"],
        data["x_test"][:, None, :],
        data["y_test"],
        n_classes=10,
        classes=tuple(str(d) for d in range(10)),
    )


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie in (0, 1), got {test_fraction}")


@register_dataset("digits", description="scikit-learn's 8x8 handwritten digits, 10 classes")
def load_digits_raw(
    root: Path | None, *, rng: np.random.Generator, limit: int | None, test_fraction: float = 0.2
) -> RawData:
    """scikit-learn's 1,797 digits as ``(1, 8, 8)`` images (pixels 0..16, ``pixel_scale`` 16).

    Args:
        root: Unused (``None``).
        rng: Unused: the test split has a fixed seed of its own.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.
        test_fraction: Stratified share held out as the test split.

    Returns:
        The arrays.

    Raises:
        DatasetError: ``test_fraction`` is not in ``(0, 1)``.

    Example:
        >>> load_digits_raw(None, rng=None, limit=None).x_test.shape
        (359, 1, 8, 8)
    """
    _check_fraction(test_fraction)
    from sklearn.datasets import load_digits  # imported on use: scikit-learn is slow to import

    bunch = load_digits()
    x, y = bunch.images[:, None].astype(np.float32), bunch.target.astype(np.int64)
    train, test = carve(len(y), test_fraction, np.random.default_rng(_TEST_SPLIT_SEED), y)
    return RawData(
        x[train],
        y[train],
        x[test],
        y[test],
        n_classes=10,
        classes=tuple(str(d) for d in range(10)),
        pixel_scale=16.0,
    )


@register_dataset("diabetes", description="scikit-learn's diabetes progression (regression)")
def load_diabetes_raw(
    root: Path | None, *, rng: np.random.Generator, limit: int | None, test_fraction: float = 0.2
) -> RawData:
    """scikit-learn's diabetes data: 442 patients, 10 raw features, 1 target (regression).

    The unscaled features are loaded; :func:`~evolve.data.load_dataset` standardises
    features and target with training statistics and reports them (``mean``, ``std``,
    ``target_mean``, ``target_std``) so predictions can be mapped back.

    Args:
        root: Unused (``None``).
        rng: Unused: the test split has a fixed seed of its own.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.
        test_fraction: Share held out as the test split.

    Returns:
        The arrays, targets of shape ``(n,)``.

    Raises:
        DatasetError: ``test_fraction`` is not in ``(0, 1)``.

    Example:
        >>> raw = load_diabetes_raw(None, rng=None, limit=None)
        >>> raw.task, raw.x_train.shape, raw.x_test.shape
        ('regression', (354, 10), (88, 10))
    """
    _check_fraction(test_fraction)
    from sklearn.datasets import load_diabetes  # imported on use: scikit-learn is slow to import

    x, y = load_diabetes(return_X_y=True, scaled=False)
    train, test = carve(len(y), test_fraction, np.random.default_rng(_TEST_SPLIT_SEED))
    return RawData(x[train], y[train], x[test], y[test], task="regression")
