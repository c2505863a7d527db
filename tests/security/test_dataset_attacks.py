"""Small dataset files that would make the readers allocate gigabytes.

Each file below is a few hundred bytes or a megabyte; read naively it asks for an array of
gigabytes (a CIFAR pickle through numpy's own reconstruction functions, an IDX file whose
gzip stream expands without end). Every read runs in a child process whose address space
may grow only a fraction of what the attack asks for, and must end in one
``DatasetError`` line that names the file and the cause (not a ``MemoryError``).
"""

from __future__ import annotations

import gzip
import pickle
import zlib

import numpy as np
import pytest

from evolve.data.formats import read_cifar_python, read_idx
from evolve.data.safe_pickle import restricted_loads
from evolve.errors import DatasetError

_RECONSTRUCT = "numpy._core.multiarray _reconstruct"


def _global(dotted: str) -> bytes:
    module, name = dotted.split()
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _bytes(value: bytes) -> bytes:
    """``value`` as a protocol-2 short byte string (SHORT_BINBYTES needs protocol 3)."""
    return b"C" + bytes([len(value)]) + value


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _int(n: int) -> bytes:
    return b"J" + int(n).to_bytes(4, "little", signed=True)


def _reconstruct(shape: tuple[int, ...], typecode: bytes) -> bytes:
    """``numpy._core.multiarray._reconstruct(ndarray, shape, typecode)``: numpy allocates
    the whole shape (uninitialised, or zeroed for objects) before any data is read."""
    args = _tuple(_global("numpy ndarray"), _tuple(*map(_int, shape)), _bytes(typecode))
    return _global(_RECONSTRUCT) + args + b"R"


def _batch(data: bytes, labels: bytes) -> bytes:
    """A pickled CIFAR batch dict ``{b"data": data, b"labels": labels}`` (protocol 3)."""
    items = _bytes(b"data") + data + _bytes(b"labels") + labels
    return b"\x80\x03}(" + items + b"u."


# 2.5e8 object slots (2 GB of pointers) from 135 bytes
OBJECT_ARRAY = _batch(_reconstruct((250_000_000,), b"O"), b"]K\x00a")
# 200,000 images (614 MB) and their labels with no pixel byte in the file
NO_PIXELS = _batch(_reconstruct((200_000, 3072), b"B"), _reconstruct((200_000,), b"b"))


def _gzip_bomb(n_images: int, n_members: int) -> bytes:
    """An IDX file of 28x28 images whose header claims ``n_images``, gzip-compressed as
    ``n_members`` members of 1 MiB of zeros each (about 1 KB each on disk)."""
    header = bytes([0, 0, 0x08, 3]) + np.array([n_images, 28, 28], ">u4").tobytes()
    zeros = gzip.compress(bytes(2**20), compresslevel=9)
    return gzip.compress(header) + zeros * n_members


def _read_in_child(capped, reader: str, path, margin_mib: int):
    code = f"""
    from evolve.data.formats import read_cifar_python, read_idx
    from evolve.errors import DatasetError
    try:
        {reader}({str(path)!r})
        print("ACCEPTED")
    except DatasetError as err:
        print("REFUSED", err)
    """
    result = capped(code, margin_mib=margin_mib)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _one_refusal(stdout: str, path, *causes: str) -> str:
    assert stdout.startswith("REFUSED "), stdout
    message = stdout.removeprefix("REFUSED ").strip()
    assert "\n" not in message, message
    assert str(path) in message, message
    assert "MemoryError" not in message, message
    for cause in causes:
        assert cause in message, message
    return message


def test_attack_files_are_small():
    assert len(OBJECT_ARRAY) <= 140 and len(NO_PIXELS) <= 300
    assert len(_gzip_bomb(2**31, 1100)) < 1.5 * 2**20


def test_object_array_pickle_is_refused_before_numpy_allocates(tmp_path, capped):
    path = tmp_path / "data_batch_1"
    path.write_bytes(OBJECT_ARRAY)
    stdout = _read_in_child(capped, "read_cifar_python", path, margin_mib=256)
    _one_refusal(stdout, path, "_reconstruct")


def test_pickle_without_pixel_data_is_refused(tmp_path, capped):
    path = tmp_path / "data_batch_1"
    path.write_bytes(NO_PIXELS)
    stdout = _read_in_child(capped, "read_cifar_python", path, margin_mib=256)
    _one_refusal(stdout, path, "_reconstruct")


def test_small_array_without_data_is_not_accepted_as_images(tmp_path):
    """Small enough to allocate: the old reader returned 1,000 images of whatever memory
    held (its labels, read the same way, came out like 94441611321037)."""
    path = tmp_path / "data_batch_1"
    labels = b"](" + b"K\x00" * 1000 + b"e"
    path.write_bytes(_batch(_reconstruct((1000, 3072), b"B"), labels))
    with pytest.raises(DatasetError, match=r"data_batch_1") as info:
        read_cifar_python(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("state", "cause"),
    [
        ((1, (1000, 3072), "u1", False, b""), "holds 0 bytes"),
        ((1, (10**6, 10**6), "u1", False, b"\x00" * 16), "holds 16 bytes"),
        ((1, (2,), "O", False, [1, 2]), "dtype"),
        ((1, (2,), "u1", False, [1, 2]), "bytes"),
        ((1, (-1,), "u1", False, b""), "shape"),
        ((1, (True,), "u1", False, b"\x00"), "shape"),
    ],
    ids=["no-data", "huge-shape", "object-dtype", "list-data", "negative-shape", "bool-shape"],
)
def test_array_state_must_match_its_bytes(state, cause):
    """The usual reconstruction (``_reconstruct(ndarray, (0,), b"b")`` then its state)
    with a state whose shape, dtype or data do not add up."""
    version, shape, dtype, fortran, raw = state
    array = (
        _global("numpy dtype") + _tuple(_bytes(dtype.encode()), b"\x89\x88") + b"R"
        + _tuple(_int(3), _bytes(b"|"), b"NNN", _int(-1), _int(-1), _int(0)) + b"b"
    )  # fmt: skip
    if isinstance(raw, bytes):
        data = b"B" + len(raw).to_bytes(4, "little") + raw
    else:
        data = b"](" + b"".join(b"K" + bytes([x]) for x in raw) + b"e"
    dims = b"".join(b"\x88" if d is True else _int(d) for d in shape)
    state_bytes = _tuple(_int(version), _tuple(dims), array, b"\x88" if fortran else b"\x89", data)
    payload = b"\x80\x03" + _reconstruct((0,), b"b") + state_bytes + b"b."
    with pytest.raises(DatasetError, match=cause) as info:
        restricted_loads(payload, source="crafted")
    assert "\n" not in str(info.value) and "crafted" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        _global("numpy ndarray") + _tuple(_tuple(_int(10**8)), _bytes(b"O")) + b"R",
        _global("numpy dtype") + _tuple(_bytes(b"O8")) + b"R",
        _global("numpy dtype") + _tuple(_bytes(b"V1000000000")) + b"R",
        _global("_codecs encode") + _tuple(_bytes(b"ab"), b"X\x03\x00\x00\x00hex") + b"R",
        _global("numpy._core.numeric _frombuffer")
        + _tuple(
            _bytes(b"\x00" * 8),
            _global("numpy dtype") + _tuple(_bytes(b"O8")) + b"R",
            _tuple(_int(1)),
            b"X\x01\x00\x00\x00C",
        )
        + b"R",
    ],
    ids=["ndarray-called", "object-dtype", "huge-void-dtype", "hex-codec", "frombuffer-object"],
)
def test_allowed_globals_only_do_what_a_cifar_batch_needs(payload):
    with pytest.raises(DatasetError, match=r"^refusing .* from crafted: ") as info:
        restricted_loads(b"\x80\x03" + payload + b".", source="crafted")
    assert "\n" not in str(info.value)


def test_gzip_bomb_idx_is_refused_from_its_header(tmp_path, capped):
    """1.1 MB that expand to 1.1 GiB of zeros, under a header claiming 2**31 images: the
    old reader decompressed everything before comparing sizes."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_bomb(2**31, 1100))
    stdout = _read_in_child(capped, "read_idx", path, margin_mib=256)
    _one_refusal(stdout, path, "gzip")


def test_gzip_idx_longer_than_its_header_stops_reading(tmp_path, capped):
    """An honest-looking header (10 images) over the same 1.1 GiB of zeros: reading stops
    at the size the header gives instead of decompressing the rest into memory."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(_gzip_bomb(10, 1100))
    stdout = _read_in_child(capped, "read_idx", path, margin_mib=256)
    _one_refusal(stdout, path, "size mismatch")


def test_gzip_cifar_batch_stops_at_the_largest_real_batch(tmp_path, capped):
    """CIFAR batches declare no size: a gzip one is read up to the largest real batch."""
    path = tmp_path / "data_batch_1.bin"
    path.write_bytes(gzip.compress(bytes(3073)) + gzip.compress(bytes(2**20)) * 1100)
    code = f"""
    from evolve.data.formats import read_cifar_binary
    from evolve.errors import DatasetError
    try:
        read_cifar_binary({str(path)!r})
        print("ACCEPTED")
    except DatasetError as err:
        print("REFUSED", err)
    """
    result = capped(code, margin_mib=512)
    assert result.returncode == 0, result.stderr[-2000:]
    _one_refusal(result.stdout, path, "gzip")


def test_idx_header_larger_than_the_raw_file_is_refused_before_reading(tmp_path, capped):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + np.array([2**31, 28, 28], ">u4").tobytes())
    stdout = _read_in_child(capped, "read_idx", path, margin_mib=64)
    _one_refusal(stdout, path, "size mismatch")


def test_truncated_deflate_stream_is_one_line(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    good = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]))
    path.write_bytes(good[:12] + zlib.compress(b"junk")[2:])
    with pytest.raises(DatasetError, match="t10k-labels") as info:
        read_idx(path)
    assert "\n" not in str(info.value)


def test_a_real_pickle_still_reads(tmp_path):
    batch = {b"data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072), b"labels": [3, 4]}
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"batch{protocol}"
        path.write_bytes(pickle.dumps(batch, protocol=protocol))
        images, labels = read_cifar_python(path)
        np.testing.assert_array_equal(images.reshape(2, -1), batch[b"data"])
        assert labels.tolist() == [3, 4]


def test_a_declared_length_beyond_memory_is_one_line(capped):
    """A 14-byte pickle whose bytes value claims 2**40 bytes: CPython allocates the claimed
    length before reading it; the refusal says so instead of a bare MemoryError."""
    code = """
    from evolve.data.safe_pickle import restricted_loads
    from evolve.errors import DatasetError
    try:
        restricted_loads(b"\\x80\\x04\\x8e" + (2**40).to_bytes(8, "little") + b"abc", source="x")
    except DatasetError as err:
        print("REFUSED", err)
    """
    result = capped(code, margin_mib=128)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED refusing x: it declares a value larger than memory")
