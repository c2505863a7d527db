"""Model files with no pickle: :func:`save` and :func:`load`.

A model file is a directory with two files:

* ``model.safetensors``: every parameter and buffer, once each, under the qualified name
  of its first owner (tied weights are stored once and stay tied after loading).
* ``model.json``: ``format`` (``"mutnas_torch.model"``), ``version``, ``save_id`` (also in
  the tensor file's metadata, so the two cannot be mixed up), ``kind`` (``"graph_module"``
  or ``"mutable_model"``), the ``GraphModule``'s ``class_name`` and ``meta``; ``modules``:
  the module tree in pre-order, each with its qualified name, its type's qualified name,
  its plain attributes (what its constructor stored: sizes, kernel sizes, flags...), its
  training flag and the tensor keys of its parameters and buffers (a module met twice is
  an ``alias``); ``graph``: the fx nodes in order (see :mod:`mutnas_torch.io_fx`); and for
  a :class:`~mutnas_torch.MutableModel`, ``mutable``: the mutnas graph, bindings, literals,
  pins, channel references and change history (dataclasses as ``record`` values, index
  maps as ``array`` values), example input shapes and dtypes, and plain ``attributes``.

Modules are rebuilt as ``copy.deepcopy`` rebuilds them (an empty instance given its saved
attributes), for vetted classes only: nothing a file names is imported or called unless
:class:`~mutnas_torch.io_fx.Resolver` vets it or the caller passes it to :func:`load`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import fx, nn

import mutnas as mn
from mutnas.change import IndexMaps
from mutnas.serialize import graph_from_dict, graph_to_dict
from mutnas_torch.analyze import _OPAQUE, Analysis, Literal, Ref
from mutnas_torch.bindings import Binding, ParamAxis
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_fx import (
    Resolver,
    _identifier,
    class_name,
    decode_graph,
    decode_value,
    encode_graph,
)
from mutnas_torch.io_fx import encode_value as _value
from mutnas_torch.model import MutableModel

__all__ = ["FORMAT", "VERSION", "load", "save"]

log = logging.getLogger(__name__)

FORMAT = "mutnas_torch.model"
VERSION = 1
JSON_FILE = "model.json"
TENSOR_FILE = "model.safetensors"
_INTERNALS = frozenset(nn.Module().__dict__)
# Attributes derived from the parameters: not saved, rebuilt by the named method.
_DERIVED = {nn.RNNBase: (("_flat_weights", "_flat_weight_refs"), "_init_flat_weights")}


def save(model: MutableModel | fx.GraphModule, path: str | os.PathLike) -> Path:
    """Write ``model`` to the directory ``path`` (created if needed; files are replaced).

    Args:
        model: a :class:`~mutnas_torch.MutableModel`, or a ``torch.fx.GraphModule`` (for
            instance from :meth:`~mutnas_torch.MutableModel.to_module`).
        path: the directory to write ``model.json`` and ``model.safetensors`` into.

    Returns:
        The directory written.

    Raises:
        MutnasTorchError: the model holds something a model file cannot describe (a
            module attribute that is not plain data, a function defined in a function,
            a tensor subclass), naming where it is.

    Example:
        >>> import tempfile, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> mm = mt.mutable(net, torch.randn(3, 4))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     folder = save(mm, Path(tmp) / "mlp")
        ...     sorted(p.name for p in folder.iterdir())
        ['model.json', 'model.safetensors']
    """
    if isinstance(model, MutableModel):
        gm, kind = model.module, "mutable_model"
    elif isinstance(model, fx.GraphModule):
        gm, kind = model, "graph_module"
    else:
        raise MutnasTorchError(
            f"save() takes a MutableModel or a torch.fx.GraphModule, not "
            f"{type(model).__qualname__}; trace it first with mutnas_torch.mutable(model, "
            f"example_inputs) or torch.fx.symbolic_trace(model)"
        )
    tensors: dict[str, torch.Tensor] = {}
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "save_id": uuid.uuid4().hex,
        "kind": kind,
        "class_name": type(gm).__name__,
        "meta": _encode_meta(gm.meta),
        "modules": list(_encode_modules(gm, tensors)),
        "graph": encode_graph(gm.graph),
    }
    if isinstance(model, MutableModel):
        doc["mutable"] = _encode_mutable(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "version": str(VERSION), "save_id": doc["save_id"]}
    _replace(path / TENSOR_FILE, lambda f: safetensors.torch.save_file(_own(tensors), f, metadata))
    _replace(path / JSON_FILE, lambda f: Path(f).write_text(json.dumps(doc), encoding="utf-8"))
    return path


def load(
    path: str | os.PathLike,
    *,
    modules: Mapping[str, type[nn.Module]] | None = None,
    functions: Mapping[str, Callable] | None = None,
    methods: Iterable[str] = (),
    device: str | torch.device = "cpu",
) -> MutableModel | fx.GraphModule:
    """Read a model written by :func:`save`, without pickle and without running its code.

    Module types load only from ``torch.nn``, ``torchvision.ops`` and ``torchvision.models``;
    functions only from a list of pure tensor functions. Pass your own on trust.

    Args:
        path: the directory :func:`save` wrote (or either file in it).
        modules: module classes by qualified name, for user-defined leaf layers
            (``{"mypkg.layers.Swish": Swish}``).
        functions: ``call_function`` targets by qualified name (``torch.fx.wrap`` functions).
        methods: further tensor method or attribute names the graph may use.
        device: where the tensors go.

    Returns:
        A :class:`~mutnas_torch.MutableModel` if one was saved, else a plain
        ``torch.fx.GraphModule``.

    Raises:
        MutnasTorchError: the file is missing, corrupt, written by a newer version, or
            names a module type or function that is not allowed (the message says how to
            allow it).

    Example:
        >>> import tempfile, torch, mutnas_torch as mt
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> mm = mt.mutable(net, torch.randn(3, 4))
        >>> _ = mm.resize("0", -2)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = save(mm, tmp)
        ...     loaded = load(tmp)
        >>> x = torch.randn(3, 4)
        >>> torch.equal(loaded(x), mm(x)), loaded.module.get_submodule("0").out_features
        (True, 6)
    """
    path = Path(path)
    if path.is_file() and path.name in (JSON_FILE, TENSOR_FILE):
        path = path.parent
    doc = _read_json(path)
    tensors = _read_tensors(path, doc["save_id"], device)
    resolver = Resolver(modules, functions, methods)
    try:
        root = _decode_modules(doc["modules"], tensors, resolver)
        gm = _graph_module(root, decode_graph(doc["graph"], resolver), doc, resolver)
        if doc["kind"] == "graph_module":
            return gm
        return _decode_mutable(doc["mutable"], gm, resolver)
    except MutnasTorchError:
        raise
    except Exception as err:  # a malformed entry: KeyError, TypeError, ValueError...
        raise MutnasTorchError(
            f"{path / JSON_FILE} is corrupt: {type(err).__name__}: {err}"
        ) from err


# ---------------------------------------------------------------- files
def _replace(target: Path, write: Callable[[str], Any]) -> None:
    """Write through a temporary file, so a crash never leaves a half-written file."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    file = path / JSON_FILE
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MutnasTorchError(
            f"no model file at {str(path)!r}: {JSON_FILE} is missing (write one with "
            f"mutnas_torch.save(model, path))"
        ) from None
    except (OSError, ValueError, RecursionError) as err:
        raise MutnasTorchError(f"{file} is unreadable or not valid JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise MutnasTorchError(f"{file} is not a mutnas_torch model file (format {FORMAT!r})")
    version = doc.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise MutnasTorchError(
            f"{file} has format version {version!r}, newer than this mutnas_torch reads "
            f"({VERSION}); upgrade mutnas"
        )
    if doc.get("kind") not in ("graph_module", "mutable_model") or "save_id" not in doc:
        raise MutnasTorchError(f"{file} is corrupt: no kind or save_id")
    return doc


def _read_tensors(path: Path, save_id: str, device: str | torch.device) -> dict:
    file = path / TENSOR_FILE
    try:
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            tensors = {key: _aligned(f.get_tensor(key)) for key in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, RuntimeError) as err:
        raise MutnasTorchError(f"{file} is missing, unreadable or corrupt: {err}") from None
    if metadata.get("save_id") != save_id:
        raise MutnasTorchError(
            f"{file} does not belong to {JSON_FILE} next to it (they come from different "
            f"saves); save the model again"
        )
    return tensors


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """A copy in fresh memory if ``t`` is not 64-byte aligned: kernels (and so the last bits
    of results) depend on alignment, and the loaded model must compute what the saved one did."""
    return t if t.data_ptr() % 64 == 0 else t.clone()


def _own(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, none sharing memory with another (as safetensors requires)."""
    out, storages = {}, set()
    for key, tensor in tensors.items():
        t = tensor.detach().to("cpu")
        storage = t.untyped_storage()
        whole = t.is_contiguous() and storage.nbytes() == t.numel() * t.element_size()
        if not whole or storage.data_ptr() in storages:
            t = t.contiguous().clone()
        storages.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


# ---------------------------------------------------------------- the module tree
def _encode_modules(gm: fx.GraphModule, tensors: dict) -> Iterator[dict]:
    """Pre-order entries; a module or tensor met again is saved as a reference to the first."""
    seen_modules: dict[int, str] = {}
    seen_tensors: dict[int, str] = {}
    stack: list[tuple[str, nn.Module | None]] = [("", gm)]
    while stack:
        name, module = stack.pop()
        if module is None or id(module) in seen_modules:
            yield {"name": name, "alias": None if module is None else seen_modules[id(module)]}
            continue
        seen_modules[id(module)] = name
        entry: dict[str, Any] = {"name": name, "training": module.training}
        if name:
            entry["type"] = class_name(type(module), f"module {name!r}")
            entry["state"] = _module_state(name, module)
        for kind in ("parameters", "buffers"):
            entry[kind] = {
                k: None
                if t is None
                else _tensor(f"{name}.{k}".lstrip("."), t, seen_tensors, tensors)
                for k, t in getattr(module, f"_{kind}").items()
            }
        entry["non_persistent"] = sorted(module._non_persistent_buffers_set)
        yield entry
        prefix = f"{name}." if name else ""
        stack.extend((prefix + k, m) for k, m in reversed(module._modules.items()))


def _module_state(name: str, module: nn.Module) -> dict:
    skip = {a for cls, (attrs, _) in _DERIVED.items() if isinstance(module, cls) for a in attrs}
    return {
        k: _value(v, f"module {name!r} attribute {k!r}")
        for k, v in module.__dict__.items()
        if k not in _INTERNALS and k not in skip
    }


def _tensor(key: str, t: torch.Tensor, seen: dict, tensors: dict) -> dict | str:
    if type(t) not in (torch.Tensor, nn.Parameter) or t.device.type == "meta":
        raise MutnasTorchError(
            f"cannot save tensor {key!r}: a {type(t).__qualname__} on {t.device}; model files "
            f"hold plain tensors with data (materialise lazy modules first)"
        )
    key = seen.setdefault(id(t), key)
    tensors[key] = t
    return {"tensor": key, "requires_grad": t.requires_grad} if type(t) is nn.Parameter else key


def _decode_modules(entries: list, tensors: dict, resolver: Resolver) -> nn.Module:
    built: dict[str, nn.Module | None] = {}
    params: dict[str, nn.Parameter] = {}
    used: set[str] = set()

    def tensor(key: str) -> torch.Tensor:
        used.add(key)
        if key not in tensors:
            raise MutnasTorchError(f"tensor {key!r} is missing from {TENSOR_FILE} (corrupt file)")
        return tensors[key]

    for entry in entries:
        name = entry["name"]
        parent, _, leaf = name.rpartition(".")
        if (name == "") != (not built) or (name and built.get(parent) is None) or not _part(leaf):
            raise MutnasTorchError(f"module {name!r} has no parent or a malformed name (corrupt)")
        if "alias" in entry:
            module = None if entry["alias"] is None else built[entry["alias"]]
        else:
            module = _new_module(entry, resolver) if name else nn.Module()
            for k, spec in entry["parameters"].items():
                if spec is not None and spec["tensor"] not in params:
                    params[spec["tensor"]] = nn.Parameter(
                        tensor(spec["tensor"]), spec["requires_grad"]
                    )
                module._parameters[k] = None if spec is None else params[spec["tensor"]]
            for k, key in entry["buffers"].items():
                module._buffers[k] = None if key is None else tensor(key)
            module._non_persistent_buffers_set = set(entry["non_persistent"])
            module.training = bool(entry["training"])
            for cls, (_, rebuild) in _DERIVED.items():
                if isinstance(module, cls):
                    getattr(module, rebuild)()
        if name:
            built[parent]._modules[leaf] = module
        built[name] = module
    if set(tensors) - used:
        raise MutnasTorchError(f"{TENSOR_FILE} holds tensors no module uses (corrupt file)")
    return built[""]


def _part(name: str) -> bool:
    return name == "" or name.isidentifier() or name.isdigit()


def _new_module(entry: dict, resolver: Resolver) -> nn.Module:
    """An empty instance given its saved attributes, as ``copy.deepcopy`` rebuilds modules."""
    where = f"module {entry['name']!r}"
    cls = resolver.module_class(entry["type"], where)
    state = entry["state"]
    bad = [k for k in state if k in _INTERNALS or k.startswith("__") or not k.isidentifier()]
    if bad:
        raise MutnasTorchError(f"{where}: the file sets forbidden attributes {bad}")
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    values = {k: decode_value(v, resolver, f"{where} attribute {k!r}") for k, v in state.items()}
    for base, (attrs, _) in _DERIVED.items():
        if issubclass(cls, base):  # placeholders until the parameters are in
            values.update({attr: [None] for attr in attrs})
    module.__setstate__({**module.__dict__, **values})
    return module


def _graph_module(root: nn.Module, graph: fx.Graph, doc: dict, resolver) -> fx.GraphModule:
    name = doc["class_name"]
    if not _identifier(name):
        raise MutnasTorchError(f"malformed class name {name!r} in the model file")
    modules = dict(root.named_modules(remove_duplicate=False))
    tensors = {**dict(root.named_parameters(remove_duplicate=False)), **dict(root.named_buffers())}
    for node in graph.nodes:
        kind = {"get_attr": tensors, "call_module": modules}.get(node.op)
        if kind is not None and node.target not in kind:
            raise MutnasTorchError(
                f"node {node.name!r}: {node.op} target {node.target!r} is not a "
                f"{'tensor' if kind is tensors else 'module'} of the model (corrupt file)"
            )
    gm = fx.GraphModule(root, graph, class_name=name)
    # Keep the saved tree exactly (GraphModule would turn containers into bare modules).
    for attr in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
        setattr(gm, attr, getattr(root, attr))
    gm.training = root.training
    gm.meta.update({k: decode_value(v, resolver, f"meta {k!r}") for k, v in doc["meta"].items()})
    gm.recompile()
    return gm


def _encode_meta(meta: dict) -> dict:
    out = {}
    for key, value in meta.items():
        try:
            out[str(key)] = _value(value, f"GraphModule.meta[{key!r}]")
        except MutnasTorchError as err:
            log.info("not saving GraphModule.meta[%r]: %s", key, err)
    return out


# ---------------------------------------------------------------- MutableModel state
_RECORDS = {cls.__name__: cls for cls in (Binding, ParamAxis, Literal, Ref, mn.Change)}
_MUTABLE = {"graph", "bindings", "literals", "pinned", "refs", "example_inputs", "history"}
_MUTABLE |= {"optimizers"}  # live objects: not saved; attach them again after loading


def _encode_mutable(mm: MutableModel) -> dict:
    inputs = [
        {"tensor": {"shape": list(x.shape), "dtype": _value(x.dtype, "input")}}
        if torch.is_tensor(x)
        else _value(x, "example input")
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
            if k not in _INTERNALS - {"training"} and k not in _MUTABLE
        },
    }


def _record(obj: Any) -> Any:
    """Encode adapter state: records (dataclasses) by field, index arrays, the opaque marker."""
    if type(obj).__name__ in _RECORDS and isinstance(obj, _RECORDS[type(obj).__name__]):
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
    return _value(obj, "mutnas state")


def _unrecord(data: Any, resolver: Resolver) -> Any:
    if isinstance(data, list):
        return [_unrecord(d, resolver) for d in data]
    tag, body = next(iter(data.items())) if isinstance(data, dict) and len(data) == 1 else ("", 0)
    if tag == "record":
        return _RECORDS[body[0]](**{k: _unrecord(v, resolver) for k, v in body[1].items()})
    if tag == "array" and np.dtype(body[0]).kind in "iuf":
        return np.asarray(body[1], dtype=np.dtype(body[0]))
    if tag == "opaque":
        return _OPAQUE
    if tag == "tuple":
        return tuple(_unrecord(d, resolver) for d in body)
    if tag in ("dict", "index_maps"):
        items = {_unrecord(k, resolver): _unrecord(v, resolver) for k, v in body}
        return IndexMaps(items) if tag == "index_maps" else items
    return decode_value(data, resolver, "mutnas state")


def _decode_mutable(d: dict, gm: fx.GraphModule, resolver: Resolver) -> MutableModel:
    analysis = Analysis(
        graph_from_dict(d["graph"]),
        {k: _unrecord(b, resolver) for k, b in d["bindings"].items()},
        _unrecord(d["literals"], resolver),
        dict(d["pinned"]),
        {k: _unrecord(v, resolver) for k, v in d["refs"].items()},
    )
    mm = MutableModel(gm, analysis, tuple(_example(x, resolver) for x in d["example_inputs"]))
    mm.history = _unrecord(d["history"], resolver)
    for k, v in d["attributes"].items():
        if not _identifier(k) or k.startswith("_") or k in _MUTABLE or hasattr(MutableModel, k):
            raise MutnasTorchError(f"the file sets forbidden MutableModel attribute {k!r}")
        setattr(mm, k, _unrecord(v, resolver))
    return mm


def _example(data: Any, resolver: Resolver) -> Any:
    """Zeros of the saved shape and dtype (the values themselves are not saved)."""
    if isinstance(data, dict) and set(data) == {"tensor"}:
        dtype = decode_value(data["tensor"]["dtype"], resolver, "example input")
        return torch.zeros([int(s) for s in data["tensor"]["shape"]], dtype=dtype)
    return decode_value(data, resolver, "example input")
