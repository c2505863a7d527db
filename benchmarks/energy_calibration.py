"""Measure the reference CNNs' energy, calibrate the predictor, judge it leave-one-out.

On a CUDA machine (NVML energy counter)::

    PYTHONUNBUFFERED=1 python benchmarks/energy_calibration.py --device cuda --out $OUT

measures every reference network's inference energy per sample and training-step
energy per sample (windows of at least 1 s, 3 repeats, idle power recorded), fits the
analytic predictor by NNLS, and reports leave-one-out RMSPE and Spearman's rho, for
the full feature set and for FLOPs alone / FLOPs + bytes, each cost-only and
latency-informed (given a separately measured short-run latency), plus the
uncalibrated ranking. Writes ``energy_calibration.json``, ``energy_calibration.md`` and the fitted
predictor into ``--out``.

Without a readable counter (e.g. a CPU-only VM) it says so and exits 0;
``--allow-estimated`` runs the whole pipeline against the estimated meter instead, to
check the plumbing (its figures mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mutnas_torch.energy import (
    FEATURES,
    AnalyticPredictor,
    EstimatedMeter,
    auto_meter,
    device_name,
    device_spec,
    energy_per_inference_j,
    leave_one_out,
    reference_networks,
    rmspe,
    run_calibration,
    spearman,
    training_energy_j,
)

ABLATIONS = {
    "constant": ("constant",),
    "flops": ("flops",),
    "flops+const": ("flops", "constant"),
    "flops+bytes+const": ("flops", "bytes", "constant"),
    "flops+bytes+launches+const": FEATURES,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/energy_run"))
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--networks", type=int, default=None, help="first N networks only")
    parser.add_argument("--min-window-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--allow-estimated", action="store_true")
    return parser.parse_args(argv)


def _ablations(records, spec) -> dict:
    """LOO RMSPE / Spearman per feature set, cost-only and latency-informed, per phase."""
    result = {}
    for phase in ("inference", "training"):
        costs = [getattr(r, f"{phase}_costs") for r in records]
        energy = [getattr(r, phase).total_j for r in records]
        latency = [getattr(r, f"{phase}_latency_s") for r in records]
        rows = {}
        for name, features in ABLATIONS.items():
            for timed in (False, True):
                if name == "constant" and not timed:
                    continue
                loo = leave_one_out(
                    costs, energy, time_s=latency if timed else None, spec=spec, features=features
                )
                key = f"latency+{name}" if timed else name
                rows[key] = {"rmspe": loo.rmspe, "spearman": loo.spearman}
        predicted_time = []
        for i in range(len(records)):
            rest = [j for j in range(len(records)) if j != i]
            p = AnalyticPredictor(spec).fit(
                [costs[j] for j in rest],
                [energy[j] for j in rest],
                time_s=[latency[j] for j in rest],
            )
            predicted_time.append(p.predict_time(costs[i]))
        time_rows = {
            "latency_loo_rmspe": rmspe(predicted_time, latency),
            "latency_loo_spearman": spearman(predicted_time, latency),
            "window_time_vs_latency_rmspe": rmspe(
                latency, [getattr(r, phase).time_s for r in records]
            ),
        }
        default = AnalyticPredictor(spec)
        ratio = [default.predict_energy(c) / e for c, e in zip(costs, energy, strict=True)]
        time_rows["uncalibrated_ratio_min_max"] = [min(ratio), max(ratio)]
        result[phase] = {"features": rows, **time_rows}
    return result


def _markdown(report, ablations: dict, extra: dict) -> str:
    lines = [report.to_markdown(), "", "| features | phase | LOO RMSPE | Spearman |",
             "| --- | --- | ---: | ---: |"]  # fmt: skip
    for phase, data in ablations.items():
        for name, row in data["features"].items():
            lines.append(f"| {name} | {phase} | {row['rmspe']:.1%} | {row['spearman']:.3f} |")
    for phase, data in ablations.items():
        low, high = data["uncalibrated_ratio_min_max"]
        lines.append(
            f"\n{phase}: latency LOO RMSPE {data['latency_loo_rmspe']:.1%} (Spearman "
            f"{data['latency_loo_spearman']:.3f}); short-run latency vs window time "
            f"{data['window_time_vs_latency_rmspe']:.1%}; uncalibrated predicted/measured "
            f"energy {low:.2f}x to {high:.2f}x"
        )
    lines.append("\n```json\n" + json.dumps(extra, indent=2) + "\n```")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = torch.device(args.device)
    meter = auto_meter(device)
    name = device_name(device)
    print(f"device {name}; torch {torch.__version__}; meter {meter.source}", flush=True)
    if isinstance(meter, EstimatedMeter) and not args.allow_estimated:
        print(f"no energy counter is readable on {device}: {meter.reason}")
        print("nothing measured (pass --allow-estimated to exercise the pipeline)")
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    networks = reference_networks()[: args.networks] if args.networks else None
    start = time.perf_counter()
    report = run_calibration(
        device, meter=meter, save=False, networks=networks, batch_size=args.batch_size,
        min_window_s=args.min_window_s, repeats=args.repeats,
        allow_estimated=args.allow_estimated, rng=np.random.default_rng(0),
    )  # fmt: skip
    measured_s = time.perf_counter() - start
    spec = device_spec(device)
    ablations = _ablations(report.records, spec)
    probe = reference_networks()[3]
    model = probe.build().to(device)
    x = torch.randn(probe.input_shape(report.records[0].batch_size), device=device)
    kwargs = {"meter": meter, "min_window_s": args.min_window_s, "repeats": args.repeats}
    extra = {
        "device": name,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "meter": meter.source,
        "nvml_mode": getattr(meter, "mode", None),
        "idle_power_w": meter.idle_power_w(),
        "batch_size": report.records[0].batch_size,
        "min_window_s": args.min_window_s,
        "repeats": args.repeats,
        "measure_seconds": round(measured_s, 1),
        "window_spread_median_max": {
            phase: [
                float(np.median([getattr(r, phase).spread for r in report.records])),
                max(getattr(r, phase).spread for r in report.records),
            ]
            for phase in ("inference", "training")
        },
        "power_range_w": [
            min(r.inference.power_w for r in report.records),
            max(r.inference.power_w for r in report.records),
        ],
        "objective_check": {
            "energy_per_inference_j": energy_per_inference_j(model, x, **kwargs),
            "energy_per_inference_j_estimated": energy_per_inference_j(
                model, x, predictor=report.predictor
            ),
            "energy_per_inference_j_estimated_timed": energy_per_inference_j(
                model, x, predictor=report.predictor, timed=True
            ),
            "training_energy_j": training_energy_j(model, x, **kwargs),
            "training_energy_j_estimated": training_energy_j(model, x, predictor=report.predictor),
            "training_energy_j_estimated_timed": training_energy_j(
                model, x, predictor=report.predictor, timed=True
            ),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    raw = [dataclasses.asdict(record) for record in report.records]  # for offline refits
    data = {**report.to_dict(), "ablations": ablations, "run": extra, "records": raw}
    (args.out / "energy_calibration.json").write_text(json.dumps(data, indent=2) + "\n")
    markdown = _markdown(report, ablations, extra)
    (args.out / "energy_calibration.md").write_text(markdown)
    report.predictor.save(args.out / "predictor.json")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
