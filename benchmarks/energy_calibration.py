"""Measure the reference CNNs' energy, calibrate the predictor, judge it leave-one-out.

On a CUDA machine (NVML energy counter)::

    PYTHONUNBUFFERED=1 python benchmarks/energy_calibration.py --device cuda --out $OUT

measures every reference network's inference energy per sample and training-step
energy per sample (windows of at least 1 s, 3 repeats, idle power recorded), fits the
analytic predictor by NNLS, and reports leave-one-out RMSPE and Spearman's rho, for
the full feature set and for FLOPs alone / FLOPs + bytes, plus the uncalibrated
ranking. Writes ``energy_calibration.json``, ``energy_calibration.md`` and the fitted
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
    training_energy_j,
)

ABLATIONS = {
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
    result = {}
    for phase in ("inference", "training"):
        costs = [getattr(r, f"{phase}_costs") for r in records]
        energy = [getattr(r, phase).total_j for r in records]
        times = [getattr(r, phase).time_s for r in records]
        rows = {}
        for name, features in ABLATIONS.items():
            loo = leave_one_out(costs, energy, spec=spec, features=features)
            rows[name] = {"rmspe": loo.rmspe, "spearman": loo.spearman}
        predicted_time = []
        for i in range(len(records)):
            rest = [j for j in range(len(records)) if j != i]
            p = AnalyticPredictor(spec).fit(
                [costs[j] for j in rest], [energy[j] for j in rest], time_s=[times[j] for j in rest]
            )
            predicted_time.append(p.predict_time(costs[i]))
        rows["time_loo_rmspe"] = rmspe(predicted_time, times)
        default = AnalyticPredictor(spec)
        ratio = [default.predict_energy(c) / e for c, e in zip(costs, energy, strict=True)]
        rows["uncalibrated_ratio_min_max"] = [min(ratio), max(ratio)]
        result[phase] = rows
    return result


def _markdown(report, ablations: dict, extra: dict) -> str:
    lines = [report.to_markdown(), "", "| features | phase | LOO RMSPE | Spearman |",
             "| --- | --- | ---: | ---: |"]  # fmt: skip
    for phase, rows in ablations.items():
        for name in ABLATIONS:
            row = rows[name]
            lines.append(f"| {name} | {phase} | {row['rmspe']:.1%} | {row['spearman']:.3f} |")
    for phase, rows in ablations.items():
        low, high = rows["uncalibrated_ratio_min_max"]
        lines.append(
            f"\n{phase}: time LOO RMSPE {rows['time_loo_rmspe']:.1%}; uncalibrated "
            f"predicted/measured energy {low:.2f}x to {high:.2f}x"
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
        "max_window_spread": max(r.inference.spread for r in report.records),
        "power_range_w": [
            min(r.inference.power_w for r in report.records),
            max(r.inference.power_w for r in report.records),
        ],
        "objective_check": {
            "energy_per_inference_j": energy_per_inference_j(model, x, **kwargs),
            "energy_per_inference_j_estimated": energy_per_inference_j(
                model, x, predictor=report.predictor
            ),
            "training_energy_j": training_energy_j(model, x, **kwargs),
            "training_energy_j_estimated": training_energy_j(model, x, predictor=report.predictor),
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
