"""Crafted model files: each attack is refused at load with one MutnasTorchError line, and
nothing it asked for happens (no marker file, no import, no allocation, no class code).

The code-execution payload is the real chain that worked before format version 2: a
module's ``state`` set its ``forward`` (or ``_call_impl``) to ``builtins.getattr``, and
``call_module`` nodes walked ``x.__repr__.__globals__["__builtins__"]["eval"]``, handed to
``builtins.min(..., key=eval)``, which ran a shell command touching a marker file.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import struct
import textwrap
from pathlib import Path

import pytest
import torch
from torch import fx, nn

import evolve.cli
import mutnas_torch as mt
from mutnas_torch import io_schema
from mutnas_torch.errors import MutnasTorchError

RELU = "torch.nn.modules.activation.ReLU"


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def saved(tmp_path: Path, kind: str = "graph_module", model: nn.Module | None = None) -> Path:
    model = model or net()
    x = torch.randn(2, 4)
    built = fx.symbolic_trace(model) if kind == "graph_module" else mt.mutable(model, x)
    return mt.save(built, tmp_path / kind)


def edit(folder: Path, change) -> Path:
    doc = json.loads((folder / "model.json").read_text())
    change(doc)
    (folder / "model.json").write_text(json.dumps(doc))
    return folder


def refusal(folder: Path, match: str, **kwargs) -> str:
    """Load ``folder``, expecting a one-line MutnasTorchError matching ``match``."""
    with pytest.raises(MutnasTorchError, match=match) as info:
        mt.load(folder, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def exploit(doc: dict, marker: Path, *, module: str = "evil", entry: dict | None = None) -> None:
    """Insert the getattr / __globals__ / eval chain after the first placeholder."""
    if entry is not None:
        doc["modules"].append(entry)
    x = doc["graph"][0]["name"]
    command = f"__import__('os').system('touch {marker}')"

    def node(op, name, target, args, kwargs=None):
        return {"op": op, "name": name, "target": target, "args": args, "kwargs": kwargs or {}}

    doc["graph"][1:1] = [
        node("call_module", "walk_a", module, [{"node": x}, "__repr__"]),
        node("call_module", "walk_b", module, [{"node": "walk_a"}, "__globals__"]),
        node("call_function", "walk_c", "operator.getitem", [{"node": "walk_b"}, "__builtins__"]),
        node("call_function", "walk_d", "operator.getitem", [{"node": "walk_c"}, "eval"]),
        node("call_function", "walk_e", "builtins.min", [[command]], {"key": {"node": "walk_d"}}),
    ]


def evil_entry(key: str, function: str, kind: str = RELU, state: dict | None = None) -> dict:
    return {
        "name": "evil",
        "training": True,
        "type": kind,
        "state": {**(state or {"inplace": False}), key: {"function": function}},
        "parameters": {},
        "buffers": {},
        "non_persistent": [],
    }


def run_forward(folder: Path, **kwargs) -> None:
    """What a victim does: load, then run."""
    model = mt.load(folder, **kwargs)
    model(torch.randn(2, 4))


# ---------------------------------------------------------------- code from a model file
@pytest.mark.parametrize("kind", ["graph_module", "mutable_model"])
@pytest.mark.parametrize("key", ["forward", "_call_impl"])
def test_state_cannot_turn_a_module_into_getattr(tmp_path, kind, key):
    marker = tmp_path / "PWNED"
    folder = edit(
        saved(tmp_path, kind),
        lambda d: exploit(d, marker, entry=evil_entry(key, "builtins.getattr")),
    )
    with pytest.raises(MutnasTorchError) as info:
        run_forward(folder)
    message = str(info.value)
    assert "\n" not in message
    assert f"module 'evil': the file sets attribute '{key}', which names something ReLU" in message
    assert str(folder / "model.json") in message
    assert not marker.exists()


@pytest.mark.parametrize(
    ("key", "function", "kind", "state"),
    [
        ("forward", "builtins.min", RELU, None),
        ("_call_impl", "builtins.min", RELU, None),
        ("_conv_forward", "builtins.getattr", "torch.nn.modules.conv.Conv2d", {}),
        ("_conv_forward", "builtins.min", "torch.nn.modules.conv.Conv2d", {}),
        ("extra_repr", "torch.relu", RELU, None),
    ],
)
def test_state_cannot_replace_any_method(tmp_path, key, function, kind, state):
    marker = tmp_path / "PWNED"
    folder = edit(
        saved(tmp_path),
        lambda d: d["modules"].append(evil_entry(key, function, kind, state)),
    )
    refusal(folder, rf"module 'evil': the file sets attribute '{key}', which names something")
    assert not marker.exists()


def test_state_holds_no_function_even_under_a_fresh_name(tmp_path):
    folder = edit(saved(tmp_path), lambda d: d["modules"].append(evil_entry("hook", "torch.relu")))
    refusal(folder, r"module 'evil' attribute 'hook': holds a function .* data only")


class Getter(nn.Module):
    """A trusted class whose forward is getattr: the arguments must still be vetted."""

    forward = builtins.getattr


@pytest.mark.parametrize("kind", ["graph_module", "mutable_model"])
def test_call_module_arguments_are_vetted_like_call_function(tmp_path, kind):
    marker = tmp_path / "PWNED"
    name = f"{__name__}.Getter"
    entry = {**evil_entry("unused", "torch.relu", name), "state": {}}
    folder = edit(saved(tmp_path, kind), lambda d: exploit(d, marker, entry=entry))
    with pytest.raises(MutnasTorchError) as info:
        run_forward(folder, modules={name: Getter})
    message = str(info.value)
    assert "\n" not in message
    assert "node 'walk_a': refusing tensor attribute '__repr__'" in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["graph_module", "mutable_model"])
def test_call_function_getattr_is_vetted_too(tmp_path, kind):
    marker = tmp_path / "PWNED"

    def change(doc):
        exploit(doc, marker, module="unused")
        for node in doc["graph"][1:3]:
            node.update(op="call_function", target="builtins.getattr")

    refusal(edit(saved(tmp_path, kind), change), r"node 'walk_a': refusing tensor attribute")
    assert not marker.exists()


# ---------------------------------------------------------------- names vetted before import
class _Called(Exception):
    pass


def test_distributed_data_parallel_is_refused_and_none_of_its_code_runs(tmp_path, monkeypatch):
    ddp = nn.parallel.DistributedDataParallel
    calls = []

    def record(name):
        def method(*args, **kwargs):
            calls.append(name)
            raise _Called(name)

        return method

    for name in ("__new__", "__init__", "__setstate__", "__getstate__"):
        monkeypatch.setattr(ddp, name, record(name))
    name = f"{ddp.__module__}.{ddp.__qualname__}"
    folder = edit(saved(tmp_path), lambda d: d["modules"][1].update(type=name))
    refusal(folder, rf"module '0': refusing module type '{name}': only nn.Module classes")
    assert calls == []


@pytest.mark.parametrize(
    ("name", "module"),
    [
        (
            "torchvision.models.feature_extraction.NodePathTracer",
            "torchvision.models.feature_extraction",
        ),
        ("torch.nn.attention.flex_attention.BlockMask", "torch.nn.attention.flex_attention"),
        ("torch.nn.modules.linear_cross_entropy.Anything", "torch.nn.modules.linear_cross_entropy"),
        ("torchvision.models.nonexistent_mod.X", "torchvision.models.nonexistent_mod"),
        ("torch.nn.parallel.comm.X", "torch.nn.parallel.comm"),
    ],
)
def test_a_refused_type_imports_nothing(tmp_path, capped, name, module):
    folder = saved(tmp_path)
    code = f"""
        import json, sys
        import mutnas_torch as mt
        import torchvision  # the one package a name may import (a fixed one): imported now
        folder = {str(folder)!r}
        mt.load(folder)  # warm up: whatever loading imports lazily is imported now
        doc = json.load(open(folder + "/model.json"))
        doc["modules"][1]["type"] = {name!r}
        json.dump(doc, open(folder + "/model.json", "w"))
        before = set(sys.modules)
        print("ALREADY" if {module!r} in before else "ABSENT")
        try:
            mt.load(folder)
            print("LOADED")
        except mt.MutnasTorchError as err:
            print("REFUSED", err)
        print("NEW", sorted(set(sys.modules) - before))
        """
    done = capped(textwrap.dedent(code), margin_mib=2048)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ABSENT" or module == "torch.nn.parallel.comm", lines
    assert lines[1].startswith("REFUSED") and "refusing module type" in lines[1], lines
    assert lines[2] == "NEW []", lines


# ---------------------------------------------------------------- loose values
@pytest.mark.parametrize("version", [True, -5, "1", 0, 1.5, None])
def test_format_version_must_be_an_integer_in_range(tmp_path, version):
    folder = edit(saved(tmp_path), lambda d: d.update(version=version))
    refusal(folder, rf"format version {version!r:.5}.*expected an integer from 1 to")


@pytest.mark.parametrize("kind", ["graph_module", "mutable_model"])
def test_in_features_contradicting_the_weight_is_refused(tmp_path, kind):
    folder = edit(saved(tmp_path, kind), lambda d: d["modules"][1]["state"].update(in_features=5))
    refusal(
        folder,
        r"module '0' \(Linear\): tensor '0\.weight' has shape \[8, 4\], but the module's "
        r"attributes say \[8, 5\]",
    )


def _tensor_range(tensor_file: Path, key: str) -> tuple[int, int]:
    raw = tensor_file.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    start, end = json.loads(raw[8 : 8 + n])[key]["data_offsets"]
    return 8 + n + start, 8 + n + end


@pytest.mark.parametrize("kind", ["graph_module", "mutable_model"])
def test_a_flipped_bit_in_the_tensor_payload_is_refused(tmp_path, kind):
    folder = saved(tmp_path, kind)
    tensor_file = folder / "model.safetensors"
    start, end = _tensor_range(tensor_file, "2.weight")
    raw = bytearray(tensor_file.read_bytes())
    raw[(start + end) // 2] ^= 0x04
    tensor_file.write_bytes(bytes(raw))
    refusal(folder, r"tensor '2\.weight' does not match its SHA-256 in model\.json")


# ---------------------------------------------------------------- small files, big memory
def load_capped(capped, folder, **kwargs) -> str:
    """``mt.load(folder)`` in a subprocess allowed 256 MiB more: "LOADED" or "REFUSED <error>"."""
    code = f"""
        import mutnas_torch as mt
        try:
            mt.load({str(folder)!r})
            print("LOADED")
        except mt.MutnasTorchError as err:
            print("REFUSED", err)
        """
    done = capped(textwrap.dedent(code), margin_mib=256, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_example_inputs_of_two_gigabytes_are_refused_before_allocation(tmp_path, capped):
    folder = saved(tmp_path, "mutable_model")
    edit(folder, lambda d: d["mutable"]["example_inputs"][0]["tensor"].update(shape=[25000, 20000]))
    assert (folder / "model.json").stat().st_size < 10_000
    line = load_capped(capped, folder)
    assert "\n" not in line and line.startswith("REFUSED"), line
    assert "example input 0: example inputs of 500,000,000 elements, over the cap" in line


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "directory"])
def test_model_json_that_is_not_a_regular_file_is_refused(tmp_path, capped, special):
    folder = saved(tmp_path)
    (folder / "model.json").unlink()
    if special == "fifo":
        os.mkfifo(folder / "model.json")
    elif special == "directory":
        (folder / "model.json").mkdir()
    else:
        (folder / "model.json").symlink_to(special)
    line = load_capped(capped, folder, timeout=60)
    assert line.startswith("REFUSED"), line
    assert "model.json is not a regular file" in line


def test_tensor_file_that_is_not_a_regular_file_is_refused(tmp_path):
    folder = saved(tmp_path)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("/dev/zero")
    refusal(folder, r"model\.safetensors is not a regular file")


def test_oversized_model_json_is_refused_unread(tmp_path):
    folder = saved(tmp_path)
    text = (folder / "model.json").read_text()
    padding = io_schema.MAX_JSON_BYTES + 1 - len(text)
    (folder / "model.json").write_text(text + " " * padding)
    refusal(folder, r"model\.json is 16,777,217 bytes, over the 16,777,216-byte cap")


def test_deeply_nested_json_is_refused(tmp_path):
    folder = saved(tmp_path)
    deep = {"tuple": []}
    for _ in range(io_schema.MAX_DEPTH):
        deep = {"tuple": [deep]}
    edit(folder, lambda d: d["modules"][1]["state"].update(extra=deep))
    refusal(folder, r"nests arrays and objects deeper than 32 levels")


@pytest.mark.parametrize(("field", "cap"), [("modules", "MAX_MODULES"), ("graph", "MAX_NODES")])
def test_too_many_modules_or_nodes_are_refused(tmp_path, monkeypatch, field, cap):
    monkeypatch.setattr(io_schema, cap, 3)
    refusal(saved(tmp_path), rf"has \d+ {field} entries, over the cap of 3")


# ---------------------------------------------------------------- through the command line
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A tiny finished search on digits, started from the command line (a run of
    ``evolve.fit`` on arrays cannot be reported on or resumed from the command line)."""
    folder = tmp_path_factory.mktemp("cli") / "run"
    argv = ["evolve", "--dataset", "digits", "--population", "2", "--generations", "1"]
    argv += ["--epochs", "0.1", "--limit", "200", "--quiet", "--run-dir", str(folder)]
    err = io.StringIO()
    assert evolve.cli.main(argv, stdout=io.StringIO(), stderr=err) == 0, err.getvalue()
    return folder


@pytest.mark.parametrize(
    "command",
    [
        ["report", "{run}", "--test"],
        ["export", "{run}", "--model", "{id}", "--out", "{tmp}/model.onnx"],
        ["resume", "{run}", "--generations", "2", "--quiet"],
    ],
    ids=["report", "export", "resume"],
)
def test_commands_refuse_a_crafted_model_in_a_run(tmp_path, cli_run, command):
    run = tmp_path / "run"
    shutil.copytree(cli_run, run)
    marker = tmp_path / "PWNED"
    victims = sorted(p.name for p in (run / "models").iterdir() if p.name.isdigit())
    for victim in victims:
        edit(
            run / "models" / victim,
            lambda d: exploit(d, marker, entry=evil_entry("forward", "builtins.getattr")),
        )
    argv = [a.format(run=run, id=victims[0], tmp=tmp_path) for a in command]
    out, err = io.StringIO(), io.StringIO()
    status = evolve.cli.main(argv, stdout=out, stderr=err)
    lines = err.getvalue().strip().splitlines()
    assert status == 1, (out.getvalue(), err.getvalue())
    assert len(lines) == 1 and "Traceback" not in err.getvalue(), lines
    assert "the file sets attribute 'forward', which names something ReLU" in lines[0]
    assert not marker.exists()
