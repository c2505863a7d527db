"""File-based datasets through load_dataset, on tiny fixtures in their native formats."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from evolve.data import load_dataset
from evolve.errors import DatasetError


def _check_images(splits, shape, n_classes):
    for split in ("train", "valid", "test"):
        x, y = getattr(splits, split).tensors
        assert x.dtype == torch.float32 and x.shape[1:] == shape
        assert y.dtype == torch.int64 and y.min() >= 0 and y.max() < n_classes
    assert splits.input_shape == shape and splits.n_outputs == n_classes
    assert splits.pixel_scale == 255.0 and len(splits.mean) == shape[0]


# --- MNIST and Fashion-MNIST --------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_the_folder_itself(tmp_path, files, gz):
    files.write_mnist(tmp_path, gz=gz)
    splits = load_dataset("mnist", root=tmp_path, valid_fraction=0.2)
    assert (splits.n_train, splits.n_valid, splits.n_test) == (16, 4, 10)
    _check_images(splits, (1, 28, 28), 10)
    raw = load_dataset("mnist", root=tmp_path, standardize=False)
    assert raw.train.tensors[0].min() >= 0 and raw.train.tensors[0].max() <= 1
    assert raw.test.tensors[1].tolist() == list(range(10))


def test_mnist_from_the_parent_folder(mnist_root):
    splits = load_dataset("mnist", root=mnist_root)
    assert splits.n_test == 10 and splits.name == "mnist"


def test_mnist_dotted_file_names(tmp_path, files):
    files.write_mnist(tmp_path)
    for path in list(tmp_path.iterdir()):
        path.rename(tmp_path / path.name.replace("-idx", ".idx"))
    assert load_dataset("mnist", root=tmp_path).n_test == 10


def test_fashion_mnist_layout_and_classes(tmp_path, files):
    files.write_mnist(tmp_path / "FashionMNIST" / "raw", seed=5)
    splits = load_dataset("Fashion-MNIST", root=tmp_path)
    _check_images(splits, (1, 28, 28), 10)
    assert splits.classes[0] == "T-shirt/top" and splits.name == "fashion_mnist"


def test_mnist_missing_files_lists_expectations(tmp_path, files):
    files.write_mnist(tmp_path / "MNIST" / "raw")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert message.startswith("'mnist' files not found: expected train-images-idx3-ubyte, ")
    assert "t10k-labels-idx1-ubyte (IDX files (raw or .gz)); looked in " in message
    assert f"{tmp_path}, {tmp_path}/MNIST/raw, {tmp_path}/MNIST, {tmp_path}/mnist" in message


def test_mnist_root_missing_or_empty(tmp_path):
    with pytest.raises(DatasetError, match=r"^root folder .*absent for 'mnist' does not exist"):
        load_dataset("mnist", root=tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"^root folder .* is empty: 'mnist' expects train-images-idx3-ubyte, .* \(IDX files"):  # fmt: skip
        load_dataset("mnist", root=tmp_path)


def test_mnist_images_and_labels_disagree(tmp_path, files):
    files.write_mnist(tmp_path)
    files.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte holds 20 images but .*train-labels-idx1-ubyte holds 19 labels"):  # fmt: skip
        load_dataset("mnist", root=tmp_path)


def test_mnist_wrong_dimensions(tmp_path, files):
    files.write_mnist(tmp_path)
    files.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10, 784), np.uint8))
    with pytest.raises(DatasetError, match=r"must hold images \(3 dimensions\) and .* labels \(1 dimension\); found 2 and 1"):  # fmt: skip
        load_dataset("mnist", root=tmp_path)


def test_mnist_label_out_of_range(tmp_path, files):
    files.write_mnist(tmp_path)
    files.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 11, np.uint8))
    with pytest.raises(DatasetError, match=r"label 11 in .*t10k-labels-idx1-ubyte is outside 0..9"):
        load_dataset("mnist", root=tmp_path)


def test_mnist_bad_magic_through_load_dataset(tmp_path, files):
    files.write_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x1a\x2b\x3c\x4d" + bytes(100))
    with pytest.raises(DatasetError, match=r"^bad IDX magic number 0x1a2b3c4d in "):
        load_dataset("mnist", root=tmp_path)


# --- CIFAR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["binary", "python"])
def test_cifar10_versions_from_parent_and_folder(tmp_path, files, version):
    files.write_cifar10(tmp_path, version=version)
    splits = load_dataset("cifar10", root=tmp_path, valid_fraction=0.25)
    assert (splits.n_train, splits.n_valid, splits.n_test) == (15, 5, 6)
    _check_images(splits, (3, 32, 32), 10)
    assert splits.classes[0] == "airplane"
    sub = "cifar-10-batches-bin" if version == "binary" else "cifar-10-batches-py"
    direct = load_dataset("cifar10", root=tmp_path / sub, valid_fraction=0.25)
    assert torch.equal(direct.test.tensors[0], splits.test.tensors[0])


def test_cifar10_binary_and_python_agree_and_binary_wins(tmp_path, files):
    files.write_cifar10(tmp_path / "bin", version="binary")
    files.write_cifar10(tmp_path / "py", version="python")
    binary = load_dataset("cifar10", root=tmp_path / "bin", standardize=False)
    python = load_dataset("cifar10", root=tmp_path / "py", standardize=False)
    for split in ("train", "valid", "test"):
        for a, b in zip(
            getattr(binary, split).tensors, getattr(python, split).tensors, strict=True
        ):
            assert torch.equal(a, b)
    assert binary.test.tensors[1].tolist() == [(i + 5) % 10 for i in range(6)]
    # with both versions present the binary one is read: corrupting the python one is harmless
    (tmp_path / "py" / "cifar-10-batches-py").rename(tmp_path / "bin" / "cifar-10-batches-py")
    (tmp_path / "bin" / "cifar-10-batches-py" / "test_batch").write_bytes(b"junk")
    assert load_dataset("cifar10", root=tmp_path / "bin").n_test == 6


def test_cifar10_corrupt_batch(tmp_path, files):
    files.write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"^corrupt CIFAR batch .*data_batch_3\.bin: 12282 bytes is not a whole number of 3073-byte records"):  # fmt: skip
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_missing_batch_names_both_versions(tmp_path, files):
    files.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", root=tmp_path)
    message = str(info.value)
    assert (
        "expected data_batch_1.bin, " in message
        and "test_batch.bin (binary version) or " in message
    )
    assert "data_batch_1, " in message and "test_batch (python version); looked in" in message
    assert message.endswith(f"{tmp_path}/cifar-10-batches-py")


def test_cifar10_python_refuses_foreign_pickle(tmp_path, files):
    files.write_cifar10(tmp_path, version="python")

    class Exploit:
        def __reduce__(self):
            return (os.system, ("true",))

    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(DatasetError, match=r"^refusing to unpickle \w+\.system from .*data_batch_2"):  # fmt: skip
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.parametrize("version", ["binary", "python"])
@pytest.mark.parametrize(("mode", "n_classes"), [("fine", 100), ("coarse", 20)])
def test_cifar100_label_modes(tmp_path, files, version, mode, n_classes):
    files.write_cifar100(tmp_path, version=version)
    splits = load_dataset("cifar100", root=tmp_path, label_mode=mode, valid_fraction=0.25)
    assert splits.n_classes == n_classes and (splits.n_train, splits.n_valid, splits.n_test) == (6, 2, 4)  # fmt: skip
    expected = [(50 + i) % n_classes for i in range(4)]
    assert splits.test.tensors[1].tolist() == expected
    assert splits.train.tensors[0].shape[1:] == (3, 32, 32)


def test_cifar100_bad_label_mode(tmp_path, files):
    files.write_cifar100(tmp_path)
    with pytest.raises(
        DatasetError, match=r"^label_mode must be 'fine' or 'coarse', got 'medium'$"
    ):
        load_dataset("cifar100", root=tmp_path, label_mode="medium")


# --- image folders --------------------------------------------------------------------------


def test_image_folder_flat_layout(tmp_path, files):
    files.write_image_folder(tmp_path, per_class=10)
    splits = load_dataset("image_folder", root=tmp_path, valid_fraction=0.2)
    assert (splits.n_train, splits.n_valid, splits.test) == (24, 6, None)
    assert splits.classes == ("cat", "dog", "fish") and splits.n_classes == 3
    assert torch.bincount(splits.valid.tensors[1]).tolist() == [2, 2, 2]
    assert splits.train.tensors[0].shape[1:] == (3, 6, 5) and splits.input_shape == (3, 6, 5)
    raw = load_dataset("image_folder", root=tmp_path, standardize=False)
    red = raw.train.tensors[0][raw.train.tensors[1] == 0]
    assert torch.all(red[:, 0] == 1.0) and torch.all(red[:, 1:] == 0.0)


def test_image_folder_split_layout_grayscale_resized(tmp_path, files):
    files.write_image_folder(tmp_path / "train", per_class=6, mode="L")
    files.write_image_folder(tmp_path / "val", per_class=2, mode="L", size=(9, 9))
    files.write_image_folder(tmp_path / "test", per_class=3)  # RGB: converted to one channel
    (tmp_path / "test" / "cat").rename(tmp_path / "test" / "zz_cat")  # unknown class
    with pytest.raises(DatasetError, match=r"^class folder\(s\) zz_cat in .*test have no training counterpart$"):  # fmt: skip
        load_dataset("image_folder", root=tmp_path, image_size=(4, 4))
    (tmp_path / "test" / "zz_cat").rename(tmp_path / "test" / "cat")
    splits = load_dataset("image_folder", root=tmp_path, image_size=(4, 4))
    assert (splits.n_train, splits.n_valid, splits.n_test) == (18, 6, 9)
    assert splits.input_shape == (1, 4, 4) and len(splits.mean) == 1


def test_image_folder_test_split_without_classes_of_its_own(tmp_path, files):
    files.write_image_folder(tmp_path / "train", per_class=4)
    files.write_image_folder(tmp_path / "test", per_class=1)
    (tmp_path / "test" / "cat").rename(tmp_path / "test" / "x")
    for image in (tmp_path / "test" / "x").iterdir():
        image.rename(tmp_path / "test" / "dog" / f"moved-{image.name}")
    (tmp_path / "test" / "x").rmdir()
    splits = load_dataset("image_folder", root=tmp_path)
    assert sorted(splits.test.tensors[1].tolist()) == [1, 1, 2]  # labels follow train classes


def test_image_folder_limit_decodes_only_the_subset(tmp_path, files):
    files.write_image_folder(tmp_path, per_class=5)
    (tmp_path / "dog" / "9.png").write_bytes(b"not a png")  # would fail if it were decoded
    chosen = []
    for seed in range(6):
        try:
            chosen.append(load_dataset("image_folder", root=tmp_path, limit=6, seed=seed).n_train)
        except DatasetError as error:
            assert "cannot read image" in str(error) and "9.png" in str(error)
            chosen.append(None)
    assert 5 in chosen and None in chosen  # subsets differ by seed; the bad file only when picked
    with pytest.raises(DatasetError, match=r"^cannot read image .*dog/9\.png: "):
        load_dataset("image_folder", root=tmp_path)


def test_image_folder_empty(tmp_path):
    with pytest.raises(DatasetError, match=r"^image folder .* is empty: expected "):
        load_dataset("image_folder", root=tmp_path)
