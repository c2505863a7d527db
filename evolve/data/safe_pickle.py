"""A restricted unpickler for the CIFAR "python version" batches.

The CIFAR-10/100 "python version" files are pickles: a dict holding a ``uint8`` numpy array
and lists of labels. ``pickle.load`` on such a file runs whatever callable the file names,
so a file that is corrupt, swapped or planted can execute code. Pickle cannot be made safe
in general, but these files need very little: numpy's array reconstruction and ``dtype``
(plus ``_codecs.encode``, which Python 3 uses for ``bytes`` in protocol-2 pickles). The
unpickler below admits exactly those globals and refuses every other one *before* it is
resolved, so nothing outside numpy's array constructors can run. Prefer the binary version
(``cifar-10-batches-bin``), which needs no pickle at all; :func:`evolve.data.load_dataset`
tries it first.
"""

from __future__ import annotations

import _codecs
import io
import pickle
from typing import Any

import numpy as np

from evolve.errors import DatasetError

__all__ = ["ALLOWED_GLOBALS", "restricted_loads"]


def _numpy_global(module: str, name: str) -> Any:
    """Resolve ``module.name`` inside numpy 2 (``numpy._core``) or numpy 1 (``numpy.core``)."""
    import importlib

    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    return None  # pragma: no cover - only on numpy versions without the function


#: ``(module, name)`` pairs a CIFAR batch may reference, mapped to the object to use.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
}
for _prefix in ("numpy.core", "numpy._core"):
    ALLOWED_GLOBALS[(f"{_prefix}.multiarray", "_reconstruct")] = _numpy_global(
        "numpy.core.multiarray", "_reconstruct"
    )
    ALLOWED_GLOBALS[(f"{_prefix}.numeric", "_frombuffer")] = _numpy_global(
        "numpy.core.numeric", "_frombuffer"
    )
ALLOWED_GLOBALS = {key: value for key, value in ALLOWED_GLOBALS.items() if value is not None}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` only returns :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: io.BytesIO, source: str):
        super().__init__(file, encoding="bytes")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise DatasetError(
                f"refusing to unpickle {module}.{name} from {self._source}: CIFAR python "
                "batches only hold numpy arrays, so the file is corrupt or not a CIFAR batch "
                "(the binary version needs no pickle)"
            ) from None


def restricted_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only numpy array reconstruction.

    Args:
        data: The pickled bytes (a CIFAR python batch).
        source: Where the bytes came from, for error messages.

    Returns:
        The unpickled object; ``str`` in Python 2 pickles come back as ``bytes``.

    Raises:
        DatasetError: The pickle names any other global, or is truncated or malformed.

    Example:
        >>> import pickle, numpy as np
        >>> restricted_loads(pickle.dumps({b"data": np.zeros(2, np.uint8)}))
        {b'data': array([0, 0], dtype=uint8)}
        >>> restricted_loads(pickle.dumps(eval))
        Traceback (most recent call last):
        ...
        evolve.errors.DatasetError: refusing to unpickle builtins.eval from <bytes>: ...
    """
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except DatasetError:
        raise
    except Exception as error:  # malformed pickles raise many types
        raise DatasetError(
            f"cannot unpickle {source}: {type(error).__name__}: {error} "
            "(the file is truncated or not a CIFAR python batch)"
        ) from error
