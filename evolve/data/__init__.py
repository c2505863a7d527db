"""Datasets for the search, with no downloads at run time.

Readers of the native formats live in :mod:`evolve.data.formats` and
:mod:`evolve.data.images`.
"""

from evolve.data.formats import read_cifar_binary, read_cifar_python, read_idx
from evolve.data.images import read_images, scan_image_folder
from evolve.data.safe_pickle import restricted_loads

__all__ = [
    "read_cifar_binary",
    "read_cifar_python",
    "read_idx",
    "read_images",
    "restricted_loads",
    "scan_image_folder",
]
