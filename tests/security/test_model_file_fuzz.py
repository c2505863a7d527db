"""Fuzzing model files: a mutated model file loads and runs calling only vetted code, or
:func:`mutnas_torch.load` refuses it with a :class:`MutnasTorchError`; nothing else.

Starting points are valid files of small models (an MLP, a CNN with BatchNorm, a residual
add and concat, MultiheadAttention + TransformerEncoderLayer + LSTM; MutableModels and
plain GraphModules). Each example applies a few mutations to ``model.json``: a string
becomes an allow-listed dotted name (``builtins.getattr``, ``operator.getitem``...), a
method or attribute name (``forward``, ``__globals__``...) or a shell payload; a number
becomes huge, negative or non-finite; a key becomes a dunder or a method name; a value
becomes a tagged function, class or node; list items are dropped or doubled; the known
exploit (a module whose state sets ``forward`` to ``builtins.getattr``, nodes walking
``__repr__.__globals__`` to ``eval``) is planted; and sometimes one bit of the tensor
file flips.

The check, for every example:

* ``load`` either returns a model or raises ``MutnasTorchError`` (any other exception
  fails the test); the forward pass on the example input may raise what torch raises for
  an inconsistent computation (a mutated ``view`` size, a huge ``flatten`` dim...): such
  errors are counted, not failures, since no load-time check can foresee every op's
  arguments without running them.
* Nothing unvetted runs, during load or forward. A ``sys.setprofile`` hook sees every
  Python frame and every call into C: (1) every Python frame must run code from a
  trusted file (the standard library, torch, torchvision, numpy, safetensors, mutnas,
  mutnas_torch, and the libraries torch itself calls), or the code fx generates for the
  loaded graph, or a dataclass/namedtuple method those packages generated; any other
  code - text given to ``eval``/``exec``, a test function - is a violation. A payload
  that reaches ``eval``, ``exec`` or ``compile`` runs a new frame of such code, so (1)
  catches it even when the call comes from C (``min(key=eval)``). (2) During the forward
  pass no C function that executes code, imports, or touches files or processes may be
  called (``eval``, ``exec``, ``compile``, ``__import__``, ``open``, anything of
  ``os``/``posix``/``subprocess``/``importlib``/``ctypes``/``marshal``/``pickle``/
  ``socket``), except by the standard library formatting a traceback (it reads and
  parses source lines) or while a module of a trusted package is being imported.
  (3) The payload's shell command would create a marker file: it must not exist.
* Memory: the forward pass runs under an address-space limit (what the process uses
  plus 2 GiB), so a mutated size that asks for terabytes fails there instead of here.

``MUTNAS_FUZZ_EXAMPLES`` sets the number of examples (default 400, about 10 s on one
core); ``MUTNAS_FUZZ_STATS=file.json`` writes the outcome counts. The long run is
recorded in ``benchmarks/results/fuzz_model_files.md``.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import os
import resource
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy
import pytest
import safetensors
import torch
import torchvision
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import fx, nn

import mutnas
import mutnas_torch as mt
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.trace import trace

N_EXAMPLES = int(os.environ.get("MUTNAS_FUZZ_EXAMPLES", "400"))
STATS: collections.Counter = collections.Counter()
BASE = Path(tempfile.mkdtemp(prefix="mutnas-fuzz-"))
MARKER = BASE / "PWNED"
PAYLOAD = f"__import__('os').system('touch {MARKER}')"

NAMES = [
    "builtins.getattr", "builtins.min", "builtins.max", "builtins.sum", "builtins.eval",
    "builtins.exec", "operator.getitem", "operator.attrgetter", "operator.methodcaller",
    "torch.cat", "torch.relu", "torch.zeros", "torch.load", "torch.nn.functional.relu",
    "os.system", "subprocess.Popen", "torch.nn.modules.linear.Linear",
    "torch.nn.modules.activation.ReLU", "torch.nn.parallel.distributed.DistributedDataParallel",
    "torch.nn.modules.container.Sequential", "torchvision.models.feature_extraction.NodePathTracer",
    "torch.fx._symbolic_trace._assert_is_none",
]  # fmt: skip
WORDS = [
    "forward", "_call_impl", "_conv_forward", "__repr__", "__globals__", "__builtins__",
    "__class__", "__dict__", "__init__", "__setstate__", "__reduce__", "eval", "shape",
    "training", "_parameters", "_modules", "activation", "weight", "0", "", PAYLOAD,
]  # fmt: skip
NUMBERS = [2**62, -(2**62), 10**18, 2**31, -1, -5, 0, 1, 1e308, -1e308, 0.5]
SPECIAL = [float("nan"), float("inf"), True, None, {"float": "nan"}, {"float": "-inf"}]
# Where mutations land: mostly what decides behaviour (weighted by repetition).
SECTIONS = (
    ["graph"] * 4 + ["modules"] * 4 + ["mutable"] * 2 + ["meta", "tensors", "*"]
)  # "*": anywhere
TAGS = ["function", "class", "node", "tuple", "dict", "size", "dtype", "device", "record"]


# ---------------------------------------------------------------- valid starting points
class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(12, 2)

    def forward(self, x):
        y = torch.relu(self.fc1(x))
        z = self.fc2(y) + y
        return self.head(torch.cat([z, y], dim=1))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.block = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, activation="gelu", batch_first=True
        )
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        y = self.attn(x, x, x)[0] + x
        return self.head(self.lstm(self.block(y))[0])


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.lstm = nn.LSTM(8, 6, num_layers=2, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.lstm(self.attn(x, x, x)[0])[0])


def _bases() -> dict[str, tuple[dict, bytes, torch.Tensor]]:
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )  # fmt: skip
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    seq, image, row = torch.randn(2, 5, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 4)
    leaves = [nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.LSTM]
    models = {
        "mlp_mutable": (mt.mutable(mlp, row), row),
        "cnn_graph": (fx.symbolic_trace(cnn.eval()), image),
        "cnn_mutable": (mt.mutable(cnn, image), image),
        "residual_mutable": (mt.mutable(Residual(), row), row),
        "residual_graph": (fx.symbolic_trace(Residual()), row),
        "attention_graph": (trace(Attention().eval(), seq, leaf_modules=leaves), seq),
        "recurrent_mutable": (mt.mutable(Recurrent(), seq), seq),
    }
    out = {}
    for name, (model, x) in models.items():
        folder = mt.save(model, BASE / "bases" / name)
        doc = json.loads((folder / "model.json").read_text())
        out[name] = (doc, (folder / "model.safetensors").read_bytes(), x)
    return out


BASES = _bases()
with contextlib.suppress(Exception):  # import what fx's error report imports, once
    mt.load(BASE / "bases" / "mlp_mutable")(torch.zeros(2, 5))


# ---------------------------------------------------------------- mutations
def _sites(doc) -> list[tuple]:
    """(container, key, kind) for every value and every dict key in the document."""
    sites, stack = [], [doc]
    while stack:
        obj = stack.pop()
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, value in list(items):
            sites.append((obj, key, "value"))
            if isinstance(obj, dict):
                sites.append((obj, key, "key"))
            if isinstance(value, (dict, list)):
                stack.append(value)
    return sites


def _exploit(doc: dict, draw) -> None:
    """Plant the chain that ran code before format version 2, with fuzzed parts."""
    key = draw(st.sampled_from(["forward", "_call_impl", "fresh"]))
    doc["modules"].append(
        {
            "name": "evil",
            "training": True,
            "type": draw(st.sampled_from(["torch.nn.modules.activation.ReLU", *NAMES])),
            "state": {key: {"function": draw(st.sampled_from(NAMES))}},
            "parameters": {},
            "buffers": {},
            "non_persistent": [],
        }
    )
    x = doc["graph"][0]["name"]
    op = draw(st.sampled_from(["call_module", "call_function", "call_method"]))
    target = {"call_module": "evil", "call_function": "builtins.getattr"}.get(op, "__repr__")

    def node(name, op, target, args, kwargs=None):
        return {"op": op, "name": name, "target": target, "args": args, "kwargs": kwargs or {}}

    doc["graph"][1:1] = [
        node("walk_a", op, target, [{"node": x}, "__repr__"]),
        node("walk_b", op, target, [{"node": "walk_a"}, "__globals__"]),
        node("walk_c", "call_function", "operator.getitem", [{"node": "walk_b"}, "__builtins__"]),
        node("walk_d", "call_function", "operator.getitem", [{"node": "walk_c"}, "eval"]),
        node("walk_e", "call_function", "builtins.min", [[PAYLOAD]], {"key": {"node": "walk_d"}}),
    ]


def _replacement(draw, value):
    if isinstance(value, str) or draw(st.integers(0, 9)) == 0:
        pool = st.sampled_from(NAMES + WORDS) | st.text(max_size=6)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        pool = st.sampled_from(NUMBERS + SPECIAL) | st.integers() | st.floats(allow_nan=False)
    else:
        pool = st.sampled_from([*SPECIAL, [], {}, "x", 0])
    tagged = st.builds(lambda t, v: {t: v}, st.sampled_from(TAGS), st.sampled_from(NAMES + WORDS))
    return copy.deepcopy(draw(pool | tagged))  # never the pool's own dicts: later edits
    # would change the pool for every later example (and could make a cycle)


def _mutate(draw, doc: dict) -> None:
    if draw(st.integers(0, 3)) == 0:
        _exploit(doc, draw)
    rnd = draw(st.randoms(use_true_random=False))  # uniform over sites, however many
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(SECTIONS))
        sites = _sites(doc[section] if isinstance(doc.get(section), (dict, list)) else doc)
        if not sites:
            continue
        obj, key, kind = sites[rnd.randrange(len(sites))]
        action = draw(st.sampled_from(["replace", "replace", "rename", "drop", "double"]))
        if kind == "key" and action == "rename":
            obj[draw(st.sampled_from(WORDS))] = obj.pop(key)
        elif action == "drop":
            del obj[key]
        elif action == "double" and isinstance(obj, list):
            obj.insert(key, copy.deepcopy(obj[key]))
        else:
            obj[key] = _replacement(draw, obj[key])


@st.composite
def model_files(draw) -> tuple[str, str, bytes]:
    name = draw(st.sampled_from(sorted(BASES)))
    doc, tensors, _ = BASES[name]
    doc = copy.deepcopy(doc)
    _mutate(draw, doc)
    if draw(st.integers(0, 9)) == 0:  # one flipped bit in the tensor payload
        raw = bytearray(tensors)
        raw[draw(st.integers(len(raw) // 2, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
        tensors = bytes(raw)
    return name, json.dumps(doc), tensors


# ---------------------------------------------------------------- the oracle
def _roots() -> tuple[str, ...]:
    packages = [torch, torchvision, numpy, safetensors, mutnas, mt]
    dirs = [str(Path(p.__file__).parent) for p in packages]
    for name in ("sympy", "mpmath", "typing_extensions", "filelock", "jinja2", "networkx"):
        module = sys.modules.get(name)  # what torch itself may call; imported by torch
        if module is not None and getattr(module, "__file__", None):
            dirs.append(str(Path(module.__file__).parent))
    dirs += [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]]
    return tuple(d.rstrip(os.sep) + os.sep for d in dirs)


ROOTS = _roots()
TRUSTED_PACKAGES = ("torch", "torchvision", "numpy", "mutnas", "mutnas_torch", "collections")
GENERATED = {"__init__", "__eq__", "__repr__", "__hash__", "__setattr__", "__delattr__"}
GENERATED |= {"__new__", "__match_args__", "_make", "_replace", "__getnewargs__"}
DANGER_NAMES = {"eval", "exec", "compile", "__import__", "open", "breakpoint", "input"}
DANGER_MODULES = {"os", "posix", "nt", "subprocess", "_posixsubprocess", "importlib", "_imp"}
DANGER_MODULES |= {"ctypes", "_ctypes", "marshal", "pickle", "_pickle", "socket", "_socket"}
DANGER_MODULES |= {"shutil", "pty", "io", "_io"}
# fx formats a failed forward's traceback: linecache stats and reads source files, and
# traceback parses source lines (ast -> compile) to place its carets.
REPORTING = {"linecache", "tokenize", "traceback"}


def _stack(frame, depth: int = 4) -> list:
    out = []
    while frame is not None and len(out) < depth:
        out.append(frame)
        frame = frame.f_back
    return out


def _excused(frame) -> bool:
    """A trusted reason for a dangerous C call: the standard library formatting a traceback
    (reading and parsing source lines), or a module of a trusted package being imported
    (its code runs ``exec``, ``compile``...)."""
    while frame is not None:
        if frame.f_globals.get("__name__") in REPORTING:
            return True
        if frame.f_code.co_filename == "<frozen importlib._bootstrap>":
            return True
        frame = frame.f_back
    return False


class Audit:
    """A ``sys.setprofile`` hook collecting what ran that the oracle forbids."""

    def __init__(self):
        self.violations: list[str] = []
        self.forward = False

    def __call__(self, frame, event, arg):
        if event == "call":
            code = frame.f_code
            if not self._trusted_code(code, frame):
                self.violations.append(f"ran {code.co_name} from {code.co_filename}")
        elif event == "c_call" and self.forward:
            module = getattr(arg, "__module__", None) or getattr(
                getattr(arg, "__self__", None), "__name__", None
            )
            danger = getattr(arg, "__name__", None) in DANGER_NAMES or module in DANGER_MODULES
            if danger and not _excused(frame):
                callers = [f"{f.f_globals.get('__name__')}:{f.f_lineno}" for f in _stack(frame)]
                self.violations.append(f"called {module}.{getattr(arg, '__name__', arg)} {callers}")

    @staticmethod
    def _trusted_code(code, frame) -> bool:
        file = code.co_filename
        if file.startswith(ROOTS) or file.startswith("<frozen "):
            return True
        if file.startswith("<eval_with_key>"):  # the forward fx generated for the graph
            return code.co_name in ("forward", "<module>")
        owner = str(frame.f_globals.get("__name__", ""))
        if file != "<string>":
            return False
        if owner.startswith("namedtuple_"):  # a namedtuple's __new__ is a generated lambda
            return code.co_name == "<lambda>"
        return code.co_name in GENERATED and owner.startswith(TRUSTED_PACKAGES)

    def run(self, function, *args, **kwargs):
        """``function(*args)`` under the hook (nothing of this file runs under it)."""
        sys.setprofile(self)
        try:
            return function(*args, **kwargs)
        finally:
            sys.setprofile(None)


@contextlib.contextmanager
def memory_cap(margin: int = 2 * 2**30):
    """Cap this process's address space at its current size plus ``margin`` (restored)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    cap = size + margin if hard == resource.RLIM_INFINITY else min(size + margin, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check_example(name: str, text: str, tensors: bytes) -> str:
    """Load and run one mutated file; return the outcome (assertions do the checking)."""
    folder = Path(tempfile.mkdtemp(dir=BASE))
    try:
        (folder / "model.json").write_text(text)
        (folder / "model.safetensors").write_bytes(tensors)
        audit, outcome = Audit(), "ran"
        try:
            model = audit.run(mt.load, folder)
        except MutnasTorchError as err:
            assert "\n" not in str(err), str(err)
            outcome = "refused"
        if outcome == "ran":
            audit.forward = True
            try:
                with memory_cap(), torch.no_grad():
                    audit.run(model, BASES[name][2])
            except Exception as err:  # torch's errors for an inconsistent computation
                outcome = f"forward {type(err).__name__}"
        assert not audit.violations, audit.violations[:5]
        assert not MARKER.exists(), "the payload ran"
        return outcome
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_every_starting_point_loads_and_runs_under_the_oracle():
    for name, (doc, tensors, _) in BASES.items():
        assert check_example(name, json.dumps(doc), tensors) == "ran", name


def test_the_oracle_sees_the_payload():
    """The oracle is not vacuous: code given to eval is a violation."""
    audit = Audit()
    audit.forward = True
    audit.run(min, ["1 + 1"], key=eval)
    assert any("<string>" in v for v in audit.violations), audit.violations
    audit.run(os.getpid)  # a call into C that reaches the system, made from Python
    assert any(v.startswith("called posix.getpid") for v in audit.violations), audit.violations


@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(model_files())
def test_mutated_model_files_are_refused_or_run_only_vetted_code(example):
    outcome = check_example(*example)
    STATS[outcome] += 1
    STATS["examples"] += 1


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("MUTNAS_FUZZ_STATS")
    if path:
        Path(path).write_text(json.dumps(dict(STATS), indent=1, sort_keys=True))
    shutil.rmtree(BASE, ignore_errors=True)
