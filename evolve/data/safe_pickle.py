"""A restricted unpickler for the CIFAR "python version" batches.

The CIFAR-10/100 "python version" files are pickles: a dict holding a ``uint8`` numpy array
and lists of labels. ``pickle.load`` on such a file runs whatever callable the file names,
so a file that is corrupt, swapped or planted can execute code. Pickle cannot be made safe
in general, but these files need very little: numpy's array reconstruction and ``dtype``
(plus ``_codecs.encode``, which Python 3 uses for ``bytes`` in protocol-2 pickles).

Naming only those is not enough: numpy's own ``_reconstruct(ndarray, shape, dtype)`` and
``ndarray(shape, dtype)`` allocate any shape, of any dtype (objects included), before a
byte of data is read, so a pickle of a hundred bytes can ask for gigabytes, or come back
as an array of whatever memory held. So no global resolves to the numpy callable itself:
each resolves to a stand-in that accepts exactly the calls numpy's pickles make
(``_reconstruct(ndarray, (0,), b"b")``, ``dtype("u1", False, True)``,
``_codecs.encode(text, "latin1")``) and builds the array only when its state arrives, from
bytes that the file holds, once shape, dtype and length agree. Plain numeric dtypes only.
Prefer the binary version (``cifar-10-batches-bin``), which needs no pickle at all;
:func:`evolve.data.load_dataset` tries it first.
"""

from __future__ import annotations

import io
import pickle
import re
from typing import Any

import numpy as np

from evolve.errors import DatasetError

__all__ = ["ALLOWED_GLOBALS", "restricted_loads"]

#: Dtypes an array in the file may have: booleans, integers and floats of 1 to 8 bytes.
_DTYPE_SPEC = re.compile(r"[biuf][1248]")
_BYTE_ORDERS = ("<", ">", "|", "=")
_MAX_DIMS = 32
_CRAFTED = "(the file is corrupt or crafted; CIFAR batches hold plain uint8 arrays)"


class _Refused(Exception):
    """A stand-in refused ``what`` because ``why``; ``restricted_loads`` adds the source."""

    def __init__(self, why: str, what: str = "an array"):
        super().__init__(why)
        self.what, self.why = what, why


class _Ndarray:
    """What ``numpy.ndarray`` resolves to: a marker for ``_reconstruct``, never called."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise _Refused(
            f"numpy's pickles never call it; it would allocate any shape with no data {_CRAFTED}",
            "a call of numpy.ndarray",
        )

    def __repr__(self) -> str:
        return "ndarray"


_NDARRAY = _Ndarray()


def _text(value: Any, what: str) -> str:
    """A short str from ``value`` (Python 2 pickles read with ``encoding="bytes"``)."""
    if isinstance(value, bytes):
        value = value.decode("latin1")
    if not isinstance(value, str) or len(value) > 16:
        raise _Refused(f"{what} must be a short string, got {type(value).__name__} {_CRAFTED}")
    return value


class _Dtype:
    """A numeric dtype as the file describes it; numpy never sees the file's dtype state."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True):
        spec = _text(spec, "a dtype")
        if not _DTYPE_SPEC.fullmatch(spec):
            raise _Refused(
                f"only bool, int and float dtypes are allowed {_CRAFTED}", f"numpy dtype {spec!r}"
            )
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise _Refused(f"its state is not a plain dtype's {_CRAFTED}", "a numpy dtype")
        order = _text(state[1], "a byte order")
        if order not in _BYTE_ORDERS or any(x is not None for x in state[2:5]):
            raise _Refused(
                f"byte order {order!r} or fields where a plain dtype has none {_CRAFTED}",
                "a numpy dtype",
            )
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _checked_shape(shape: Any) -> tuple[int, ...]:
    valid = isinstance(shape, tuple) and len(shape) <= _MAX_DIMS
    valid = valid and all(type(n) is int and n >= 0 for n in shape)
    if not valid:
        raise _Refused(f"its shape {shape!r} is not a tuple of non-negative ints {_CRAFTED}")
    return shape


def _array_from(raw: Any, dtype: Any, shape: Any, fortran: bool) -> np.ndarray:
    """The array ``shape`` of ``dtype`` read from ``raw``, if ``raw`` holds exactly that."""
    if not isinstance(dtype, _Dtype):
        raise _Refused(f"its dtype {dtype!r} is not a plain numeric dtype {_CRAFTED}")
    shape = _checked_shape(shape)
    if not isinstance(raw, bytes | bytearray):
        raise _Refused(
            f"its data is a {type(raw).__name__}, not bytes (an object array?) {_CRAFTED}"
        )
    n_bytes = dtype.dtype.itemsize
    for n in shape:
        n_bytes *= n
    if n_bytes != len(raw):
        raise _Refused(
            f"its shape {shape} of {dtype.dtype} needs {n_bytes} bytes but the file holds "
            f"{len(raw)} bytes for it {_CRAFTED}"
        )
    return np.frombuffer(raw, dtype=dtype.dtype).reshape(shape, order="F" if fortran else "C")


class _ArraySpec:
    """What ``_reconstruct`` returns: an empty array that its pickled state fills."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4 or self.array is not None:
            raise _Refused(f"its state is not (version, shape, dtype, fortran, bytes) {_CRAFTED}")
        shape, dtype, fortran, raw = state
        self.array = _array_from(raw, dtype, shape, bool(fortran))


class _Unpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` resolves :data:`ALLOWED_GLOBALS` to checked stand-ins."""

    def __init__(self, file: io.BytesIO):
        super().__init__(file, encoding="bytes")
        self.arrays: list[_ArraySpec] = []
        self._stand_ins = {
            "ndarray": _NDARRAY,
            "dtype": _Dtype,
            "_reconstruct": self._reconstruct,
            "_frombuffer": _frombuffer,
            "encode": _encode,
        }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused(
                "CIFAR python batches only hold numpy arrays, so the file is corrupt or not a "
                "CIFAR batch (the binary version needs no pickle)",
                f"to unpickle {module}.{name}",
            )
        return self._stand_ins[name]

    def _reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> _ArraySpec:
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise _Refused(
                "numpy's pickles call it with (ndarray, (0,), b'b') and fill the array from "
                f"the file; this call would allocate the shape with no data {_CRAFTED}",
                f"numpy _reconstruct({subtype!r}, {shape!r}, {typecode!r})",
            )
        spec = _ArraySpec()
        self.arrays.append(spec)
        return spec


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` (protocol 5), with the checks of ``_ArraySpec``."""
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = bytes(buffer)
    return _array_from(buffer, dtype, shape, _text(order, "an order") == "F")


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise _Refused(
            f"pickles only encode text as latin1 {_CRAFTED}", f"_codecs.encode(..., {encoding!r})"
        )
    return text.encode("latin1")


#: ``(module, name)`` pairs a CIFAR batch may reference (numpy 1 and 2 spellings).
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")]
    + [(f"{p}.multiarray", "_reconstruct") for p in ("numpy.core", "numpy._core")]
    + [(f"{p}.numeric", "_frombuffer") for p in ("numpy.core", "numpy._core")]
)


def _resolve(value: Any, depth: int = 0) -> Any:
    """``value`` with every filled ``_ArraySpec`` replaced by its array (3 levels deep)."""
    if isinstance(value, _ArraySpec):
        return value.array
    if depth < 3 and isinstance(value, dict):
        return {key: _resolve(item, depth + 1) for key, item in value.items()}
    nested = depth < 3 and isinstance(value, list | tuple)
    if nested and any(isinstance(item, _ArraySpec | dict | list | tuple) for item in value):
        return type(value)(_resolve(item, depth + 1) for item in value)
    return value


def restricted_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` admitting only numpy arrays of plain numeric dtypes.

    Args:
        data: The pickled bytes (a CIFAR python batch).
        source: Where the bytes came from, for error messages.

    Returns:
        The unpickled object; ``str`` in Python 2 pickles come back as ``bytes``. Arrays are
        read-only views of ``data``'s bytes.

    Raises:
        DatasetError: The pickle names any other global, calls an allowed one with other
            arguments than numpy's pickles do, declares an array larger or smaller than the
            bytes it holds, or is truncated or malformed.

    Example:
        >>> import pickle, numpy as np
        >>> restricted_loads(pickle.dumps({b"data": np.zeros(2, np.uint8)}))
        {b'data': array([0, 0], dtype=uint8)}
        >>> restricted_loads(pickle.dumps(eval))
        Traceback (most recent call last):
        ...
        evolve.errors.DatasetError: refusing to unpickle builtins.eval from <bytes>: ...
    """
    unpickler = _Unpickler(io.BytesIO(data))
    try:
        loaded = unpickler.load()
    except _Refused as refusal:
        raise DatasetError(f"refusing {refusal.what} from {source}: {refusal.why}") from None
    except MemoryError:  # CPython sizes a bytes value from its declared length, then reads
        raise DatasetError(
            f"refusing {source}: it declares a value larger than memory allows {_CRAFTED}"
        ) from None
    except Exception as error:  # malformed pickles raise many types
        detail = " ".join(str(error).split())
        raise DatasetError(
            f"cannot unpickle {source}: {type(error).__name__}: {detail} "
            "(the file is truncated or not a CIFAR python batch)"
        ) from error
    empty = sum(spec.array is None for spec in unpickler.arrays)
    if empty:
        raise DatasetError(
            f"refusing {empty} array(s) from {source}: never given their data {_CRAFTED}"
        )
    return _resolve(loaded)
