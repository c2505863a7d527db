"""Readers for the native file formats of MNIST, Fashion-MNIST and CIFAR-10/100.

Each reader takes one file, checks it byte for byte against its format and returns numpy
arrays; anything that does not fit raises :class:`~evolve.errors.DatasetError` naming the
file and what was wrong. Nothing here downloads or decodes beyond the format itself, and
no file makes a reader allocate more than it can hold: sizes a header declares are checked
against the file's size first, and gzip files are unpacked in bounded pieces, never beyond
what the header declares (IDX) or the largest real batch (CIFAR, :data:`MAX_CIFAR_BYTES`).

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
from typing import BinaryIO

import numpy as np

from evolve.data.safe_pickle import restricted_loads
from evolve.errors import DatasetError

__all__ = [
    "CIFAR_IMAGE_BYTES",
    "MAX_CIFAR_BYTES",
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
]

#: Bytes of one 3x32x32 CIFAR image.
CIFAR_IMAGE_BYTES = 3 * 32 * 32
#: Largest CIFAR batch the readers accept, unpacked: the largest real one is CIFAR-100's
#: ``train.bin`` (50,000 records of 3,074 bytes, 153.7 MB).
MAX_CIFAR_BYTES = 256 * 2**20

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_SIGNATURE = b"\x1f\x8b"
#: Deflate never expands more than 1032 to 1 (a 258-byte match per 2 bits), so a gzip file
#: of n bytes holds at most this many times n bytes of content.
_MAX_GZIP_RATIO = 1032
_CHUNK = 2**20


class _Source:
    """A data file, raw or gzip-compressed, read in bounded pieces.

    ``capacity`` is the most content the file can hold: its size, or for gzip the most
    deflate can expand it to. Nothing is read or unpacked beyond what a caller asks for.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            self._raw: BinaryIO = path.open("rb")
            self.size = os.fstat(self._raw.fileno()).st_size
            self.compressed = self._raw.read(2) == _GZIP_SIGNATURE
            self._raw.seek(0)
        except OSError as error:
            raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
        self._stream: BinaryIO = gzip.GzipFile(fileobj=self._raw) if self.compressed else self._raw
        self.capacity = self.size * _MAX_GZIP_RATIO if self.compressed else self.size

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._raw.close()

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes of content (fewer at its end), unpacked chunk by chunk."""
        parts, left = [], n
        while left > 0:
            part = self._read(min(left, _CHUNK))
            if not part:
                break
            parts.append(part)
            left -= len(part)
        return b"".join(parts)

    def skip(self, limit: int) -> int:
        """Read and drop up to ``limit`` more bytes; how many there were."""
        n = 0
        while n < limit and (part := self._read(min(limit - n, _CHUNK))):
            n += len(part)
        return n

    def _read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except (OSError, EOFError, zlib.error) as error:
            detail = " ".join(str(error).split())
            raise DatasetError(
                f"corrupt gzip file {self.path}: {detail}; download it again or unpack it"
            ) from error


def _read_bytes(path: Path, limit: int) -> bytes:
    """The whole content of a file, gunzipped when it is a gzip file, if at most ``limit``."""
    with _Source(path) as source:
        if not source.compressed and source.size > limit:
            raise DatasetError(
                f"{path} is {source.size} bytes, more than any batch of this format "
                f"({limit} bytes); it is not a CIFAR batch"
            )
        data = source.read(limit + 1)
    if len(data) > limit:
        raise DatasetError(
            f"gzip file {path} unpacks to more than {limit} bytes, more than any batch of this "
            "format; it is corrupt or crafted"
        )
    return data


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a numpy array.

    Args:
        path: An IDX file such as ``train-images-idx3-ubyte`` or ``t10k-labels-idx1-ubyte.gz``.

    Returns:
        An array of the shape and type in the header, in native byte order.

    Raises:
        DatasetError: The magic number is wrong, or the data size does not match the header
            (checked before the data is read; a gzip file is never unpacked past it).

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))
        >>> read_idx(path)
        array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    with _Source(path) as source:
        dtype, shape = _idx_header(source)
        header = 4 + 4 * len(shape)
        expected = dtype.itemsize
        for n in shape:
            expected *= n
        if not source.compressed and source.size - header != expected:
            _idx_mismatch(path, shape, dtype, expected, source.size - header)
        if expected > source.capacity - header:
            raise DatasetError(
                f"IDX header in {path} declares {_dims(shape)} values of {dtype.name} "
                f"({expected} bytes) but a gzip file of {source.size} bytes unpacks to at most "
                f"{source.capacity} bytes; the file is corrupt or crafted"
            )
        data = source.read(expected)
        extra = source.skip(source.capacity) if len(data) == expected else 0
        if len(data) != expected or extra:
            _idx_mismatch(path, shape, dtype, expected, len(data) + extra)
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def _idx_header(source: _Source) -> tuple[np.dtype, tuple[int, ...]]:
    """The value type and shape an IDX header declares (nothing past the header is read)."""
    magic = source.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_TYPES:
        raise DatasetError(
            f"bad IDX magic number 0x{magic.hex() or 'empty'} in {source.path}: expected two "
            "zero bytes, a type code (0x08 ubyte ... 0x0E double) and the number of dimensions"
        )
    n_dims = magic[3]
    dims = source.read(4 * n_dims)
    if n_dims == 0 or len(dims) < 4 * n_dims:
        raise DatasetError(
            f"truncated IDX header in {source.path}: {n_dims} dimensions need "
            f"{4 + 4 * n_dims} header bytes, the file holds {4 + len(dims)}"
        )
    return _IDX_TYPES[magic[2]], tuple(int(n) for n in np.frombuffer(dims, dtype=">u4"))


def _dims(shape: tuple[int, ...]) -> str:
    return "x".join(str(n) for n in shape)


def _idx_mismatch(path: Path, shape, dtype: np.dtype, expected: int, held: int) -> None:
    raise DatasetError(
        f"IDX size mismatch in {path}: the header says {_dims(shape)} values of {dtype.name} "
        f"({expected} bytes) but the file holds {held} bytes of data"
    )


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
        DatasetError: The file is empty or larger than :data:`MAX_CIFAR_BYTES`, its length
            is not a whole number of records, or a label is out of range.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "test_batch.bin"
        >>> _ = path.write_bytes(bytes([3]) + bytes(3072) + bytes([9]) + bytes(3072))
        >>> images, labels = read_cifar_binary(path)
        >>> images.shape, labels.tolist()
        ((2, 3, 32, 32), [3, 9])
    """
    path = Path(path)
    data = _read_bytes(path, MAX_CIFAR_BYTES)
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
        DatasetError: The pickle references anything but numpy arrays of plain numbers
            (see :func:`~evolve.data.safe_pickle.restricted_loads`), is malformed or larger
            than :data:`MAX_CIFAR_BYTES`, lacks ``data`` or the label key, or holds data of
            the wrong shape or labels that are not integers in range.

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
    batch = restricted_loads(_read_bytes(path, MAX_CIFAR_BYTES), source=str(path))
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
        labels = np.asarray(batch[label_key])
        if labels.size and labels.dtype.kind not in "iu":
            raise TypeError(labels.dtype)
        labels = labels.astype(np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError) as error:
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
