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
  an ``alias``); ``graph``: the fx nodes in order (see :mod:`mutnas_torch.io_fx`);
  ``tensors``: each tensor's dtype, shape and SHA-256; and for a
  :class:`~mutnas_torch.MutableModel`, ``mutable`` (see :mod:`mutnas_torch.io_mutable`).

A model file is data, never behaviour. :func:`load` checks the declared schema and the
size caps of :mod:`mutnas_torch.io_schema` before it allocates anything (``model.json``
at most :data:`~mutnas_torch.io_schema.MAX_JSON_BYTES`, regular files only, bounded
nesting, module and node counts, example input elements, tensor file size); resolves
every name through the allow-list of :mod:`mutnas_torch.io_allow` before anything is
imported; rebuilds modules from an empty instance of a vetted class given its saved
attributes (``object.__new__``, ``nn.Module.__init__`` and the attributes: no class's own
``__new__``, ``__init__`` or ``__setstate__`` runs), attributes being plain data under
names the class does not define; checks each tensor's shape against its layer's own
attributes (:mod:`mutnas_torch.io_shapes`) and its bytes against the recorded SHA-256.
Every refusal is one :class:`~mutnas_torch.MutnasTorchError` line naming the file, the
module, node or tensor, and the cause. Version 1 files (no checksums) still load, with a
warning that their tensors are not verified.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import fx, nn

from mutnas_torch import io_schema, io_state
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_allow import Resolver, class_name, defined_on_class, dotted
from mutnas_torch.io_fx import decode_graph, decode_value, encode_graph, vet_calls
from mutnas_torch.io_fx import encode_value as _value
from mutnas_torch.io_mutable import decode_mutable, encode_mutable
from mutnas_torch.io_schema import FORMAT, VERSION
from mutnas_torch.io_shapes import check_shapes
from mutnas_torch.model import MutableModel

__all__ = ["FORMAT", "VERSION", "load", "save"]

log = logging.getLogger(__name__)

JSON_FILE = "model.json"
TENSOR_FILE = "model.safetensors"
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
            module attribute that is not plain data or that shadows its class, a function
            defined in a function, a tensor subclass), naming where it is. What
            :func:`load` would refuse is refused here.

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
        doc["mutable"] = encode_mutable(model)
    tensors = _own(tensors)
    doc["tensors"] = io_schema.tensor_records(tensors)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "version": str(VERSION), "save_id": doc["save_id"]}
    text = json.dumps(doc, allow_nan=False)
    _replace(path / TENSOR_FILE, lambda f: safetensors.torch.save_file(tensors, f, metadata))
    _replace(path / JSON_FILE, lambda f: Path(f).write_text(text, encoding="utf-8"))
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

    Module types load only from ``torch.nn.modules``, ``torchvision.ops`` and
    ``torchvision.models``; functions only from a list of pure tensor functions. Pass
    your own on trust. Files over the caps of :mod:`mutnas_torch.io_schema` are refused.

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
        MutnasTorchError: the file is missing, corrupt, over a size cap, written by a
            newer version, or names a module type, function or attribute that is not
            allowed (the message says how to allow it). Always one line.

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
    resolver = Resolver(modules, functions, methods)
    file = path / JSON_FILE
    try:
        return _load(path, resolver, device)
    except MutnasTorchError as err:
        raise MutnasTorchError(_one_line(str(err), file)) from err
    except Exception as err:  # a malformed entry: KeyError, TypeError, ValueError...
        message = f"{file} is corrupt: {type(err).__name__}: {err}"
        raise MutnasTorchError(_one_line(message, file)) from err


def _load(path: Path, resolver: Resolver, device: str | torch.device):
    doc = _read_json(path)
    tensors = _read_tensors(path, doc, device)
    root = _decode_modules(doc["modules"], tensors, resolver)
    gm = _graph_module(root, decode_graph(doc["graph"], resolver), doc, resolver)
    if doc["kind"] == "graph_module":
        return gm
    return decode_mutable(doc["mutable"], gm)


def _one_line(message: str, file: Path) -> str:
    """One line naming the file: what the user sees of every refusal."""
    message = " ".join(message.split())
    return message if str(file.parent) in message else f"{file}: {message}"


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
        doc = io_schema.read_json(file)
    except FileNotFoundError:
        raise MutnasTorchError(
            f"no model file at {str(path)!r}: {JSON_FILE} is missing (write one with "
            f"mutnas_torch.save(model, path))"
        ) from None
    if io_schema.check_document(doc, file) == 1:
        log.warning(
            "%s: format version 1 has no tensor checksums, so its tensors are not verified; "
            "save the model again (mutnas_torch.save) to add them",
            file,
        )
    return doc


def _read_tensors(path: Path, doc: dict, device: str | torch.device) -> dict:
    file = path / TENSOR_FILE
    try:
        io_schema.read_regular(file, io_schema.MAX_TENSOR_FILE_BYTES, read=False)
        with safe_open(str(file), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, RuntimeError) as err:
        raise MutnasTorchError(f"{file} is missing, unreadable or corrupt: {err}") from None
    if metadata.get("save_id") != doc["save_id"]:
        raise MutnasTorchError(
            f"{file} does not belong to {JSON_FILE} next to it (they come from different "
            f"saves); save the model again"
        )
    if "tensors" in doc:
        io_schema.verify_tensors(doc["tensors"], tensors, file)
    return {key: _aligned(t.to(device)) for key, t in tensors.items()}


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
            skip = {a for c, (attrs, _) in _DERIVED.items() if isinstance(module, c) for a in attrs}
            entry["state"] = io_state.encode_state(module, name, frozenset(skip))
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

    def tensor(key: str, where: str) -> torch.Tensor:
        used.add(key)
        if key not in tensors:
            raise MutnasTorchError(f"{where}: tensor {key!r:.80} is missing from {TENSOR_FILE}")
        return tensors[key]

    for entry in entries:
        name = io_schema.check_module_entry(entry)
        parent, _, leaf = name.rpartition(".")
        _check_place(name, built)
        if "alias" in entry:
            alias = entry["alias"]
            module = None if alias is None else built.get(alias)
            ancestor = alias is not None and (alias == "" or name.startswith(f"{alias}."))
            if (alias is not None and module is None) or ancestor:
                raise MutnasTorchError(
                    f"module {name!r:.80} aliases an unknown module or its own ancestor"
                )
        else:
            module = _new_module(entry, resolver) if name else nn.Module()
            _attach_tensors(module, entry, tensor, params)
            check_shapes(module, name)
            for cls, (_, rebuild) in _DERIVED.items():
                if isinstance(module, cls):
                    getattr(module, rebuild)()
        if name:
            built[parent]._modules[leaf] = module
        built[name] = module
    if set(tensors) - used:
        raise MutnasTorchError(f"{TENSOR_FILE} holds tensors no module uses (corrupt file)")
    return built[""]


def _check_place(name: str, built: dict) -> None:
    """The entry comes after its parent, once, under a name its parent does not define."""
    parent, _, leaf = name.rpartition(".")
    if (name == "") != (not built) or (name and built.get(parent) is None) or name in built:
        raise MutnasTorchError(f"module {name!r:.80} has no parent or is given twice")
    if name and not dotted(leaf):
        raise MutnasTorchError(f"module {name!r:.80} has a malformed name")
    owner = built.get(parent)
    if name and _shadows(fx.GraphModule if parent == "" else type(owner), leaf, owner):
        raise MutnasTorchError(
            f"module {name!r:.80}: its name shadows an attribute of its parent (crafted file)"
        )


def _shadows(cls: type, key: str, module: nn.Module) -> bool:
    """Whether ``key`` names something ``cls`` defines or ``module`` already holds."""
    taken = (*vars(module), *module._parameters, *module._buffers, *module._modules)
    return defined_on_class(cls, key) or key in taken


def _attach_tensors(module: nn.Module, entry: dict, tensor: Callable, params: dict) -> None:
    where = f"module {entry['name']!r}"
    cls = fx.GraphModule if entry["name"] == "" else type(module)
    for k in (*entry["parameters"], *entry["buffers"]):
        if _shadows(cls, k, module):
            raise MutnasTorchError(f"{where}: tensor name {k!r:.60} shadows an attribute")
    for k, spec in entry["parameters"].items():
        if spec is not None and spec["tensor"] not in params:
            key = spec["tensor"]
            params[key] = nn.Parameter(tensor(key, where), spec["requires_grad"])
        module._parameters[k] = None if spec is None else params[spec["tensor"]]
    for k, key in entry["buffers"].items():
        module._buffers[k] = None if key is None else tensor(key, where)
    module._non_persistent_buffers_set = set(entry["non_persistent"])
    module.training = entry["training"]


def _new_module(entry: dict, resolver: Resolver) -> nn.Module:
    """An empty instance given its saved attributes, as ``copy.deepcopy`` rebuilds modules,
    but without running the class's own ``__new__``, ``__init__`` or ``__setstate__``."""
    where = f"module {entry['name']!r}"
    cls = resolver.module_class(entry["type"], where)
    values = io_state.decode_state(cls, entry["state"], resolver, where)
    try:
        module = object.__new__(cls)
    except TypeError as err:
        raise MutnasTorchError(f"{where}: cannot rebuild a {cls.__qualname__}: {err}") from None
    nn.Module.__init__(module)
    vars(module).update(values)
    return module


def _graph_module(root: nn.Module, graph: fx.Graph, doc: dict, resolver) -> fx.GraphModule:
    modules = dict(root.named_modules(remove_duplicate=False))
    vet_calls(graph, modules, resolver)
    gm = fx.GraphModule(root, graph, class_name=doc["class_name"])
    # Keep the saved tree exactly (GraphModule would turn containers into bare modules).
    for attr in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
        setattr(gm, attr, getattr(root, attr))
    gm.training = root.training
    gm.meta.update({k: decode_value(v, None, f"meta {k!r}") for k, v in doc["meta"].items()})
    gm.recompile()
    return gm


def _encode_meta(meta: dict) -> dict:
    out = {}
    for key, value in meta.items():
        try:
            out[str(key)] = _value(value, f"GraphModule.meta[{key!r}]", data=True)
        except MutnasTorchError as err:
            log.info("not saving GraphModule.meta[%r]: %s", key, err)
    return out
