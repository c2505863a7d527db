"""Tiny datasets written by the tests into ``tmp_path`` in their native file formats.

No binary fixture is committed: each writer below produces the real format (IDX, CIFAR
binary and python batches, PNG folders) from a seeded generator, small enough to be fast.
"""

from __future__ import annotations

import gzip
import pickle
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D}
IDX_CODES["float64"] = 0x0E


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``array`` as an IDX file (big-endian), gzip-compressed when ``gz``."""
    header = bytes([0, 0, IDX_CODES[array.dtype.name], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        path, payload = path.with_name(path.name + ".gz"), gzip.compress(payload)
    path.write_bytes(payload)
    return path


def write_mnist(folder: Path, *, n_train=20, n_test=10, gz=False, seed=0) -> Path:
    """The four MNIST IDX files: 28x28 ``uint8`` images, labels cycling 0..9."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10, gz=gz)
    return folder


def cifar_records(labels: list[tuple[int, ...]], seed: int = 0) -> tuple[bytes, np.ndarray]:
    """Binary CIFAR records (label bytes then 3072 pixels) and the images they hold."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    data = b"".join(
        bytes(label) + image.tobytes() for label, image in zip(labels, images, strict=True)
    )
    return data, images


def write_cifar10(root: Path, *, version="binary", per_batch=4, n_test=6) -> Path:
    """All CIFAR-10 batches under ``root/cifar-10-batches-{bin,py}``; labels i % 10."""
    folder = root / ("cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        labels = [(i + seed) % 10 for i in range(n)]
        data, images = cifar_records([(label,) for label in labels], seed)
        if version == "binary":
            (folder / f"{name}.bin").write_bytes(data)
        else:
            batch = {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": images.reshape(n, -1),
                b"filenames": [f"{i}.png".encode() for i in range(n)],
            }
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def write_cifar100(root: Path, *, version="binary", n_train=8, n_test=4) -> Path:
    """CIFAR-100 train and test under ``root/cifar-100-{binary,python}``.

    Fine label ``i % 100`` and coarse label ``i % 20`` at sample ``i`` (offset by 50 in test).
    """
    folder = root / ("cifar-100-binary" if version == "binary" else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    for seed, (name, n) in enumerate((("train", n_train), ("test", n_test))):
        fine = [(i + 50 * seed) % 100 for i in range(n)]
        coarse = [(i + 50 * seed) % 20 for i in range(n)]
        data, images = cifar_records(list(zip(coarse, fine, strict=True)), seed)
        if version == "binary":
            (folder / f"{name}.bin").write_bytes(data)
        else:
            batch = {b"fine_labels": fine, b"coarse_labels": coarse, b"data": images.reshape(n, -1)}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    return root


CLASS_COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "fish": (0, 0, 255)}


def write_image_folder(root: Path, *, per_class=4, size=(6, 5), mode="RGB") -> Path:
    """``root/<class>/<i>.png`` for cat, dog and fish: solid colours of ``size`` (H, W)."""
    for name, colour in CLASS_COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (size[1], size[0]), colour).convert(mode)
            image.save(root / name / f"{i}.png")
    return root


@pytest.fixture
def files():
    """The writers above: ``files.write_idx``, ``files.write_cifar10`` ..."""
    return types.SimpleNamespace(
        write_idx=write_idx,
        write_mnist=write_mnist,
        cifar_records=cifar_records,
        write_cifar10=write_cifar10,
        write_cifar100=write_cifar100,
        write_image_folder=write_image_folder,
        colours=CLASS_COLOURS,
    )


@pytest.fixture
def mnist_root(tmp_path):
    """A parent folder holding ``MNIST/raw`` with gzip-compressed IDX files."""
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    return tmp_path
