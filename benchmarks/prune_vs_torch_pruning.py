"""Prune the torchvision zoo by 50 % with mutnas and with Torch-Pruning, side by side.

Torch-Pruning (TP) is *not* a dependency of mutnas. Install it only to run this
benchmark::

    pip install torch-pruning==1.6.1

then::

    python benchmarks/prune_vs_torch_pruning.py --out benchmarks/results/prune_vs_tp.md

Without ``torch_pruning`` the script says how to install it and exits 0.

Both tools get the same model (``weights=None``, seed 0, eval mode, CPU), the same
example input (batch 1, the small sizes of ``tests/integration/test_zoo.py``), the same
channel ratio (0.5) and the same importance (L1 weight magnitude).

* mutnas: ``mutnas_torch.mutable(model, x, copy=False)`` (trace, shape propagation,
  channel analysis; ``copy=False`` traces the model itself, like TP prunes in place,
  instead of a deep copy of every weight) then ``mm.prune(0.5, utility="l1")`` (size
  solve + weight surgery).
* TP, following its torchvision recipe (``examples/torchvision_models``):
  ``tp.pruner.BasePruner(model, x, importance=tp.importance.MagnitudeImportance(p=1),
  pruning_ratio=0.5, ignored_layers=[final classifier], num_heads={mha: mha.num_heads})``
  (dependency graph) then ``pruner.step()``; for ViT, ``model.hidden_dim`` is set to
  ``conv_proj.out_channels`` afterwards, as the recipe does.

Each tool runs each model in its own subprocess with a timeout (TP hangs on some models),
so imports are not timed and a hang or crash costs one cell, not the run. A model counts
as pruned when the call returns, the model runs forward, and the output has 1000 classes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL = "pip install torch-pruning==1.6.1"
REPEAT_BUDGET_S = 30.0  # no further repeats once a tool has spent this long on a model
RATIO = 0.5
N_CLASSES = 1000


@dataclass(frozen=True)
class ZooModel:
    """A torchvision builder, its keyword arguments and the input size used."""

    name: str
    size: int = 32
    kwargs: dict = field(default_factory=dict)


MODELS = [
    ZooModel("resnet18"),
    ZooModel("resnet50"),
    ZooModel("resnext50_32x4d"),
    ZooModel("wide_resnet50_2"),
    ZooModel("mobilenet_v2"),
    ZooModel("mobilenet_v3_small"),
    ZooModel("mnasnet1_0"),
    ZooModel("efficientnet_b0"),
    ZooModel("efficientnet_v2_s"),
    ZooModel("regnet_x_400mf"),
    ZooModel("densenet121"),
    ZooModel("googlenet", kwargs={"aux_logits": False, "init_weights": False}),
    ZooModel("inception_v3", size=75, kwargs={"aux_logits": False, "init_weights": False}),
    ZooModel("shufflenet_v2_x1_0"),
    ZooModel("squeezenet1_0"),
    ZooModel("vgg11_bn"),
    ZooModel("alexnet", size=64),
    ZooModel("convnext_tiny"),
    ZooModel("vit_b_16", kwargs={"image_size": 32}),
    ZooModel("swin_t"),
    ZooModel("maxvit_t", size=224),
]
BY_NAME = {m.name: m for m in MODELS}


# ---------------------------------------------------------------- workers (one per process)
def _build(spec: ZooModel):
    import torch
    import torchvision.models as tvm

    torch.manual_seed(0)
    model = getattr(tvm, spec.name)(weights=None, **spec.kwargs).eval()
    x = torch.randn(1, 3, spec.size, spec.size, generator=torch.Generator().manual_seed(1))
    return model, x


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _forward_ok(model, x) -> tuple[bool, str]:
    import torch

    try:
        with torch.no_grad():
            y = model(x)
    except Exception as err:
        return False, f"forward: {type(err).__name__}: {err}"
    if tuple(y.shape) != (1, N_CLASSES) or not bool(torch.isfinite(y).all()):
        return False, f"forward gives shape {tuple(y.shape)}"
    return True, ""


def run_mutnas(spec: ZooModel) -> dict:
    import mutnas_torch as mt

    model, x = _build(spec)
    before = _n_params(model)
    t0 = time.perf_counter()
    mm = mt.mutable(model, x, copy=False)  # in place, as TP prunes
    t1 = time.perf_counter()
    mm.prune(RATIO, utility="l1")
    t2 = time.perf_counter()
    ok, error = _forward_ok(mm, x)
    return {
        "prepare_s": t1 - t0,
        "prune_s": t2 - t1,
        "seconds": t2 - t0,
        "params_before": before,
        "params_after": mm.n_parameters(),
        "forward": ok,
        "error": error,
        "n_layers": len(mm.layers()),
    }


def run_tp(spec: ZooModel) -> dict:
    import torch_pruning as tp
    from torch import nn
    from torchvision.models.vision_transformer import VisionTransformer

    model, x = _build(spec)
    before = _n_params(model)
    ignored = [  # TP's recipe: do not prune the final classifier
        m
        for m in model.modules()
        if (isinstance(m, nn.Linear) and m.out_features == N_CLASSES)
        or (isinstance(m, nn.Conv2d) and m.out_channels == N_CLASSES)  # SqueezeNet
    ]
    num_heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    t0 = time.perf_counter()
    pruner = tp.pruner.BasePruner(
        model,
        x,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=RATIO,
        ignored_layers=ignored,
        num_heads=num_heads,
    )
    t1 = time.perf_counter()
    pruner.step()
    if isinstance(model, VisionTransformer):  # torchvision reads this in forward
        model.hidden_dim = model.conv_proj.out_channels
    t2 = time.perf_counter()
    ok, error = _forward_ok(model, x)
    return {
        "prepare_s": t1 - t0,
        "prune_s": t2 - t1,
        "seconds": t2 - t0,
        "params_before": before,
        "params_after": _n_params(model),
        "forward": ok,
        "error": error,
    }


def _worker(tool: str, name: str, threads: int, repeats: int) -> None:
    """Prune ``repeats`` fresh copies; print the best run so far after each one."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    run = run_mutnas if tool == "mutnas" else run_tp
    best: dict | None = None
    started = time.perf_counter()
    for k in range(repeats):
        try:
            result = run(BY_NAME[name])
            result["ok"] = result["forward"]
        except Exception as err:
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"}
        if not result["ok"]:
            best = result  # a failure is a failure, whatever the other runs did
            break
        if best is None or result["seconds"] < best["seconds"]:
            best = result
        best["runs"] = k + 1
        print("RESULT " + json.dumps(best), flush=True)
        if time.perf_counter() - started > REPEAT_BUDGET_S:
            break
    print("RESULT " + json.dumps(best), flush=True)


# ---------------------------------------------------------------- driver
def run_one(tool: str, name: str, args: argparse.Namespace) -> dict:
    """Run one tool on one model in a subprocess; a timeout keeps the runs finished so far."""
    cmd = [sys.executable, __file__, "--worker", tool, name]
    cmd += ["--threads", str(args.threads), "--repeats", str(args.repeats)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as err:
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        stderr, code = "", None
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if lines:
        return json.loads(lines[-1][len("RESULT ") :])
    if code is None:
        return {"ok": False, "error": f"timeout: no result after {args.timeout:.0f} s"}
    tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
    return {"ok": False, "error": f"exit {code}: {tail[0]}"}


def _short(error: str, n: int = 110) -> str:
    error = " ".join(error.split()).replace("|", "/")
    return error if len(error) <= n else error[: n - 1] + "…"


def _cell(r: dict) -> tuple[str, str, str]:
    if not r.get("ok"):
        return "no", "–", "–"
    return "yes", f"{r['seconds']:.2f}", f"{r['params_after'] / 1e6:.2f}"


def _rows(results: dict) -> list[str]:
    rows = [
        "| model | params (M) | mutnas ok | mutnas s (trace + solve/surgery) | mutnas params (M) "
        "| TP ok | TP s (graph + step) | TP params (M) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (m, t) in results.items():
        before = m.get("params_before") or t.get("params_before")
        mc, tc = _cell(m), _cell(t)
        m_time = f"{mc[1]} ({m['prepare_s']:.2f} + {m['prune_s']:.2f})" if m.get("ok") else "–"
        t_time = f"{tc[1]} ({t['prepare_s']:.2f} + {t['prune_s']:.2f})" if t.get("ok") else "–"
        speed = f"{t['seconds'] / m['seconds']:.1f}×" if m.get("ok") and t.get("ok") else "–"
        size = f"{before / 1e6:.2f}" if before else "?"
        rows.append(
            f"| {name} | {size} | {mc[0]} | {m_time} | {mc[2]} | {tc[0]} | {t_time} | {tc[2]} "
            f"| {speed} |"
        )
    return rows


def _summary(results: dict) -> list[str]:
    both = [n for n, (m, t) in results.items() if m.get("ok") and t.get("ok")]
    if not both:
        return ["No model was pruned by both tools."]
    speed = {n: results[n][1]["seconds"] / results[n][0]["seconds"] for n in both}
    m_sum = sum(results[n][0]["seconds"] for n in both)
    t_sum = sum(results[n][1]["seconds"] for n in both)
    median = sorted(speed.values())[len(speed) // 2]
    lines = [
        f"* Models both tools prune: {len(both)}. Total seconds: mutnas {m_sum:.1f}, TP "
        f"{t_sum:.1f}: mutnas is **{t_sum / m_sum:.1f}×** as fast overall (target ≥ 4×: "
        f"{'met' if t_sum / m_sum >= 4 else 'not met'}); median per-model speed-up "
        f"{median:.1f}×."
    ]
    if "densenet121" in speed:
        met = "met" if speed["densenet121"] >= 10 else "not met"
        lines.append(f"* DenseNet-121: **{speed['densenet121']:.1f}×** (target ≥ 10×: {met}).")
    slower = [f"{n} ({1 / speed[n]:.1f}× slower)" for n in both if speed[n] < 1]
    if slower:
        lines.append("* mutnas is slower than TP on: " + ", ".join(slower) + ".")
    only = [n for n, (m, t) in results.items() if m.get("ok") and not t.get("ok")]
    lines.append("* Only mutnas prunes: " + (", ".join(only) or "none") + ".")
    differ = [
        f"{n} (mutnas {results[n][0]['params_after'] / 1e6:.2f} M, "
        f"TP {results[n][1]['params_after'] / 1e6:.2f} M)"
        for n in both
        if abs(results[n][0]["params_after"] / results[n][1]["params_after"] - 1) > 0.01
    ]
    if differ:
        lines.append("* Pruned sizes differ by more than 1 % on: " + ", ".join(differ) + ".")
    return lines


def report(results: dict, args: argparse.Namespace, versions: dict) -> str:
    lines = [
        "# mutnas vs Torch-Pruning: 50 % channel pruning of the torchvision zoo",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}`",
        "",
        "Setup: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + f"; "
        f"{args.threads} intra-op thread(s); best of {args.repeats} runs (fewer once a tool "
        f"has spent {REPEAT_BUDGET_S:.0f} s on a model); timeout {args.timeout:.0f} s per "
        "model and tool; batch 1; `weights=None`, seed 0, eval mode; L1 magnitude, ratio 0.5, "
        "final classifier kept; both tools prune the model in place (mutnas: "
        "`mutable(model, x, copy=False)`; the default `copy=True` adds a deep copy of every "
        "weight to the trace column). Each cell is the best run of a fresh process per "
        "model and tool; imports are not timed.",
        "",
        *_rows(results),
        "",
        *_summary(results),
        "",
        "Failures (error as raised, shortened):",
        "",
    ]
    failures = [
        f"* {name}, {tool}: {_short(r.get('error', '?'))}"
        for name, pair in results.items()
        for tool, r in zip(("mutnas", "TP"), pair, strict=True)
        if not r.get("ok")
    ]
    return "\n".join(lines + (failures or ["* none"])) + "\n"


def _versions() -> dict:
    from importlib.metadata import version

    return {
        "torch": version("torch"),
        "torchvision": version("torchvision"),
        "torch-pruning": version("torch-pruning"),
        "python": platform.python_version(),
        "CPU cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[m.name for m in MODELS])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per model and tool")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs per model; best is kept")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--from-json", type=Path, help="only re-render a saved --json file")
    parser.add_argument("--worker", nargs=2, metavar=("TOOL", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(*args.worker, args.threads, args.repeats)
        return 0
    if args.from_json:
        print(report(json.loads(args.from_json.read_text()), args, _versions()))
        return 0
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        print(f"torch_pruning is not installed; nothing to compare. Install it with: {INSTALL}")
        return 0
    unknown = sorted(set(args.models) - set(BY_NAME))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {sorted(BY_NAME)}")
    results = {}
    for name in args.models:
        pair = tuple(run_one(tool, name, args) for tool in ("mutnas", "tp"))
        results[name] = pair
        m, t = pair
        print(
            f"{name:20s} mutnas {'ok' if m.get('ok') else 'FAIL'} {m.get('seconds', 0):7.2f}s | "
            f"TP {'ok' if t.get('ok') else 'FAIL'} {t.get('seconds', 0):7.2f}s "
            f"{_short(t.get('error', '') or m.get('error', ''), 60)}",
            flush=True,
        )
    text = report(results, args, _versions())
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
