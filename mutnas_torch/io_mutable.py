"""The :class:`~mutnas_torch.MutableModel` half of a model file: the adapter's own state.

Saved under ``mutable`` in ``model.json``: the mutnas graph, bindings, literals, pins,
channel references and change history (dataclasses as ``record`` values, index maps as
``array`` values), the example inputs' shapes and dtypes, and plain ``attributes``.

Everything here is data: records are rebuilt only for the classes in :data:`RECORDS`,
each field checked against the type it may hold (:data:`RECORD_FIELDS`), and values
decoded with no resolver, so a function or class is refused wherever it appears. The
example inputs are rebuilt as zeros only after their shapes are checked (sizes are
integers >= 0, their total under :data:`~mutnas_torch.io_schema.MAX_INPUT_ELEMENTS`).
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any

import numpy as np
import torch
from torch import fx

import mutnas as mn
from mutnas.change import IndexMaps
from mutnas.serialize import graph_from_dict, graph_to_dict
from mutnas_torch import io_schema, io_state
from mutnas_torch.analyze import _OPAQUE, Analysis, Literal, Ref
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_allow import identifier
from mutnas_torch.io_fx import decode_value, encode_value
from mutnas_torch.model import MutableModel

__all__ = ["RECORDS", "RECORD_FIELDS", "decode_mutable", "encode_mutable"]

RECORDS = {cls.__name__: cls for cls in (Binding, ParamAxis, Literal, Ref, mn.Change)}
_NONE = types.NoneType
# The types each record field may hold (ints exclude booleans; containers hold data).
RECORD_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "ParamAxis": {"target": str, "axis": int, "outer": int, "inner": int, "init": str},
    "Binding": {"vertex": str, "module": (str, _NONE), "kind": str, "outputs": list},
    "Literal": {"node": str, "path": tuple, "vertex": str, "outer": int, "inner": int},
    "Ref": {"vertex": str, "dim": int, "outer": int, "inner": int},
    "Change": {"kind": str, "outputs": IndexMaps, "inputs": IndexMaps, "copies": IndexMaps},
}
RECORD_FIELDS["Binding"] |= {"inputs": list, "node": (str, _NONE), "extra": dict}
RECORD_FIELDS["Change"] |= {"input_copies": IndexMaps, "nout_before": dict, "nout_after": dict}
RECORD_FIELDS["Change"] |= {"added": list, "removed": list, "edges_added": list}
RECORD_FIELDS["Change"] |= {"edges_removed": list, "groups": dict, "stats": dict}
_ARRAY_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64"}
_MUTABLE = {"graph", "bindings", "literals", "pinned", "refs", "example_inputs", "history"}
_SAVED = _MUTABLE | {"attributes"}
_ATTRIBUTE_TYPES = {"training": bool, "growth": str}
_NOT_SAVED = _MUTABLE | {"optimizers", "module"}  # live objects: attach them again after loading


def encode_mutable(mm: MutableModel) -> dict:
    """The ``mutable`` section of ``model.json`` for ``mm``.

    Example:
        >>> import mutnas_torch as mt
        >>> mm = mt.mutable(torch.nn.Sequential(torch.nn.Linear(2, 3)), torch.zeros(1, 2))
        >>> encode_mutable(mm)["example_inputs"]
        [{'tensor': {'shape': [1, 2], 'dtype': {'dtype': 'float32'}}}]
    """
    inputs = [
        {"tensor": {"shape": list(x.shape), "dtype": encode_value(x.dtype, "input")}}
        if torch.is_tensor(x)
        else encode_value(x, "example input", data=True)
        for x in mm.example_inputs
    ]
    return {
        "graph": graph_to_dict(mm.graph),
        "bindings": {k: _record(b) for k, b in mm.bindings.items()},
        "literals": _record(mm.literals),
        "pinned": dict(mm.pinned),
        "refs": {k: _record(v) for k, v in mm.refs.items()},
        "example_inputs": inputs,
        "history": _record(mm.history),
        "attributes": {  # training, growth and whatever plain settings the model gains
            k: _record(v)
            for k, v in vars(mm).items()
            if k not in io_state.INTERNALS - {"training"} and k not in _NOT_SAVED
        },
    }


def _record(obj: Any) -> Any:
    """Encode adapter state: records (dataclasses) by field, index arrays, the opaque marker."""
    if type(obj).__name__ in RECORDS and isinstance(obj, RECORDS[type(obj).__name__]):
        fields = {f.name: _record(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"record": [type(obj).__name__, fields]}
    if isinstance(obj, np.ndarray):
        return {"array": [str(obj.dtype), obj.tolist()]}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is _OPAQUE:
        return {"opaque": None}
    if isinstance(obj, (list, tuple)):
        items = [_record(v) for v in obj]
        return items if isinstance(obj, list) else {"tuple": items}
    if isinstance(obj, dict):
        tag = "index_maps" if isinstance(obj, IndexMaps) else "dict"
        return {tag: [[_record(k), _record(v)] for k, v in obj.items()]}
    return encode_value(obj, "mutnas state", data=True)


def _unrecord(data: Any, where: str = "mutable state") -> Any:
    if isinstance(data, list):
        return [_unrecord(d, where) for d in data]
    tag, body = next(iter(data.items())) if isinstance(data, dict) and len(data) == 1 else ("", 0)
    if tag == "record":
        return _decode_record(body, where)
    if tag == "array":
        if not isinstance(body, list) or len(body) != 2 or body[0] not in _ARRAY_DTYPES:
            raise MutnasTorchError(f"{where}: malformed array {body!r:.60}")
        return np.asarray(body[1], dtype=np.dtype(body[0]))
    if tag == "opaque" and body is None:
        return _OPAQUE
    if tag == "tuple" and isinstance(body, list):
        return tuple(_unrecord(d, where) for d in body)
    if tag in ("dict", "index_maps") and isinstance(body, list):
        items = {_unrecord(k, where): _unrecord(v, where) for k, v in _pairs(body, where)}
        return IndexMaps(items) if tag == "index_maps" else items
    return decode_value(data, None, where)


def _pairs(body: list, where: str) -> list:
    if not all(isinstance(p, list) and len(p) == 2 for p in body):
        raise MutnasTorchError(f"{where}: malformed dict {body!r:.60}")
    return body


def _decode_record(body: Any, where: str) -> Any:
    name = body[0] if isinstance(body, list) and len(body) == 2 else None
    if name not in RECORDS or not isinstance(body[1], dict):
        raise MutnasTorchError(f"{where}: unknown or malformed record {body!r:.60}")
    where = f"{where} {name}"
    spec = RECORD_FIELDS[name]
    if not set(body[1]) <= set(spec):
        raise MutnasTorchError(f"{where}: unknown fields {sorted(set(body[1]) - set(spec))}")
    fields = {k: _unrecord(v, where) for k, v in body[1].items()}
    for key, value in fields.items():
        kinds = spec[key]
        ok = isinstance(value, kinds) and not (type(value) is bool and kinds is int)
        if not ok:
            raise MutnasTorchError(f"{where}: field {key!r} holds {type(value).__name__}")
    if name == "Binding" and not _axes_only(fields):
        raise MutnasTorchError(f"{where}: outputs and inputs hold ParamAxis records only")
    return RECORDS[name](**fields)


def _axes_only(fields: dict) -> bool:
    groups = [fields.get("outputs", []), *fields.get("inputs", [])]
    return all(isinstance(g, list) and all(type(a) is ParamAxis for a in g) for g in groups)


def decode_mutable(d: Any, gm: fx.GraphModule) -> MutableModel:
    """Rebuild a :class:`~mutnas_torch.MutableModel` around ``gm`` from its saved state.

    Example:
        >>> import json, mutnas_torch as mt
        >>> mm = mt.mutable(torch.nn.Sequential(torch.nn.Linear(2, 3)), torch.zeros(1, 2))
        >>> saved = json.loads(json.dumps(encode_mutable(mm)))
        >>> twin = decode_mutable(saved, mm.module)
        >>> twin.graph == mm.graph, twin.bindings == mm.bindings
        (True, True)
    """
    if not isinstance(d, dict) or set(d) != _SAVED:
        raise MutnasTorchError(
            f"the mutable section has fields {sorted(d)[:10]}, not {sorted(_SAVED)}"
        )
    if not isinstance(d["pinned"], dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in d["pinned"].items()
    ):
        raise MutnasTorchError("the mutable section's pins are malformed (names to reasons)")
    analysis = Analysis(
        graph_from_dict(d["graph"]),
        {k: _unrecord(b, f"binding {k!r}") for k, b in d["bindings"].items()},
        _unrecord(d["literals"], "literals"),
        dict(d["pinned"]),
        {k: _unrecord(v, f"ref {k!r}") for k, v in d["refs"].items()},
    )
    _check_references(analysis, gm)
    mm = MutableModel(gm, analysis, _examples(d["example_inputs"]))
    mm.history = _unrecord(d["history"], "history")
    if not isinstance(mm.history, list) or not all(type(c) is mn.Change for c in mm.history):
        raise MutnasTorchError("the mutable section's history is not a list of Change records")
    for k, v in d["attributes"].items():
        if not identifier(k) or k.startswith("_") or k in _NOT_SAVED or hasattr(MutableModel, k):
            raise MutnasTorchError(f"the file sets forbidden MutableModel attribute {k!r:.60}")
        value = _unrecord(v, f"MutableModel attribute {k!r}")
        if k in _ATTRIBUTE_TYPES and type(value) is not _ATTRIBUTE_TYPES[k]:
            raise MutnasTorchError(f"MutableModel attribute {k!r} is not a {_ATTRIBUTE_TYPES[k]}")
        setattr(mm, k, value)
    return mm


def _check_references(analysis: Analysis, gm: fx.GraphModule) -> None:
    """Bindings name tensors and modules of the model; literals name its nodes."""
    modules = dict(gm.named_modules(remove_duplicate=False))
    tensors = {**dict(gm.named_parameters(remove_duplicate=False)), **dict(gm.named_buffers())}
    nodes = {n.name for n in gm.graph.nodes}
    for name, b in analysis.bindings.items():
        if type(b) is not Binding or (b.module is not None and b.module not in modules):
            raise MutnasTorchError(
                f"binding {name!r:.60} is not a Binding of a module of the model"
            )
        for axis in b.outputs + [a for group in b.inputs for a in group]:
            tensor = tensors.get(axis.target)
            if tensor is None or not 0 <= axis.axis < tensor.dim():
                raise MutnasTorchError(
                    f"binding {name!r:.60}: axis {axis.axis} of {axis.target!r:.60} is not an "
                    f"axis of a tensor of the model"
                )
    literals = analysis.literals
    for lit in literals if isinstance(literals, list) else [None]:
        ok = type(lit) is Literal and lit.node in nodes and 2 <= len(lit.path) <= 3
        if not ok or lit.path[0] not in ("args", "kwargs", "args_from"):
            raise MutnasTorchError(
                f"literal {lit!r:.80} does not name a node argument of the model"
            )


def _examples(data: Any) -> tuple:
    """Zeros of the saved shapes and dtypes, after checking their size."""
    if not isinstance(data, list):
        raise MutnasTorchError("example_inputs is not a list")
    specs, total = [], 0
    for i, item in enumerate(data):
        where = f"example input {i}"
        if not (isinstance(item, dict) and set(item) == {"tensor"}):
            specs.append((None, decode_value(item, None, where)))
            continue
        spec = item["tensor"]
        shape = spec.get("shape") if isinstance(spec, dict) else None
        dtype = decode_value(spec.get("dtype"), None, where) if isinstance(spec, dict) else None
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise MutnasTorchError(f"{where}: shape {shape!r:.60} is not a list of sizes")
        if not isinstance(dtype, torch.dtype) or set(spec) != {"shape", "dtype"}:
            raise MutnasTorchError(f"{where}: malformed dtype {dtype!r:.40}")
        total += math.prod(shape)
        if total > io_schema.MAX_INPUT_ELEMENTS:
            raise MutnasTorchError(
                f"{where}: example inputs of {total:,} elements, over the cap of "
                f"{io_schema.MAX_INPUT_ELEMENTS:,}; if you trust the file, raise "
                f"mutnas_torch.io_schema.MAX_INPUT_ELEMENTS"
            )
        specs.append((shape, dtype))
    return tuple(v if shape is None else torch.zeros(shape, dtype=v) for shape, v in specs)
