"""The declared schema of ``model.json``, its size caps, and the checks that hold them.

A model file is data, never behaviour. What :func:`mutnas_torch.load` accepts:

* top level (an object, no other keys): ``format`` (``"mutnas_torch.model"``), ``version``
  (an integer from 1 to :data:`VERSION`, not a boolean), ``save_id`` (32 hexadecimal
  digits), ``kind`` (``"graph_module"`` or ``"mutable_model"``), ``class_name`` (an
  identifier), ``meta`` (an object), ``modules`` and ``graph`` (arrays), ``tensors``
  (version 2: each tensor's ``dtype``, ``shape`` and ``sha256``), and ``mutable`` (an
  object) exactly when ``kind`` is ``"mutable_model"``;
* a module entry: ``name``, ``training``, ``parameters`` (``{"tensor", "requires_grad"}``
  or null each), ``buffers`` (tensor keys or null), ``non_persistent`` (some of its
  buffers), and below the root ``type`` and ``state``; or ``name`` and ``alias``;
* module state: data only, under names the module's class does not define (see
  :mod:`mutnas_torch.io_state`).

Size caps, checked before anything is allocated (module-level constants: a caller who
trusts a larger file may raise them, e.g. ``mutnas_torch.io_schema.MAX_JSON_BYTES = ...``):

* :data:`MAX_JSON_BYTES` (16 MiB): ``model.json``, read with a bounded read; it and
  ``model.safetensors`` must be regular files (a link to ``/dev/zero`` is refused).
* :data:`MAX_TENSOR_FILE_BYTES` (32 GiB): ``model.safetensors``.
* :data:`MAX_MODULES` (65,536) module entries and :data:`MAX_NODES` (262,144) graph nodes.
* :data:`MAX_DEPTH` (32): nesting of JSON arrays and objects.
* :data:`MAX_INPUT_ELEMENTS` (2**26, 256 MiB of float32): all elements of a
  MutableModel's example inputs together (they are rebuilt as zeros).

Checksums detect corruption (a flipped bit), not forgery: whoever can write the file can
write matching checksums. What keeps a crafted file from running code is the schema.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

import torch

from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_allow import identifier

__all__ = [
    "FORMAT",
    "MAX_DEPTH",
    "MAX_INPUT_ELEMENTS",
    "MAX_JSON_BYTES",
    "MAX_MODULES",
    "MAX_NODES",
    "MAX_TENSOR_FILE_BYTES",
    "VERSION",
    "check_document",
    "check_module_entry",
    "read_json",
    "read_regular",
    "tensor_records",
    "verify_tensors",
]

FORMAT = "mutnas_torch.model"
VERSION = 2  # 2: tensor checksums; 1: none (read, with a warning that nothing is verified)
MAX_JSON_BYTES = 16 * 2**20
MAX_TENSOR_FILE_BYTES = 32 * 2**30
MAX_MODULES = 2**16
MAX_NODES = 2**18
MAX_DEPTH = 32
MAX_INPUT_ELEMENTS = 2**26
_FIELDS = {
    "format": str,
    "version": int,
    "save_id": str,
    "kind": str,
    "class_name": str,
    "meta": dict,
    "modules": list,
    "graph": list,
    "tensors": dict,
    "mutable": dict,
}
_KINDS = ("graph_module", "mutable_model")
_ENTRY = {"name", "training", "parameters", "buffers", "non_persistent"}
_HEX = re.compile(r"[0-9a-f]{32}")


# ---------------------------------------------------------------- reading
def read_regular(
    file: Path, cap: int, *, read: bool = True, cap_home: str = "mutnas_torch.io_schema"
) -> bytes:
    """The bytes of ``file`` (at most ``cap``), refusing anything but a regular file.

    With ``read=False`` only the checks run (for files another library reads).
    ``cap_home`` is where the message says the cap can be raised.

    Example:
        >>> read_regular(Path("/dev/zero"), 10)
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: /dev/zero is not a regular file...
    """
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise MutnasTorchError(f"{file} cannot be opened: {err.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise MutnasTorchError(
                f"{file} is not a regular file (a device, FIFO or directory); copy the real "
                f"file there"
            )
        if info.st_size > cap:
            raise MutnasTorchError(_too_big(file, info.st_size, cap, cap_home))
        with os.fdopen(os.dup(fd), "rb") as f:
            # the size it has now, plus one byte to see it growing: read(n) allocates n
            raw = f.read(info.st_size + 1) if read else b""
    finally:
        os.close(fd)
    if len(raw) > info.st_size:
        raise MutnasTorchError(f"{file} grew while it was read; read it again when it is complete")
    return raw


def _too_big(file: Path, size: int, cap: int, cap_home: str) -> str:
    return (
        f"{file} is {size:,} bytes, over the {cap:,}-byte cap for this file; if you trust "
        f"it, raise the cap in {cap_home}"
    )


def read_json(file: Path) -> dict:
    """Parse ``model.json`` strictly: bounded size and depth, finite numbers, unique keys.

    Example:
        >>> import tempfile
        >>> file = Path(tempfile.mkdtemp()) / "model.json"
        >>> _ = file.write_text('{"format": NaN}')
        >>> read_json(file)
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: ...model.json is not valid JSON: NaN is not a JSON number...
    """
    raw = read_regular(file, MAX_JSON_BYTES)
    try:
        doc = json.loads(
            raw.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite,
            object_pairs_hook=_unique,
        )
    except (ValueError, RecursionError) as err:
        message = " ".join(str(err).split())[:200]
        raise MutnasTorchError(f"{file} is not valid JSON: {message}") from None
    _check_depth(doc, file)
    return doc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (model files write it as a tagged value)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _unique(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        keys = [k for k, _ in pairs]
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r:.40}")
    return out


def _check_depth(doc: Any, file: Path) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MutnasTorchError(
                f"{file} nests arrays and objects deeper than {MAX_DEPTH} levels (corrupt or "
                f"crafted file)"
            )
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, (dict, list)):
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


# ---------------------------------------------------------------- top level and entries
def check_document(doc: Any, file: Path) -> int:
    """Check the top-level fields of ``model.json``; return its format version.

    Example:
        >>> check_document({"format": FORMAT, "version": True}, Path("model.json"))
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: model.json has format version True; expected an integer from 1 to 2
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MutnasTorchError(f"{file} is not a mutnas_torch model file (format {FORMAT!r})")
    version = doc.get("version")
    if type(version) is int and version > VERSION:
        raise MutnasTorchError(
            f"{file} has format version {version}, newer than this mutnas_torch reads "
            f"({VERSION}); upgrade mutnas"
        )
    if type(version) is not int or version < 1:
        raise MutnasTorchError(
            f"{file} has format version {version!r:.40}; expected an integer from 1 to {VERSION}"
        )
    required = set(_FIELDS) - {"mutable"} - ({"tensors"} if version == 1 else set())
    required |= {"mutable"} if doc.get("kind") == "mutable_model" else set()
    missing, unknown = sorted(required - set(doc)), sorted(set(doc) - required)
    wrong = [k for k in sorted(required & set(doc)) if type(doc[k]) is not _FIELDS[k]]
    problems = [f"missing fields {missing}"] if missing else []
    problems += [f"unknown fields {unknown!s:.80}"] if unknown else []
    problems += [f"fields of the wrong type {wrong}"] if wrong else []
    if problems:
        raise MutnasTorchError(f"{file} is corrupt: {'; '.join(problems)}")
    if doc["kind"] not in _KINDS:
        raise MutnasTorchError(
            f"{file} is corrupt: kind {doc['kind']!r:.40} is not one of {_KINDS}"
        )
    if not _HEX.fullmatch(doc["save_id"]):
        raise MutnasTorchError(
            f"{file} is corrupt: save_id {doc['save_id']!r:.40} is not 32 hexadecimal digits"
        )
    if not identifier(doc["class_name"]):
        raise MutnasTorchError(f"{file}: malformed class name {doc['class_name']!r:.40}")
    for key, cap in (("modules", MAX_MODULES), ("graph", MAX_NODES)):
        if len(doc[key]) > cap:
            raise MutnasTorchError(
                f"{file} has {len(doc[key]):,} {key} entries, over the cap of {cap:,}; if you "
                f"trust it, raise the cap in mutnas_torch.io_schema"
            )
    return version


def check_module_entry(entry: Any) -> str:
    """Check one entry of ``modules``; return the module's name.

    Example:
        >>> check_module_entry({"name": "fc", "alias": None})
        'fc'
    """
    name = entry.get("name") if isinstance(entry, dict) else None
    where = f"module {name!r:.80}"
    if not isinstance(name, str):
        raise MutnasTorchError(f"malformed module entry {entry!r:.80} (corrupt file)")
    expected = (
        {"name", "alias"} if "alias" in entry else _ENTRY | ({"type", "state"} if name else set())
    )
    if set(entry) != expected:
        raise MutnasTorchError(
            f"{where}: fields {sorted(entry)} instead of {sorted(expected)} (corrupt file)"
        )
    if "alias" in entry:
        if entry["alias"] is not None and not isinstance(entry["alias"], str):
            raise MutnasTorchError(f"{where}: malformed alias (corrupt file)")
        return name
    params, buffers = entry["parameters"], entry["buffers"]
    maps = isinstance(params, dict) and isinstance(buffers, dict)
    checks = {
        "training": type(entry["training"]) is bool,
        "parameters": isinstance(params, dict)
        and all(spec is None or _parameter_spec(spec) for spec in params.values()),
        "buffers": isinstance(buffers, dict)
        and all(key is None or isinstance(key, str) for key in buffers.values()),
        "tensor names": maps
        and all(identifier(k) for k in [*params, *buffers])
        and not set(params) & set(buffers),
        "non_persistent": maps
        and isinstance(entry["non_persistent"], list)
        and all(isinstance(k, str) and k in buffers for k in entry["non_persistent"]),
        "type": not name or isinstance(entry["type"], str),
        "state": not name or isinstance(entry["state"], dict),
    }
    bad = [field for field, ok in checks.items() if not ok]
    if bad:
        raise MutnasTorchError(f"{where}: malformed {', '.join(bad)} (corrupt file)")
    return name


def _parameter_spec(spec: Any) -> bool:
    return (
        isinstance(spec, dict)
        and set(spec) == {"tensor", "requires_grad"}
        and isinstance(spec["tensor"], str)
        and type(spec["requires_grad"]) is bool
    )


# ---------------------------------------------------------------- tensors
def sha256(tensor: torch.Tensor) -> str:
    """The SHA-256 of a tensor's bytes, in memory order (as safetensors stores them).

    Example:
        >>> sha256(torch.zeros(0))
        'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
    """
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy()).hexdigest()


def tensor_records(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    """What ``model.json`` records of each tensor: dtype, shape and SHA-256.

    Example:
        >>> record = tensor_records({"w": torch.zeros(2, 3)})["w"]
        >>> record["dtype"], record["shape"], len(record["sha256"])
        ('float32', [2, 3], 64)
    """
    return {
        key: {"dtype": _dtype(t), "shape": list(t.shape), "sha256": sha256(t)}
        for key, t in tensors.items()
    }


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def verify_tensors(records: dict, tensors: dict[str, torch.Tensor], file: Path) -> None:
    """Check the tensors read from ``file`` against the records of ``model.json``.

    Example:
        >>> records = tensor_records({"w": torch.zeros(2)})
        >>> verify_tensors(records, {"w": torch.tensor([0.0, 1.0])}, Path("model.safetensors"))
        Traceback (most recent call last):
        ...
        mutnas_torch.errors.MutnasTorchError: model.safetensors: tensor 'w' does not match its SHA-256 in model.json...
    """
    if set(records) != set(tensors):
        odd = sorted(set(records) ^ set(tensors))[:5]
        raise MutnasTorchError(
            f"{file} holds other tensors than model.json records ({odd}...); the two files do "
            f"not belong together: save the model again"
        )
    for key, record in records.items():
        t = tensors[key]
        if not isinstance(record, dict) or set(record) != {"dtype", "shape", "sha256"}:
            raise MutnasTorchError(f"model.json: malformed record of tensor {key!r:.80}")
        if record["dtype"] != _dtype(t) or record["shape"] != list(t.shape):
            raise MutnasTorchError(
                f"{file}: tensor {key!r} is {_dtype(t)} {list(t.shape)}, but model.json "
                f"records {record['dtype']!r:.20} {record['shape']!r:.60} (altered or corrupt)"
            )
        if record["sha256"] != sha256(t):
            raise MutnasTorchError(
                f"{file}: tensor {key!r} does not match its SHA-256 in model.json (a flipped "
                f"bit or an edit: the file is corrupt); save the model again"
            )
