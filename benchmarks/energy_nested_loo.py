"""Score the energy predictor's *choice of features* honestly: nested leave-one-out.

The shipped predictors (``FEATURES``: FLOPs + bytes + launches + constant, cost-only and
latency-informed) were chosen by comparing feature sets leave-one-out on the same 20
reference networks they are then scored on (``benchmarks/results/energy.md``, "Which
features matter"). That choice leaks the held-out network into the model. Nested LOO
removes the leak: for each network, the feature set is chosen by an inner LOO over the
other 19 only, then fitted on those 19 and asked to predict the one left out.

The measurements are the H100 run recorded in ``benchmarks/results/energy.md`` (per-network
table: total energy per sample in mJ and average power in W, printed to 3 decimals and
whole watts). Costs (FLOPs, bytes, launches) are recounted here on ``meta`` tensors for a
batch of 128, exactly as the calibration counted them. The latency of a pass is
energy / average power, i.e. the measured window time per call; the shipped
latency-informed model was fitted with a separately timed latency, which agreed with the
window time to 6.3 % (inference) and 5.5 % (training) RMSPE, so its plain-LOO figures
here differ a little from the recorded ones. No GPU is needed::

    python benchmarks/energy_nested_loo.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from mutnas_torch.energy import (
    FEATURES,
    AnalyticPredictor,
    count_costs,
    device_spec,
    leave_one_out,
    reference_networks,
    rmspe,
    spearman,
)

RESULTS = Path(__file__).parent / "results" / "energy.md"
BATCH = 128
CANDIDATES = {  # the feature sets compared in benchmarks/energy_calibration.py
    "flops": ("flops",),
    "flops+const": ("flops", "constant"),
    "flops+bytes+const": ("flops", "bytes", "constant"),
    "flops+bytes+launches+const": FEATURES,
}
TIMED_CANDIDATES = {"const": ("constant",), **CANDIDATES}


def measured() -> dict[str, dict[str, float]]:
    """Per network: inference/training joules and seconds per pass of 128 samples."""
    rows = {}
    for line in RESULTS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 12 or not re.fullmatch(r"[a-z]+_[a-z0-9_]+", cells[0]):
            continue
        e_inf, w_inf, e_tr, w_tr = (float(cells[i]) for i in (4, 7, 8, 11))
        rows[cells[0]] = {
            "inference_j": e_inf * 1e-3 * BATCH,
            "inference_s": e_inf * 1e-3 * BATCH / w_inf,
            "training_j": e_tr * 1e-3 * BATCH,
            "training_s": e_tr * 1e-3 * BATCH / w_tr,
        }
    return rows


def nested(costs, energy, time_s, spec, candidates) -> tuple[float, float, list[str]]:
    """Outer LOO; in each fold the feature set with the best inner-LOO RMSPE is used."""
    predicted, chosen = [], []
    for i in range(len(costs)):
        rest = [j for j in range(len(costs)) if j != i]

        def sub(xs, rest=rest):
            return None if xs is None else [xs[j] for j in rest]

        scores = {
            name: leave_one_out(
                sub(costs), sub(energy), time_s=sub(time_s), spec=spec, features=features
            ).rmspe
            for name, features in candidates.items()
        }
        best = min(scores, key=scores.get)
        chosen.append(best)
        predictor = AnalyticPredictor(spec).fit(
            sub(costs), sub(energy), time_s=sub(time_s), features=candidates[best]
        )
        left_out = None if time_s is None else time_s[i]
        predicted.append(predictor.predict_energy(costs[i], time_s=left_out))
    return rmspe(predicted, energy), spearman(predicted, energy), chosen


def main() -> int:
    data = measured()
    nets = {net.name: net for net in reference_networks()}
    if set(data) != set(nets):
        print(f"networks differ: table {sorted(data)} vs library {sorted(nets)}", file=sys.stderr)
        return 1
    spec = device_spec("h100")
    names = sorted(data)
    print("| phase | predictor | plain LOO (features fixed in advance) | nested LOO (features "
          "chosen inside each fold) | feature sets chosen |")  # fmt: skip
    print("|---|---|---:|---:|---|")
    for phase in ("inference", "training"):
        costs = []
        for name in names:
            model = nets[name].build().train(phase == "training")
            x = torch.zeros(nets[name].input_shape(BATCH))
            costs.append(count_costs(model, x, training=phase == "training"))
        energy = [data[n][f"{phase}_j"] for n in names]
        seconds = [data[n][f"{phase}_s"] for n in names]
        for label, time_s, candidates in (
            ("cost-only", None, CANDIDATES),
            ("latency-informed", seconds, TIMED_CANDIDATES),
        ):
            plain = leave_one_out(costs, energy, time_s=time_s, spec=spec, features=FEATURES)
            r, rho, chosen = nested(costs, energy, time_s, spec, candidates)
            counts = {c: chosen.count(c) for c in dict.fromkeys(chosen)}
            shown = ", ".join(f"{c} ({k}/20)" for c, k in counts.items())
            print(
                f"| {phase} | {label} | {plain.rmspe:.1%} (ρ {plain.spearman:.3f}) "
                f"| {r:.1%} (ρ {rho:.3f}) | {shown} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
