"""Image folders: scanning class subfolders and decoding images with Pillow."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evolve.data.images import read_images, scan_image_folder
from evolve.errors import DatasetError


def test_scan_numbers_classes_in_sorted_order(tmp_path, files):
    files.write_image_folder(tmp_path, per_class=2)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"")
    (tmp_path / "dog" / "nested").mkdir()
    Image.new("RGB", (5, 6)).save(tmp_path / "dog" / "nested" / "deep.png")
    paths, labels, classes = scan_image_folder(tmp_path)
    assert classes == ("cat", "dog", "fish")
    assert labels.dtype == np.int64 and labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert [p.name for p in paths[:2]] == ["0.png", "1.png"]
    assert any(p.name == "deep.png" for p in paths)


def test_scan_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"^image folder .*nowhere does not exist"):
        scan_image_folder(tmp_path / "nowhere")


def test_scan_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"^image folder .* is empty: expected .*/<class name>/<image>\.png$"):  # fmt: skip
        scan_image_folder(tmp_path)


def test_scan_images_without_class_folders(tmp_path):
    Image.new("L", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetError, match=r"holds images but no class subfolders: move them"):
        scan_image_folder(tmp_path)


def test_scan_class_folder_without_images(tmp_path, files):
    files.write_image_folder(tmp_path, per_class=1)
    (tmp_path / "zebra").mkdir()
    (tmp_path / "zebra" / "readme.md").write_text("x")
    with pytest.raises(DatasetError, match=r"^class folder .*zebra holds no images \(.png"):
        scan_image_folder(tmp_path)


def test_read_rgb_channels_first(tmp_path, files):
    files.write_image_folder(tmp_path, per_class=1, size=(6, 5))
    paths, _, _ = scan_image_folder(tmp_path)
    images = read_images(paths)
    assert images.dtype == np.uint8 and images.shape == (3, 3, 6, 5)
    assert images[0, :, 2, 3].tolist() == [255, 0, 0]  # cat is red
    assert images[2, :, 0, 0].tolist() == [0, 0, 255]  # fish is blue


def test_read_grayscale_inferred_and_forced(tmp_path, files):
    gray, _, _ = scan_image_folder(files.write_image_folder(tmp_path / "gray", mode="L"))
    assert read_images(gray).shape == (12, 1, 6, 5)
    assert read_images(gray, channels=3).shape == (12, 3, 6, 5)
    rgb, _, _ = scan_image_folder(files.write_image_folder(tmp_path / "rgb"))
    as_gray = read_images(rgb, channels=1)
    assert as_gray.shape == (12, 1, 6, 5)
    assert as_gray[0, 0, 0, 0] == Image.new("RGB", (1, 1), (255, 0, 0)).convert("L").getpixel(
        (0, 0)
    )


def test_read_resizes_to_image_size(tmp_path):
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (3, 5), (10, 20, 30)).save(tmp_path / "b.jpg")
    images = read_images([tmp_path / "a.png", tmp_path / "b.jpg"], image_size=(4, 6))
    assert images.shape == (2, 3, 4, 6)


def test_read_unequal_sizes_need_image_size(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (3, 5)).save(tmp_path / "b.png")
    with pytest.raises(DatasetError, match=r"image .*b.png is 5x3 \(HxW\) but .*a.png is 8x8; pass image_size"):  # fmt: skip
        read_images([tmp_path / "a.png", tmp_path / "b.png"])


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n garbage", b"GIF89a"])
def test_read_unreadable_image(tmp_path, content):
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(DatasetError, match=r"^cannot read image .*bad.png: "):
        read_images([tmp_path / "good.png", tmp_path / "bad.png"])


def test_read_truncated_png(tmp_path):
    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)).save(
        tmp_path / "cut.png"
    )
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"^cannot read image .*cut.png: "):
        read_images([tmp_path / "cut.png"])


def test_read_no_paths():
    with pytest.raises(DatasetError, match=r"no images to read: the list of paths is empty"):
        read_images([])


def test_read_bad_channels(tmp_path):
    with pytest.raises(DatasetError, match=r"channels must be 1 .* or 3 .*, got 4"):
        read_images([tmp_path / "x.png"], channels=4)


@pytest.mark.parametrize(
    ("size", "cause"),
    [((15, 10), "DecompressionBombWarning|exceeds limit"), ((30, 10), "exceeds limit")],
)
def test_read_refuses_images_over_the_pixel_limit_from_their_header(
    tmp_path, monkeypatch, size, cause
):
    """Pillow only warns between MAX_IMAGE_PIXELS and twice that; both are refused here."""
    path = tmp_path / "big.png"
    Image.new("L", size).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(DatasetError, match=rf"^cannot read image .*big.png: .*({cause})") as info:
        read_images([path])
    assert "\n" not in str(info.value)


def test_read_says_how_much_memory_the_images_need(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (5, 4)).save(path)

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr("evolve.data.images.np.empty", no_memory)
    with pytest.raises(DatasetError, match=r"^3 images of 3x4x5 .* need 180 bytes, more than"):
        read_images([path] * 3)
