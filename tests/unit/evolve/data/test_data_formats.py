"""Native readers: IDX, CIFAR binary and python batches, and the restricted unpickler."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest

from evolve.data.formats import MAX_CIFAR_BYTES, read_cifar_binary, read_cifar_python, read_idx
from evolve.data.safe_pickle import ALLOWED_GLOBALS, restricted_loads
from evolve.errors import DatasetError

# --- IDX --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_read_idx_round_trips_every_type(tmp_path, files, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == "uint8":
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = files.write_idx(tmp_path / "x-idx3", array)
    read = read_idx(path)
    assert read.dtype == np.dtype(dtype) and read.dtype.isnative
    np.testing.assert_array_equal(read, array)


def test_read_idx_gzip_by_signature_not_suffix(tmp_path, files):
    array = np.arange(10, dtype=np.uint8)
    gz = files.write_idx(tmp_path / "labels-idx1-ubyte", array, gz=True)
    assert gz.suffix == ".gz"
    renamed = gz.rename(tmp_path / "labels-without-suffix")
    np.testing.assert_array_equal(read_idx(renamed), array)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x01\x00\x08\x01", b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", b"PK\x03\x04junk"],
    ids=["empty", "nonzero-first-byte", "unknown-type", "zip-file"],
)
def test_read_idx_bad_magic(tmp_path, payload):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=r"^bad IDX magic number 0x\w+ in .*bad: expected"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "short"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 2]))  # 3 dims, one given
    with pytest.raises(DatasetError, match=r"truncated IDX header .* 3 dimensions need 16"):
        read_idx(path)


@pytest.mark.parametrize("delta", [-1, 1])
def test_read_idx_size_mismatch(tmp_path, files, delta):
    path = files.write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-1] if delta < 0 else data + b"\x00")
    with pytest.raises(DatasetError, match=rf"IDX size mismatch .* 2x3 values of uint8 \(6 bytes\) but the file holds {6 + delta} bytes"):  # fmt: skip
        read_idx(path)


def test_read_idx_gzip_with_trailing_data_counts_it(tmp_path, files):
    path = files.write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8), gz=True)
    path.write_bytes(path.read_bytes() + gzip.compress(bytes(100)))
    with pytest.raises(DatasetError, match=r"IDX size mismatch .* \(6 bytes\) but the file holds 106 bytes"):  # fmt: skip
        read_idx(path)


def test_read_idx_gzip_header_beyond_what_gzip_can_hold(tmp_path, files):
    path = files.write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8), gz=True)
    header = bytes([0, 0, 8, 2]) + np.array([10**6, 10**3], ">u4").tobytes()
    path.write_bytes(gzip.compress(header + bytes(6)))
    with pytest.raises(DatasetError, match=r"^IDX header in .*x.gz declares 1000000x1000 values of uint8 \(1000000000 bytes\) but a gzip file of \d+ bytes unpacks to at most \d+ bytes"):  # fmt: skip
        read_idx(path)


def test_read_idx_corrupt_gzip(tmp_path, files):
    path = files.write_idx(tmp_path / "x", np.zeros(100, dtype=np.uint8), gz=True)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetError, match=r"corrupt gzip file .*x.gz"):
        read_idx(path)


def test_read_idx_unreadable_path(tmp_path):
    with pytest.raises(DatasetError, match=r"cannot read .*missing"):
        read_idx(tmp_path / "missing")


# --- CIFAR binary ---------------------------------------------------------------------------


def test_read_cifar10_binary_layout(tmp_path, files):
    data, images = files.cifar_records([(3,), (9,), (0,)])
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(data)
    read, labels = read_cifar_binary(path)
    assert read.dtype == np.uint8 and read.shape == (3, 3, 32, 32)
    assert labels.dtype == np.int64 and labels.tolist() == [3, 9, 0]
    np.testing.assert_array_equal(read, images)
    # channel planes: bytes 1..1024 of a record are the red plane, row-major
    assert read[0, 0, 0, 1] == data[2] and read[0, 1, 0, 0] == data[1 + 1024]


def test_read_cifar100_binary_coarse_and_fine(tmp_path, files):
    data, _ = files.cifar_records([(4, 77), (19, 99)])
    path = tmp_path / "train.bin"
    path.write_bytes(data)
    _, fine = read_cifar_binary(path, n_label_bytes=2, label_byte=1, n_classes=100)
    _, coarse = read_cifar_binary(path, n_label_bytes=2, label_byte=0, n_classes=20)
    assert fine.tolist() == [77, 99] and coarse.tolist() == [4, 19]


@pytest.mark.parametrize("cut", [0, 1, 3072, 3073 + 100])
def test_read_cifar_binary_wrong_length(tmp_path, files, cut):
    data, _ = files.cifar_records([(1,), (2,)])
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(data[:cut])
    with pytest.raises(DatasetError, match=rf"corrupt CIFAR batch .*: {cut} bytes is not a whole number of 3073-byte records"):  # fmt: skip
        read_cifar_binary(path)


def test_read_cifar_binary_larger_than_any_batch(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    with path.open("wb") as f:
        f.truncate(MAX_CIFAR_BYTES + 3073)  # sparse: costs no disk
    with pytest.raises(DatasetError, match=r"data_batch_1.bin is \d+ bytes, more than any batch"):
        read_cifar_binary(path)


def test_read_cifar_binary_bad_label(tmp_path, files):
    data, _ = files.cifar_records([(1,), (12,)])
    path = tmp_path / "test_batch.bin"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=r"label 12 of record 1 is outside 0..9"):
        read_cifar_binary(path)


def test_cifar100_file_read_as_cifar10_is_refused(tmp_path, files):
    # 3073 records of 3074 bytes split evenly into 3074 records of 3073: only labels catch it
    data, _ = files.cifar_records([(4, 77)] * 3073)
    path = tmp_path / "train.bin"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=r"label \d+ of record 1 is outside 0..9"):
        read_cifar_binary(path)


# --- CIFAR python -------------------------------------------------------------------------


def _batch(n=3, **extra):
    rng = np.random.default_rng(1)
    batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [1, 5, 9][:n]}
    batch.update(extra)
    return batch


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar_python_any_protocol(tmp_path, protocol):
    batch = _batch()
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    images, labels = read_cifar_python(path)
    assert images.dtype == np.uint8 and images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(images.reshape(3, -1), batch[b"data"])
    assert labels.dtype == np.int64 and labels.tolist() == [1, 5, 9]


def test_read_cifar_python_str_keys_and_fine_labels(tmp_path):
    batch = {"data": np.zeros((2, 3072), np.uint8), "fine_labels": [42, 99]}
    path = tmp_path / "train"
    path.write_bytes(pickle.dumps(batch))
    _, labels = read_cifar_python(path, label_key="fine_labels", n_classes=100)
    assert labels.tolist() == [42, 99]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "expected a pickled dict, got list"),
        ({b"labels": [1]}, r"no 'data' entry \(found \['labels'\]\)"),
        ({b"data": np.zeros((1, 3072), np.uint8)}, "no 'labels' entry"),
        ({b"data": np.zeros((1, 3071), np.uint8), b"labels": [0]}, r"found uint8 \(1, 3071\)"),
        ({b"data": np.zeros((1, 3072), np.int32), b"labels": [0]}, r"found int32 \(1, 3072\)"),
        ({b"data": b"raw", b"labels": [0]}, "found no array"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]}, "not a list of integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1.5]}, "not a list of integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [True]}, "not a list of integers"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [2**70]}, "not a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}, "label 10 of record 0"),
        ({b"data": np.zeros((1, 3072), np.uint8), b"labels": [-1]}, "label -1 of record 0"),
    ],
)
def test_read_cifar_python_corrupt_content(tmp_path, content, message):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DatasetError, match=rf"^corrupt CIFAR batch .*data_batch_1: .*{message}"):
        read_cifar_python(path)


def test_read_cifar_python_truncated(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(_batch())[:500])
    with pytest.raises(DatasetError, match=r"cannot unpickle .*data_batch_1: \w+: .*truncated"):
        read_cifar_python(path)


# --- restricted unpickler -------------------------------------------------------------------


class _Exploit:
    """Pickles into a call of ``os.system`` (never executed by the restricted unpickler)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "owned"
    payload = pickle.dumps({b"data": _Exploit(f"touch {marker}"), b"labels": [0]})
    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=r"^refusing to unpickle (posix|nt)\.system from .*data_batch_1: CIFAR python batches only hold numpy arrays"):  # fmt: skip
        read_cifar_python(path)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [eval, np.load, pytest.raises, _Exploit("true")])
def test_restricted_unpickler_refuses_other_globals(obj):
    with pytest.raises(DatasetError, match=r"^refusing to unpickle "):
        restricted_loads(pickle.dumps(obj))


def test_allowed_globals_are_numpy_constructors_only():
    modules = {module for module, _ in ALLOWED_GLOBALS}
    assert modules <= {"numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                       "numpy.core.numeric", "numpy._core.numeric", "_codecs"}  # fmt: skip
    names = {name for _, name in ALLOWED_GLOBALS}
    assert names == {"ndarray", "dtype", "_reconstruct", "_frombuffer", "encode"}


def test_restricted_loads_on_gzip_garbage():
    with pytest.raises(DatasetError, match=r"^cannot unpickle <bytes>: "):
        restricted_loads(gzip.compress(b"not a pickle"))
