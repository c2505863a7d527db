"""Model files with no pickle: :func:`save` and :func:`load`.

A model file is a directory with two files:

* ``model.safetensors``: every parameter and buffer, once each, under the qualified name
  of its first owner (tied weights are stored once and stay tied after loading).
* ``model.json``: ``format`` (``"mutnas_torch.model"``), ``version``, ``save_id`` (also in
  the tensor file's metadata, so the two cannot be mixed up), ``kind`` (``"graph_module"``
  or ``"mutable_model"``), ``class_name`` and ``meta`` of the ``GraphModule``;
  ``modules``: the module tree in pre-order, each entry with its qualified name, its type's
  qualified name, its plain attributes (the values its constructor stored: sizes, kernel
  sizes, flags...), its training flag and the tensor keys of its parameters and buffers;
  ``graph``: the fx nodes in order (see :mod:`mutnas_torch.io_fx`); and for a
  :class:`~mutnas_torch.MutableModel` ``mutable``: the mutnas graph, bindings, literals,
  pins, channel references, change history and example input shapes and dtypes.

Modules are rebuilt the way ``copy.deepcopy`` and pickle do it (an empty instance of the
class given its saved attributes), but only for classes the allow-list vets; nothing the
file names is imported or called unless it is vetted (see :class:`~mutnas_torch.io_fx.Resolver`).
"""

from __future__ import annotations

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
from mutnas_torch.io_fx import Resolver, class_name, decode_graph, decode_value, encode_graph
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
_DERIVED: dict[type, tuple[str, str]] = {nn.RNNBase: ("_flat_weights", "_init_flat_weights")}


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
    root = _decode_modules(doc.get("modules"), tensors, resolver)
    gm = _graph_module(root, decode_graph(doc.get("graph"), resolver), doc, resolver)
    if doc["kind"] == "graph_module":
        return gm
    try:
        return _decode_mutable(doc["mutable"], gm, resolver, device)
    except MutnasTorchError:
        raise
    except Exception as err:
        raise MutnasTorchError(f"the model file's mutnas state is corrupt: {err!r}") from err


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
    seen_modules: dict[int, str] = {}
    seen_tensors: dict[int, str] = {}
    stack: list[tuple[str, nn.Module | None]] = [("", gm)]
    while stack:
        name, module = stack.pop()
        if module is None or id(module) in seen_modules:
            yield (
                {"name": name, "alias": seen_modules[id(module)]}
                if module
                else {
                    "name": name,
                    "none": True,
                }
            )
            continue
        seen_modules[id(module)] = name
        entry = {"name": name, "training": module.training}
        if name:
            entry["type"] = class_name(type(module), f"module {name!r}")
            entry["state"] = _module_state(name, module)
        entry["parameters"] = {
            p: None if t is None else _tensor(f"{name}.{p}".lstrip("."), t, seen_tensors, tensors)
            for p, t in module._parameters.items()
        }
        entry["buffers"] = {
            b: None if t is None else _tensor(f"{name}.{b}".lstrip("."), t, seen_tensors, tensors)
            for b, t in module._buffers.items()
        }
        entry["non_persistent"] = sorted(module._non_persistent_buffers_set)
        yield entry
        prefix = f"{name}." if name else ""
        stack.extend((prefix + k, m) for k, m in reversed(module._modules.items()))


def _module_state(name: str, module: nn.Module) -> dict:
    skip = {attr for cls, (attr, _) in _DERIVED.items() if isinstance(module, cls)}
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
    if id(t) not in seen:
        seen[id(t)] = key
        tensors[key] = t
    if isinstance(t, nn.Parameter):
        return {"tensor": seen[id(t)], "requires_grad": t.requires_grad}
    return seen[id(t)]


def _decode_modules(entries: Any, tensors: dict, resolver: Resolver) -> nn.Module:
    if not isinstance(entries, list) or not entries or entries[0].get("name") != "":
        raise MutnasTorchError("the model file's module tree is missing or corrupt")
    built: dict[str, nn.Module | None] = {}
    params: dict[str, nn.Parameter] = {}
    used: set[str] = set()
    for entry in entries:
        name = entry.get("name")
        where = f"module {name!r}"
        parent, _, leaf = str(name).rpartition(".")
        if name and (built.get(parent) is None or not (leaf.isidentifier() or leaf.isdigit())):
            raise MutnasTorchError(f"{where}: no parent module or a malformed name (corrupt file)")
        if "alias" in entry or entry.get("none"):
            if entry.get("alias") not in built and not entry.get("none"):
                raise MutnasTorchError(f"{where}: alias of an unknown module (corrupt file)")
            module = None if entry.get("none") else built[entry["alias"]]
        else:
            module = _new_module(entry, resolver, where) if name else nn.Module()
            _fill(module, entry, tensors, params, used, where)
        if name:
            built[parent]._modules[leaf] = module
        built[name] = module
    unused = set(tensors) - used
    if unused:
        raise MutnasTorchError(
            f"{TENSOR_FILE} holds tensors no module uses: {sorted(unused)[:5]} (corrupt file)"
        )
    return built[""]


def _new_module(entry: dict, resolver: Resolver, where: str) -> nn.Module:
    cls = resolver.module_class(entry.get("type"), where)
    state = entry.get("state", {})
    bad = [k for k in state if k in _INTERNALS or k.startswith("__") or not k.isidentifier()]
    if bad:
        raise MutnasTorchError(f"{where}: the file sets forbidden attributes {bad}")
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    values = {k: decode_value(v, resolver, f"{where} attribute {k!r}") for k, v in state.items()}
    module.__setstate__({**module.__dict__, **values})
    return module


def _fill(module: nn.Module, entry: dict, tensors: dict, params: dict, used: set, where) -> None:
    def tensor(key: Any) -> torch.Tensor:
        if key not in tensors:
            raise MutnasTorchError(f"{where}: tensor {key!r} is missing from {TENSOR_FILE}")
        used.add(key)
        return tensors[key]

    for name, spec in entry.get("parameters", {}).items():
        if spec is not None and spec["tensor"] not in params:
            params[spec["tensor"]] = nn.Parameter(tensor(spec["tensor"]), spec["requires_grad"])
        module._parameters[name] = None if spec is None else params[spec["tensor"]]
    for name, key in entry.get("buffers", {}).items():
        module._buffers[name] = None if key is None else tensor(key)
    module._non_persistent_buffers_set = set(entry.get("non_persistent", ()))
    module.training = bool(entry.get("training", True))
    for cls, (_, rebuild) in _DERIVED.items():
        if isinstance(module, cls):
            getattr(module, rebuild)()


def _graph_module(root: nn.Module, graph: fx.Graph, doc: dict, resolver) -> fx.GraphModule:
    name = doc.get("class_name")
    if not isinstance(name, str) or not name.isidentifier():
        raise MutnasTorchError(f"malformed class name {name!r} in the model file")
    try:
        gm = fx.GraphModule(root, graph, class_name=name)
    except AttributeError as err:
        raise MutnasTorchError(f"the graph uses a module or tensor the file lacks: {err}") from None
    # Keep the saved tree exactly (GraphModule would turn containers into bare modules).
    for attr in ("_modules", "_parameters", "_buffers"):
        getattr(gm, attr).clear()
        getattr(gm, attr).update(getattr(root, attr))
    gm._non_persistent_buffers_set = set(root._non_persistent_buffers_set)
    gm.training = root.training
    for node in graph.nodes:
        kind = {"get_attr": torch.Tensor, "call_module": nn.Module}.get(node.op)
        if kind is not None and not isinstance(_attribute(gm, node.target), kind):
            raise MutnasTorchError(
                f"node {node.name!r}: {node.op} target {node.target!r} is not a "
                f"{'tensor' if kind is torch.Tensor else 'module'} of the model (corrupt file)"
            )
    gm.meta.update({k: decode_value(v, resolver, f"meta {k!r}") for k, v in doc["meta"].items()})
    gm.recompile()
    return gm


def _attribute(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        children = obj._modules if isinstance(obj, nn.Module) else {}
        tensors = {**obj._parameters, **obj._buffers} if isinstance(obj, nn.Module) else {}
        obj = children.get(part, tensors.get(part))
    return obj


def _encode_meta(meta: dict) -> dict:
    out = {}
    for key, value in meta.items():
        try:
            out[str(key)] = _value(value, f"GraphModule.meta[{key!r}]")
        except MutnasTorchError as err:
            log.info("not saving GraphModule.meta[%r]: %s", key, err)
    return out


# ---------------------------------------------------------------- MutableModel state
def _encode_mutable(mm: MutableModel) -> dict:
    return {
        "graph": graph_to_dict(mm.graph),
        "bindings": {k: _encode_binding(b) for k, b in mm.bindings.items()},
        "literals": [
            {**vars(lit), "path": _value(lit.path, f"literal at node {lit.node!r}")}
            for lit in mm.literals
        ],
        "pinned": dict(mm.pinned),
        "refs": {k: _encode_ref(v, k) for k, v in mm.refs.items()},
        "example_inputs": [
            {"tensor": {"shape": list(x.shape), "dtype": _value(x.dtype, "input")}}
            if torch.is_tensor(x)
            else _value(x, "example input")
            for x in mm.example_inputs
        ],
        "history": [_encode_change(c) for c in mm.history],
        "training": mm.training,
    }


def _encode_binding(b: Binding) -> dict:
    return {
        "vertex": b.vertex,
        "module": b.module,
        "kind": b.kind,
        "outputs": [vars(a) for a in b.outputs],
        "inputs": [[vars(a) for a in edge] for edge in b.inputs],
        "node": b.node,
        "extra": _value(b.extra, f"binding {b.vertex!r}"),
    }


def _encode_ref(ref: Any, name: str) -> Any:
    if ref is None:
        return None
    if isinstance(ref, Ref):
        return {"ref": [ref.vertex, ref.dim, ref.outer, ref.inner]}
    if ref is _OPAQUE:
        return {"opaque": None}
    if isinstance(ref, (list, tuple)):
        items = [_encode_ref(r, name) for r in ref]
        return items if isinstance(ref, list) else {"tuple": items}
    raise MutnasTorchError(f"cannot save the channel reference of node {name!r}: {ref!r}")


def _decode_ref(data: Any) -> Any:
    if data is None:
        return None
    if isinstance(data, list):
        return [_decode_ref(d) for d in data]
    ((tag, body),) = data.items()
    if tag == "ref":
        return Ref(str(body[0]), *(int(v) for v in body[1:]))
    if tag == "tuple":
        return tuple(_decode_ref(d) for d in body)
    if tag == "opaque":
        return _OPAQUE
    raise ValueError(f"unknown channel reference {data!r}")


def _encode_change(c: mn.Change) -> dict:
    return {
        "kind": c.kind,
        "outputs": {k: np.asarray(v).tolist() for k, v in c.outputs.items()},
        "inputs": {k: [np.asarray(m).tolist() for m in maps] for k, maps in c.inputs.items()},
        "nout_before": {k: int(v) for k, v in c.nout_before.items()},
        "nout_after": {k: int(v) for k, v in c.nout_after.items()},
        "added": list(c.added),
        "removed": list(c.removed),
        "edges_added": [list(e) for e in c.edges_added],
        "edges_removed": [list(e) for e in c.edges_removed],
        "groups": {k: [int(a), int(b)] for k, (a, b) in c.groups.items()},
        "stats": {k: v for k, v in c.stats.items() if isinstance(v, (int, float, str, bool))},
    }


def _decode_change(d: dict) -> mn.Change:
    def index(values) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    return mn.Change(
        d["kind"],
        outputs=IndexMaps({k: index(v) for k, v in d["outputs"].items()}),
        inputs=IndexMaps({k: [index(m) for m in maps] for k, maps in d["inputs"].items()}),
        nout_before=dict(d["nout_before"]),
        nout_after=dict(d["nout_after"]),
        added=list(d["added"]),
        removed=list(d["removed"]),
        edges_added=[tuple(e) for e in d["edges_added"]],
        edges_removed=[tuple(e) for e in d["edges_removed"]],
        groups={k: tuple(v) for k, v in d["groups"].items()},
        stats=dict(d["stats"]),
    )


def _decode_mutable(d: dict, gm: fx.GraphModule, resolver: Resolver, device) -> MutableModel:
    def axes(items: list) -> list[ParamAxis]:
        return [ParamAxis(**a) for a in items]

    bindings = {
        k: Binding(
            b["vertex"],
            b["module"],
            b["kind"],
            axes(b["outputs"]),
            [axes(edge) for edge in b["inputs"]],
            b["node"],
            decode_value(b["extra"], resolver, f"binding {k!r}"),
        )
        for k, b in d["bindings"].items()
    }
    literals = [
        Literal(**{**lit, "path": decode_value(lit["path"], resolver, "literal")})
        for lit in d["literals"]
    ]
    refs = {k: _decode_ref(v) for k, v in d["refs"].items()}
    graph = graph_from_dict(d["graph"])
    analysis = Analysis(graph, bindings, literals, dict(d["pinned"]), refs)
    mm = MutableModel(
        gm, analysis, tuple(_example(x, resolver, device) for x in d["example_inputs"])
    )
    mm.history = [_decode_change(c) for c in d["history"]]
    mm.training = bool(d.get("training", True))
    return mm


def _example(data: Any, resolver: Resolver, device) -> Any:
    """Zeros of the saved shape and dtype (the values themselves are not saved)."""
    if isinstance(data, dict) and set(data) == {"tensor"}:
        spec = data["tensor"]
        dtype = decode_value(spec["dtype"], resolver, "example input")
        return torch.zeros([int(s) for s in spec["shape"]], dtype=dtype, device=device)
    return decode_value(data, resolver, "example input")
