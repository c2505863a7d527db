"""Benchmarks of the mutnas size solver (issue 2's acceptance figures). Run by hand:

    python benchmarks/solver.py            # full run, prints a markdown table
    python benchmarks/solver.py --quick    # small sizes, a few seconds
    python benchmarks/solver.py --stateful 100000   # also the long stateful run
    python benchmarks/solver.py --stateful-only --stateful 100000   # only that run

Measured here:

1. locality: one inner layer of a residual network resized by +-1, 10 blocks vs 10,000
   blocks (median over repeats, and the ratio of the two medians);
2. whole-graph prune, every absorb vertex about -50 % by random utility, of a ResNet-50-shaped
   graph (bottlenecks [3, 4, 6, 3], widths 64/128/256/512 x 4, projection shortcuts, BN and
   ReLU as invariant vertices, fc fixed) and of a DenseNet-121-shaped graph (growth 32,
   bn_size 4, blocks [6, 12, 24, 16], transitions halving, one concat per layer);
3. the same prunes through the MILP (``SolverOptions(closed_form=False)``): PuLP model build
   time and CBC solve time reported separately;
4. a naive PuLP model with one binary per neuron for the ResNet-50 prune (build and solve);
5. optionally, the long stateful run of tests/property/test_core_stateful.py: a failing
   sequence is counted and listed (each chunk of 500 sequences stops at its first failure),
   and the run goes on.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pulp

import mutnas as mn

ROOT = Path(__file__).resolve().parents[1]
MILP = mn.SolverOptions(closed_form=False)


# ---------------------------------------------------------------- graph shapes
def residual_network(n_blocks: int, width: int = 64) -> mn.Graph:
    """stem, then n blocks: conv1-bn-relu-conv2-bn, added to the stream, relu; fc fixed."""
    g = mn.Graph()
    h = g.absorb(g.input(3, name="x"), nout=width, name="stem")
    for i in range(n_blocks):
        p = f"block{i}"
        a = g.invariant(g.absorb(h, nout=width, name=f"{p}.conv1"), name=f"{p}.bn1")
        a = g.invariant(a, name=f"{p}.relu1")
        b = g.invariant(g.absorb(a, nout=width, name=f"{p}.conv2"), name=f"{p}.bn2")
        h = g.invariant(g.add(b, h, name=f"{p}.add"), name=f"{p}.relu2")
    g.absorb(h, nout=10, name="fc", fixed=True)
    return g


def conv_bn(g: mn.Graph, x, nout: int, name: str, bn: str, relu: str | None = None):
    v = g.invariant(g.absorb(x, nout=nout, name=name), name=bn)
    return g.invariant(v, name=relu) if relu else v


def resnet50() -> mn.Graph:
    """torchvision's resnet50 as a size graph (names follow its modules)."""
    g = mn.Graph()
    h = conv_bn(g, g.input(3, name="x"), 64, "conv1", "bn1", "relu")
    h = g.invariant(h, name="maxpool")
    for stage, (n_blocks, width) in enumerate(
        zip([3, 4, 6, 3], [64, 128, 256, 512], strict=True), 1
    ):
        for b in range(n_blocks):
            p = f"layer{stage}.{b}"
            out = conv_bn(g, h, width, f"{p}.conv1", f"{p}.bn1", f"{p}.relu1")
            out = conv_bn(g, out, width, f"{p}.conv2", f"{p}.bn2", f"{p}.relu2")
            out = conv_bn(g, out, 4 * width, f"{p}.conv3", f"{p}.bn3")
            identity = h
            if b == 0:
                identity = conv_bn(g, h, 4 * width, f"{p}.downsample.0", f"{p}.downsample.1")
            h = g.invariant(g.add(out, identity, name=f"{p}.add"), name=f"{p}.relu")
    g.absorb(g.invariant(h, name="avgpool"), nout=1000, name="fc", fixed=True)
    return g


def densenet121(growth: int = 32, bn_size: int = 4, blocks=(6, 12, 24, 16)) -> mn.Graph:
    """torchvision's densenet121 as a size graph: each layer concatenates all before it."""
    g = mn.Graph()
    h = conv_bn(g, g.input(3, name="x"), 64, "features.conv0", "features.norm0", "relu0")
    h = g.invariant(h, name="features.pool0")
    for i, n_layers in enumerate(blocks, 1):
        features = [h]
        for j in range(1, n_layers + 1):
            p = f"features.denseblock{i}.denselayer{j}"
            cat = g.concat(*features, name=f"{p}.cat")
            out = g.invariant(g.invariant(cat, name=f"{p}.norm1"), name=f"{p}.relu1")
            out = conv_bn(g, out, bn_size * growth, f"{p}.conv1", f"{p}.norm2", f"{p}.relu2")
            features.append(g.absorb(out, nout=growth, name=f"{p}.conv2"))
        h = g.concat(*features, name=f"features.denseblock{i}.cat")
        if i < len(blocks):
            p = f"features.transition{i}"
            t = g.invariant(g.invariant(h, name=f"{p}.norm"), name=f"{p}.relu")
            t = g.absorb(t, nout=h.nout // 2, name=f"{p}.conv")
            h = g.invariant(t, name=f"{p}.pool")
    h = g.invariant(g.invariant(h, name="features.norm5"), name="relu5")
    g.absorb(g.invariant(h, name="avgpool"), nout=1000, name="classifier", fixed=True)
    return g


def n_neurons(graph: mn.Graph) -> int:
    """Output neurons of absorb vertices (what a prune can remove, plus the fixed heads)."""
    return sum(v.nout for v in graph.vertices if v.kind == "absorb")


def half_negative(graph: mn.Graph, seed: int) -> dict[str, np.ndarray]:
    """Random utility per absorb neuron, negative for a random half of each vertex."""
    rng = np.random.default_rng(seed)
    utility = {}
    for v in graph.vertices:
        # fixed heads keep every neuron; leaving them at the default (uniform) utility
        # also avoids the closed_form=False crash on a lone pinned class with varied values
        if v.kind == "absorb" and not v.fixed:
            values = rng.uniform(0.01, 1.0, v.nout)
            values[rng.permutation(v.nout)[: v.nout // 2]] *= -1
            utility[v.name] = values
    return utility


# ---------------------------------------------------------------- measurements
def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def locality(n_small: int, n_large: int, repeats: int) -> dict:
    """Median time of an inner-layer resize (+1, -1 alternating) in both networks."""
    out = {}
    for n in (n_small, n_large):
        g, build_s = timed(residual_network, n)
        name = f"block{n // 2}.conv1"
        g.resize(name, 1)  # warm-up (imports, caches)
        g.resize(name, -1)
        times, stats = [], []
        for k in range(repeats):
            change, seconds = timed(g.resize, name, 1 if k % 2 == 0 else -1)
            times.append(seconds)
            stats.append(change.stats["n_participants"])
        out[n] = {
            "vertices": len(g),
            "build_s": build_s,
            "median_s": statistics.median(times),
            "max_s": max(times),
            "participants": max(stats),
        }
        # and the residual stream itself: the whole add group, growing with the network
        _, out[n]["stream_s"] = timed(g.resize, "stem", 1)
    out["ratio"] = out[n_large]["median_s"] / out[n_small]["median_s"]
    return out


def prune_figures(name: str, graph: mn.Graph, solver: mn.SolverOptions | None, seed: int):
    utility = half_negative(graph, seed)
    before = n_neurons(graph)
    change, seconds = timed(graph.prune, utility=utility, solver=solver)
    graph.check()
    return {
        "graph": name,
        "solver": "closed form + MILP" if solver is None else "MILP only",
        "vertices": len(graph),
        "neurons_before": before,
        "neurons_after": n_neurons(graph),
        "wall_s": seconds,
        "build_s": change.stats["build_s"],
        "solve_s": change.stats["solve_s"],
        "classes": change.stats["n_classes"],
        "milp_classes": change.stats["n_milp_classes"],
    }


def slot_sources(graph: mn.Graph) -> dict[str, list[tuple[str, int]]]:
    """For every vertex, the (source vertex, neuron) each of its output slots carries."""
    slots: dict[str, list[tuple[str, int]]] = {}
    for v in graph.vertices:
        if v.is_source:
            slots[v.name] = [(v.name, i) for i in range(v.nout)]
        elif v.kind == "concat":
            slots[v.name] = [s for u in v.inputs for s in slots[u.name]]
        else:  # invariant, add: the first input's slots
            slots[v.name] = slots[v.inputs[0].name]
    return slots


def naive_prune(graph: mn.Graph, seed: int, time_limit: float) -> dict:
    """The prune as one binary per neuron, equalities for every aligned pair (no collapsing)."""
    utility = half_negative(graph, seed)
    start = time.perf_counter()
    model = pulp.LpProblem("naive_prune", pulp.LpMaximize)
    keep = {}
    for v in graph.vertices:
        if v.is_source:
            for i in range(v.nout):
                keep[v.name, i] = var = pulp.LpVariable(f"keep_{len(keep)}", cat="Binary")
                if v.fixed:
                    model += var == 1
    slots = slot_sources(graph)
    n_equalities = 0
    for v in graph.vertices:
        if v.kind == "add":
            first = slots[v.inputs[0].name]
            for u in v.inputs[1:]:
                for a, b in zip(first, slots[u.name], strict=True):
                    if a != b:
                        model += keep[a] == keep[b]
                        n_equalities += 1
        if v.kind == "absorb":
            model += pulp.lpSum(keep[v.name, i] for i in range(v.nout)) >= 1
    objective = []
    for v in graph.vertices:
        if v.name in utility:
            objective += [float(u) * keep[v.name, i] for i, u in enumerate(utility[v.name])]
        elif v.is_source:  # mutnas's default utility: 1 per neuron
            objective += [keep[v.name, i] for i in range(v.nout)]
    model += pulp.lpSum(objective)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    model.solve(pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit))
    solve_s = time.perf_counter() - start
    absorbs = {v.name for v in graph.vertices if v.kind == "absorb"}
    kept = sum(round(var.value()) for (name, _), var in keep.items() if name in absorbs)
    return {
        "binaries": len(keep),
        "equalities": n_equalities,
        "build_s": build_s,
        "solve_s": solve_s,
        "status": pulp.LpStatus[model.status],
        "neurons_after": kept,
    }


def profile(fn, *args, **kwargs) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn(*args, **kwargs)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(18)
    return text.getvalue()


def stateful(n_mutations: int) -> dict:
    """The long run of the core state machine (tests/property/test_core_stateful.py)."""
    path = ROOT / "tests" / "property" / "test_core_stateful.py"
    spec = importlib.util.spec_from_file_location("core_stateful", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    total: dict[str, int] = {}
    seconds, failures = 0.0, []
    while total.get("attempted", 0) < n_mutations:
        start = time.perf_counter()
        try:
            counts, _ = module.run_machine(500)
        except Exception as err:  # a failing sequence: counted, and the run goes on
            counts = module.CoreMachine.counts  # what the chunk did before it stopped
            failures.append(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
        seconds += time.perf_counter() - start
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
        print(
            f"  stateful: {total['attempted']} mutations, {len(failures)} failures, "
            f"{seconds:.0f} s",
            file=sys.stderr,
        )
    return {"counts": total, "seconds": seconds, "failures": failures}


# ---------------------------------------------------------------- report
def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--stateful", type=int, default=0, metavar="N", help="mutations")
    parser.add_argument(
        "--stateful-only", action="store_true", help="skip the timings; only the stateful run"
    )
    parser.add_argument("--repeats", type=int, default=51)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="cProfile the slow steps")
    args = parser.parse_args(argv)

    n_large = 1_000 if args.quick else 10_000
    repeats = 11 if args.quick else args.repeats
    print(f"# mutnas solver benchmarks ({'quick' if args.quick else 'full'})\n")
    print(
        f"mutnas {mn.__version__} at commit {git_commit()}, python {platform.python_version()}, "
        f"pulp {pulp.__version__} (CBC), {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print(f"{platform.processor() or platform.platform()}\n")

    if args.stateful_only:
        report_stateful(args.stateful or 100_000)
        return
    loc = locality(10, n_large, repeats)
    large = loc[n_large]
    print("## Locality: resize one inner layer (+1/-1), median of", repeats, "\n")
    print("| network | vertices | build | participants | median | max | residual stream |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for n in (10, n_large):
        r = loc[n]
        print(
            f"| {n:,} blocks | {r['vertices']:,} | {ms(r['build_s'])} | {r['participants']} "
            f"| {ms(r['median_s'])} | {ms(r['max_s'])} | {ms(r['stream_s'])} |"
        )
    print(f"\nratio {n_large:,} / 10 blocks: {loc['ratio']:.2f}\n")

    prunes = []
    for name, build in (("ResNet-50", resnet50), ("DenseNet-121", densenet121)):
        for solver in (None, MILP):
            prunes.append(prune_figures(name, build(), solver, args.seed))
    print("## Whole-graph prune, every absorb vertex about -50 % by random utility\n")
    print("| graph | solver | vertices | neurons | after | wall | PuLP build | CBC solve |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in prunes:
        print(
            f"| {r['graph']} | {r['solver']} | {r['vertices']:,} | {r['neurons_before']:,} "
            f"| {r['neurons_after']:,} | {ms(r['wall_s'])} | {ms(r['build_s'])} "
            f"| {ms(r['solve_s'])} |"
        )
    print()

    naive = naive_prune(resnet50(), args.seed, time_limit=120.0)
    print("## Naive model for the ResNet-50 prune: one binary per neuron\n")
    print("| binaries | equalities | PuLP build | CBC solve | status | neurons after |")
    print("|---:|---:|---:|---:|---|---:|")
    print(
        f"| {naive['binaries']:,} | {naive['equalities']:,} | {ms(naive['build_s'])} "
        f"| {ms(naive['solve_s'])} | {naive['status']} | {naive['neurons_after']:,} |\n"
    )

    resnet_fast = prunes[0]["wall_s"]
    densenet_fast = prunes[2]["wall_s"]
    print("## Targets (issue 2)\n")
    print("| target | figure | verdict |")
    print("|---|---:|---|")
    rows = [
        (
            "inner-layer resize, 10,000 blocks: median <= 50 ms",
            ms(large["median_s"]),
            large["median_s"] <= 0.05,
        ),
        ("... cost <= 2x the 10-block resize", f"{loc['ratio']:.2f}x", loc["ratio"] <= 2),
        ("ResNet-50 prune <= 1 s", ms(resnet_fast), resnet_fast <= 1),
        ("DenseNet-121 prune <= 2 s", ms(densenet_fast), densenet_fast <= 2),
    ]
    for label, figure, ok in rows:
        print(f"| {label} | {figure} | {verdict(ok)} |")
    print()

    if args.profile or not all(ok for *_, ok in rows):
        for name, build in (("ResNet-50", resnet50), ("DenseNet-121", densenet121)):
            graph = build()
            print(f"## Profile: {name} prune\n\n```")
            print(profile(graph.prune, utility=half_negative(graph, args.seed)))
            print("```\n")

    if args.stateful:
        report_stateful(args.stateful)


def report_stateful(n_mutations: int) -> None:
    """Print the long stateful run's table: counts, failing sequences (each listed), wall time."""
    run = stateful(n_mutations)
    c = run["counts"]
    print("## Long stateful run\n")
    print("| mutations | applied | refused | graphs | with a fixed vertex | with declared "
          "outputs | failing sequences | wall |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {c['attempted']:,} | {c['applied']:,} | {c['refused']:,} | {c['graphs']:,} "
        f"| {c.get('graphs with a fixed vertex', 0):,} "
        f"| {c.get('graphs with declared outputs', 0):,} | {len(run['failures'])} "
        f"| {run['seconds']:.0f} s |\n"
    )
    for failure in run["failures"]:
        print(f"- failure: {failure}")
    kinds = sorted(k for k in c if k.startswith(("applied ", "refused ")))
    print(", ".join(f"{k}: {c[k]:,}" for k in kinds))


if __name__ == "__main__":
    main()
