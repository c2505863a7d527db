"""File-based datasets: MNIST, Fashion-MNIST, CIFAR-10/100 and image folders.

Each reads a local folder in the dataset's native format (see :mod:`evolve.data.formats`).
``root`` may be the folder holding the files or its parent holding the canonical subfolder
(``cifar-10-batches-bin``, ``MNIST/raw`` ...). When files are missing, the error lists the
files expected and every folder looked in. CIFAR's binary version is preferred over the
python version, which needs a (restricted) unpickler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evolve.data.datasets import RawData, register_dataset
from evolve.data.formats import read_cifar_binary, read_cifar_python, read_idx
from evolve.data.images import read_images, scan_image_folder
from evolve.data.splitting import pick
from evolve.errors import DatasetError

__all__ = [
    "CIFAR10_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FileLayout",
    "load_cifar10_raw",
    "load_cifar100_raw",
    "load_fashion_mnist_raw",
    "load_image_folder_raw",
    "load_mnist_raw",
    "locate_files",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


@dataclass(frozen=True)
class FileLayout:
    """Where a dataset's files may lie and what they are called.

    Attributes:
        label: Name of the layout in messages (``"binary version"``).
        subfolders: Canonical subfolders of ``root`` to try after ``root`` itself.
        files: One tuple per required file: the names it may have (first is canonical).
    """

    label: str
    subfolders: tuple[str, ...]
    files: tuple[tuple[str, ...], ...]

    def describe(self) -> str:
        return ", ".join(names[0] for names in self.files)


def _idx_names(stem: str) -> tuple[str, ...]:
    dotted = stem.replace("-idx", ".idx")
    return (stem, f"{stem}.gz", dotted, f"{dotted}.gz")


def _mnist_layout(*subfolders: str) -> FileLayout:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    stems += ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return FileLayout("IDX files (raw or .gz)", subfolders, tuple(_idx_names(s) for s in stems))


def _cifar10_files(suffix: str) -> tuple[tuple[str, ...], ...]:
    names = [f"data_batch_{i}{suffix}" for i in range(1, 6)] + [f"test_batch{suffix}"]
    return tuple((name,) for name in names)


_LAYOUTS = {
    "mnist": (_mnist_layout("MNIST/raw", "MNIST", "mnist"),),
    "fashion_mnist": (
        _mnist_layout("FashionMNIST/raw", "FashionMNIST", "fashion_mnist", "fashion-mnist"),
    ),
    "cifar10": (
        FileLayout("binary version", ("cifar-10-batches-bin",), _cifar10_files(".bin")),
        FileLayout("python version", ("cifar-10-batches-py",), _cifar10_files("")),
    ),
    "cifar100": (
        FileLayout("binary version", ("cifar-100-binary",), (("train.bin",), ("test.bin",))),
        FileLayout("python version", ("cifar-100-python",), (("train",), ("test",))),
    ),
}


def _find(folder: Path, layout: FileLayout) -> list[Path] | None:
    found = []
    for names in layout.files:
        path = next((folder / n for n in names if (folder / n).is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def locate_files(
    root: Path, dataset: str, layouts: tuple[FileLayout, ...]
) -> tuple[FileLayout, list[Path]]:
    """Find a dataset's files in ``root`` or one of its canonical subfolders.

    Args:
        root: The folder given by the user.
        dataset: Dataset name, for messages.
        layouts: Layouts in order of preference.

    Returns:
        The layout found and the paths of its files, in the layout's order.

    Raises:
        DatasetError: ``root`` is missing, not a folder, empty, or no layout is complete;
            the message lists the expected files and the folders searched.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "sub").mkdir(); _ = (root / "sub" / "a.bin").write_bytes(b"")
        >>> layout, paths = locate_files(root, "toy", (FileLayout("toy", ("sub",), (("a.bin",),)),))
        >>> paths == [root / "sub" / "a.bin"]
        True
    """
    if not root.is_dir():
        raise DatasetError(f"root folder {root} for {dataset!r} does not exist or is not a folder")
    expected = " or ".join(f"{layout.describe()} ({layout.label})" for layout in layouts)
    if not any(root.iterdir()):
        raise DatasetError(f"root folder {root} is empty: {dataset!r} expects {expected}")
    searched: list[str] = []
    for layout in layouts:
        for folder in (root, *(root / sub for sub in layout.subfolders)):
            found = _find(folder, layout)
            if found is not None:
                return layout, found
            searched.append(str(folder))
    where = ", ".join(dict.fromkeys(searched))
    raise DatasetError(f"{dataset!r} files not found: expected {expected}; looked in {where}")


def _read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(
            f"{images_path} must hold images (3 dimensions) and {labels_path} labels "
            f"(1 dimension); found {images.ndim} and {labels.ndim}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; they must match"
        )
    if labels.size and int(labels.max()) > 9:
        raise DatasetError(f"label {int(labels.max())} in {labels_path} is outside 0..9")
    return images[:, None], labels.astype(np.int64)


def _idx_dataset(root: Path, dataset: str, classes: tuple[str, ...]) -> RawData:
    _, paths = locate_files(root, dataset, _LAYOUTS[dataset])
    x_train, y_train = _read_idx_pair(paths[0], paths[1])
    x_test, y_test = _read_idx_pair(paths[2], paths[3])
    return RawData(
        x_train, y_train, x_test, y_test, n_classes=10, classes=classes, pixel_scale=255.0
    )


@register_dataset("mnist", needs_root=True, description="MNIST digits from local IDX files")
def load_mnist_raw(root: Path, *, rng: np.random.Generator, limit: int | None) -> RawData:
    """MNIST from its four IDX files (raw or ``.gz``), as ``(1, 28, 28)`` images.

    Args:
        root: Folder with ``train-images-idx3-ubyte`` etc., or a parent holding ``MNIST/raw``.
        rng: Unused.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.

    Returns:
        The arrays (``uint8`` pixels, ``pixel_scale`` 255).

    Raises:
        DatasetError: Files missing or corrupt, or images and labels disagree.
    """
    return _idx_dataset(root, "mnist", tuple(str(d) for d in range(10)))


@register_dataset("fashion_mnist", needs_root=True, description="Fashion-MNIST from IDX files")
def load_fashion_mnist_raw(root: Path, *, rng: np.random.Generator, limit: int | None) -> RawData:
    """Fashion-MNIST from its four IDX files (raw or ``.gz``), as ``(1, 28, 28)`` images.

    Args:
        root: Folder with ``train-images-idx3-ubyte`` etc., or a parent holding
            ``FashionMNIST/raw``.
        rng: Unused.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.

    Returns:
        The arrays (``uint8`` pixels, ``pixel_scale`` 255).

    Raises:
        DatasetError: Files missing or corrupt, or images and labels disagree.
    """
    return _idx_dataset(root, "fashion_mnist", FASHION_MNIST_CLASSES)


def _concat(batches: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@register_dataset("cifar10", needs_root=True, description="CIFAR-10 from local batch files")
def load_cifar10_raw(root: Path, *, rng: np.random.Generator, limit: int | None) -> RawData:
    """CIFAR-10 from the binary (preferred) or python version, as ``(3, 32, 32)`` images.

    Args:
        root: Folder with the batch files, or a parent holding ``cifar-10-batches-bin`` or
            ``cifar-10-batches-py``.
        rng: Unused.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.

    Returns:
        The arrays (``uint8`` pixels, ``pixel_scale`` 255).

    Raises:
        DatasetError: Files missing, or a batch is corrupt.
    """
    layout, paths = locate_files(root, "cifar10", _LAYOUTS["cifar10"])
    binary = layout.label.startswith("binary")
    batches = [read_cifar_binary(p) if binary else read_cifar_python(p) for p in paths]
    x_train, y_train = _concat(batches[:-1])
    x_test, y_test = batches[-1]
    return RawData(
        x_train, y_train, x_test, y_test, n_classes=10, classes=CIFAR10_CLASSES, pixel_scale=255.0
    )


@register_dataset("cifar100", needs_root=True, description="CIFAR-100 from local batch files")
def load_cifar100_raw(
    root: Path, *, rng: np.random.Generator, limit: int | None, label_mode: str = "fine"
) -> RawData:
    """CIFAR-100 from the binary (preferred) or python version, as ``(3, 32, 32)`` images.

    Args:
        root: Folder with ``train.bin``/``test.bin`` (or ``train``/``test``), or a parent
            holding ``cifar-100-binary`` or ``cifar-100-python``.
        rng: Unused.
        limit: Unused here; applied by :func:`~evolve.data.load_dataset`.
        label_mode: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Returns:
        The arrays (``uint8`` pixels, ``pixel_scale`` 255).

    Raises:
        DatasetError: Bad ``label_mode``, files missing, or a batch is corrupt.
    """
    if label_mode not in ("fine", "coarse"):
        raise DatasetError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    n_classes = 100 if label_mode == "fine" else 20
    layout, paths = locate_files(root, "cifar100", _LAYOUTS["cifar100"])
    if layout.label.startswith("binary"):
        byte = 1 if label_mode == "fine" else 0
        read = [read_cifar_binary(p, n_label_bytes=2, label_byte=byte, n_classes=n_classes)
                for p in paths]  # fmt: skip
    else:
        key = f"{label_mode}_labels"
        read = [read_cifar_python(p, label_key=key, n_classes=n_classes) for p in paths]
    (x_train, y_train), (x_test, y_test) = read
    return RawData(x_train, y_train, x_test, y_test, n_classes=n_classes, pixel_scale=255.0)


_SPLIT_FOLDERS = {"train", "val", "valid", "test"}


def _read_part(
    folder: Path,
    classes: tuple[str, ...] | None,
    rng: np.random.Generator,
    limit: int | None,
    image_size: tuple[int, int] | None,
    channels: int | None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Scan one split folder, map its classes onto ``classes``, subset, decode.

    Returns ``(images, labels, class names found)``.
    """
    paths, labels, names = scan_image_folder(folder)
    if classes is not None:
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(
                f"class folder(s) {', '.join(unknown)} in {folder} have no training counterpart"
            )
        labels = np.asarray([classes.index(names[i]) for i in labels], dtype=np.int64)
    if limit is not None:
        keep = pick(len(paths), limit, rng, labels)
        paths, labels = [paths[i] for i in keep], labels[keep]
    return read_images(paths, image_size=image_size, channels=channels), labels, names


@register_dataset("image_folder", needs_root=True, description="root/<class>/<image> via Pillow")
def load_image_folder_raw(
    root: Path,
    *,
    rng: np.random.Generator,
    limit: int | None,
    image_size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> RawData:
    """Images in class subfolders, decoded with Pillow into ``(channels, height, width)``.

    Either ``root/<class>/<image>`` (no test split) or ``root/train/<class>/<image>`` with
    optional ``root/val`` (or ``valid``) and ``root/test`` laid out the same way. Classes are
    numbered in sorted order of the training folder names. With ``limit``, paths are
    subsampled (stratified) before any image is decoded.

    Args:
        root: The folder.
        rng: Generator for the ``limit`` subsets.
        limit: Keep at most this many images per split.
        image_size: ``(height, width)`` to resize to; ``None`` requires equal sizes.
        channels: 1 or 3; ``None`` follows the first training image.

    Returns:
        The arrays (``uint8`` pixels, ``pixel_scale`` 255).

    Raises:
        DatasetError: Empty or missing folders, unreadable images, unequal sizes, or
            held-out classes missing from training.
    """
    subfolders = set()
    if root.is_dir():
        subfolders = {p.name for p in root.iterdir() if p.is_dir() and p.name[0] != "."}
    if "train" not in subfolders or not subfolders <= _SPLIT_FOLDERS:
        x, y, classes = _read_part(root, None, rng, limit, image_size, channels)
        return RawData(x, y, classes=classes, n_classes=len(classes), pixel_scale=255.0)
    x_train, y_train, classes = _read_part(root / "train", None, rng, limit, image_size, channels)
    held_out: dict[str, np.ndarray] = {}
    for split, names in (("valid", ("val", "valid")), ("test", ("test",))):
        folder = next((root / n for n in names if n in subfolders), None)
        if folder is not None:
            x, y, _ = _read_part(folder, classes, rng, limit, image_size, x_train.shape[1])
            held_out[f"x_{split}"], held_out[f"y_{split}"] = x, y
    return RawData(
        x_train, y_train, classes=classes, n_classes=len(classes), pixel_scale=255.0, **held_out
    )
