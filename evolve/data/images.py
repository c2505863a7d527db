"""Image folders: ``root/<class name>/<image>.png`` read with Pillow into one array.

The layout is torchvision's ``ImageFolder``: one subfolder per class, classes numbered in
sorted order of their folder names, images found at any depth below their class folder.
Scanning (:func:`scan_image_folder`) is separate from decoding (:func:`read_images`) so that
a ``limit`` can drop paths before any image is opened.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from evolve.errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "read_images", "scan_image_folder"]

#: File suffixes (lower case) taken as images; other files are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
    )


def scan_image_folder(root: str | os.PathLike) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """List the images of a class-per-subfolder tree.

    Args:
        root: The folder holding one subfolder per class.

    Returns:
        ``(paths, labels, classes)``: image paths in sorted order, their ``int64`` class
        indices, and the class names (sorted folder names; index ``i`` is ``classes[i]``).

    Raises:
        DatasetError: ``root`` is missing or empty, holds images but no class folders, or a
            class folder holds no images.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     Image.new("L", (4, 4)).save(root / name / "a.png")
        >>> paths, labels, classes = scan_image_folder(root)
        >>> labels.tolist(), classes
        ([0, 1], ('cat', 'dog'))
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist or is not a folder")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        if any(_is_image(p) for p in root.iterdir()):
            raise DatasetError(
                f"image folder {root} holds images but no class subfolders: "
                f"move them into {root}/<class name>/"
            )
        raise DatasetError(
            f"image folder {root} is empty: expected {root}/<class name>/<image>.png"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        found = sorted(p for p in class_dir.rglob("*") if _is_image(p))
        if not found:
            raise DatasetError(
                f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add some or remove the folder"
            )
        paths += found
        labels += [index] * len(found)
    return paths, np.asarray(labels, dtype=np.int64), tuple(p.name for p in class_dirs)


def _open(path: Path) -> Image.Image:
    """Decode one image fully, turning every Pillow failure into a DatasetError.

    An image larger than Pillow's ``Image.MAX_IMAGE_PIXELS`` is refused from its header,
    before it is decoded (Pillow itself only warns up to twice that size).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.copy()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error
    except Image.DecompressionBombWarning as error:
        raise DatasetError(
            f"cannot read image {path}: {error}; raise PIL.Image.MAX_IMAGE_PIXELS if it is real"
        ) from error


def read_images(
    paths: list[Path], *, image_size: tuple[int, int] | None = None, channels: int | None = None
) -> np.ndarray:
    """Decode images into one ``uint8`` array of shape ``(n, channels, height, width)``.

    Args:
        paths: Image files, e.g. from :func:`scan_image_folder`.
        image_size: ``(height, width)`` to resize every image to (bilinear); ``None`` requires
            all images to share the size of the first.
        channels: 1 (grayscale) or 3 (RGB); ``None`` takes 1 when the first image has a
            single band, else 3. Other images are converted to match.

    Returns:
        The stacked images, channels first.

    Raises:
        DatasetError: ``paths`` is empty, ``channels`` is not 1 or 3, an image cannot be
            decoded, or sizes differ and no ``image_size`` was given.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "red.png"
        >>> Image.new("RGB", (5, 4), (255, 0, 0)).save(path)
        >>> read_images([path]).shape
        (1, 3, 4, 5)
    """
    if not paths:
        raise DatasetError("no images to read: the list of paths is empty")
    if channels not in (None, 1, 3):
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    first = _open(paths[0])
    if channels is None:
        channels = 1 if len(first.getbands()) == 1 and first.mode != "P" else 3
    height, width = image_size if image_size is not None else (first.height, first.width)
    mode = "L" if channels == 1 else "RGB"
    try:
        out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    except MemoryError:
        raise DatasetError(
            f"{len(paths)} images of {channels}x{height}x{width} (the size of {paths[0]}) need "
            f"{len(paths) * channels * height * width} bytes, more than this machine can "
            "allocate; pass image_size=(height, width) or a limit"
        ) from None
    for i, path in enumerate(paths):
        image = first if i == 0 else _open(path)
        if (image.height, image.width) != (height, width):
            if image_size is None:
                raise DatasetError(
                    f"image {path} is {image.height}x{image.width} (HxW) but {paths[0]} is "
                    f"{height}x{width}; pass image_size=(height, width) to resize them all"
                )
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image.convert(mode), dtype=np.uint8)
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out
