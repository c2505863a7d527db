"""Readers for the native file formats of MNIST, Fashion-MNIST and CIFAR-10/100.

Each reader takes one file, checks it byte for byte against its format and returns numpy
arrays; anything that does not fit raises :class:`~evolve.errors.DatasetError` naming the
file and what was wrong. Nothing here downloads or decodes beyond the format itself.

* **IDX** (MNIST, Fashion-MNIST): a 4-byte magic number (two zero bytes, a type code, the
  number of dimensions), one big-endian ``uint32`` per dimension, then the values. Files may
  be gzip-compressed (``.gz`` or detected from the gzip signature).
* **CIFAR binary version** (``cifar-10-batches-bin``, ``cifar-100-binary``): fixed-size
  records of 1 label byte (CIFAR-10) or 2 (CIFAR-100: coarse then fine) followed by 3072
  pixel bytes: 1024 red, 1024 green, 1024 blue, each a row-major 32x32 plane.
* **CIFAR python version** (``cifar-10-batches-py``, ``cifar-100-python``): pickled dicts,
  read through :func:`evolve.data.safe_pickle.restricted_loads`.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from evolve.data.safe_pickle import restricted_loads
from evolve.errors import DatasetError

__all__ = ["CIFAR_IMAGE_BYTES", "read_cifar_binary", "read_cifar_python", "read_idx"]

#: Bytes of one 3x32x32 CIFAR image.
CIFAR_IMAGE_BYTES = 3 * 32 * 32

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_SIGNATURE = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, gunzipped when it is a gzip file."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    if data[:2] != _GZIP_SIGNATURE:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"corrupt gzip file {path}: {error}; download it again or unpack it"
        ) from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a numpy array.

    Args:
        path: An IDX file such as ``train-images-idx3-ubyte`` or ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        An array of the shape and type in the header, in native byte order.

    Raises:
        DatasetError: The magic number is wrong, or the data size does not match the header.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(path)
        array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise DatasetError(
            f"bad IDX magic number 0x{data[:4].hex() or 'empty'} in {path}: expected two zero "
            "bytes, a type code (0x08 ubyte ... 0x0E double) and the number of dimensions"
        )
    dtype, n_dims = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * n_dims
    if n_dims == 0 or len(data) < header:
        raise DatasetError(
            f"truncated IDX header in {path}: {n_dims} dimensions need {header} header bytes, "
            f"the file holds {len(data)}"
        )
    shape = tuple(int(n) for n in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        dims = "x".join(str(n) for n in shape)
        raise DatasetError(
            f"IDX size mismatch in {path}: the header says {dims} values of {dtype.name} "
            f"({expected} bytes) but the file holds {len(data) - header} bytes of data"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def read_cifar_binary(
    path: str | os.PathLike, *, n_label_bytes: int = 1, label_byte: int = 0, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary batch: fixed-size records of label bytes then 3072 pixel bytes.

    Args:
        path: A batch such as ``data_batch_1.bin`` (CIFAR-10) or ``train.bin`` (CIFAR-100).
        n_label_bytes: Label bytes per record: 1 for CIFAR-10, 2 for CIFAR-100.
        label_byte: Which label byte to return (CIFAR-100: 0 coarse, 1 fine).
        n_classes: Labels must lie in ``0 .. n_classes - 1``.

    Returns:
        ``(images, labels)``: ``uint8`` of shape ``(n, 3, 32, 32)`` and ``int64`` of ``(n,)``.

    Raises:
        DatasetError: The file is empty, its length is not a whole number of records, or a
            label is out of range.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "test_batch.bin"
        >>> _ = path.write_bytes(bytes([3]) + bytes(3072) + bytes([9]) + bytes(3072))
        >>> images, labels = read_cifar_binary(path)
        >>> images.shape, labels.tolist()
        ((2, 3, 32, 32), [3, 9])
    """
    path = Path(path)
    data = _read_bytes(path)
    record = n_label_bytes + CIFAR_IMAGE_BYTES
    if not data or len(data) % record:
        raise DatasetError(
            f"corrupt CIFAR batch {path}: {len(data)} bytes is not a whole number of "
            f"{record}-byte records ({n_label_bytes} label byte(s) + {CIFAR_IMAGE_BYTES} pixel "
            "bytes); the file is truncated or from another dataset"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    labels = records[:, label_byte].astype(np.int64)
    _check_labels(labels, n_classes, path)
    images = records[:, n_label_bytes:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def read_cifar_python(
    path: str | os.PathLike, *, label_key: str = "labels", n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR python batch (a pickled dict) without running arbitrary code.

    Args:
        path: A batch such as ``data_batch_1`` (CIFAR-10) or ``train`` (CIFAR-100).
        label_key: ``"labels"`` (CIFAR-10), ``"fine_labels"`` or ``"coarse_labels"``.
        n_classes: Labels must lie in ``0 .. n_classes - 1``.

    Returns:
        ``(images, labels)``: ``uint8`` of shape ``(n, 3, 32, 32)`` and ``int64`` of ``(n,)``.

    Raises:
        DatasetError: The pickle references anything but numpy arrays, is malformed, lacks
            ``data`` or the label key, or holds data of the wrong shape or labels out of range.

    Example:
        >>> import pickle, tempfile, pathlib, numpy as np
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "test_batch"
        >>> batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 4]}
        >>> _ = path.write_bytes(pickle.dumps(batch))
        >>> images, labels = read_cifar_python(path)
        >>> images.shape, labels.tolist()
        ((2, 3, 32, 32), [1, 4])
    """
    path = Path(path)
    batch = restricted_loads(_read_bytes(path), source=str(path))
    if not isinstance(batch, dict):
        raise DatasetError(
            f"corrupt CIFAR batch {path}: expected a pickled dict, got {type(batch).__name__}"
        )
    batch = {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}
    for key in ("data", label_key):
        if key not in batch:
            raise DatasetError(
                f"corrupt CIFAR batch {path}: no {key!r} entry (found {sorted(map(str, batch))})"
            )
    images = batch["data"]
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 2
        or images.shape[1] != CIFAR_IMAGE_BYTES
    ):
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else "no array"
        raise DatasetError(
            f"corrupt CIFAR batch {path}: 'data' must be a uint8 array of shape "
            f"(n, {CIFAR_IMAGE_BYTES}), found {found}"
        )
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as error:
        raise DatasetError(
            f"corrupt CIFAR batch {path}: {label_key!r} is not a list of integers"
        ) from error
    if len(labels) != len(images):
        raise DatasetError(
            f"corrupt CIFAR batch {path}: {len(images)} images but {len(labels)} {label_key}"
        )
    _check_labels(labels, n_classes, path)
    return images.reshape(-1, 3, 32, 32).copy(), labels


def _check_labels(labels: np.ndarray, n_classes: int, path: Path) -> None:
    """Raise if any label lies outside ``0 .. n_classes - 1``, naming the first one."""
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise DatasetError(
            f"corrupt CIFAR batch {path}: label {int(labels[bad[0]])} of record {int(bad[0])} "
            f"is outside 0..{n_classes - 1}"
        )
