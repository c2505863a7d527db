"""Evolve MNIST-1D classifiers from scratch, trading accuracy against energy.

1. Load MNIST-1D (procedural 1-D digits: 4,000 train / 1,000 test, no download).
2. Search a Pareto front of accuracy against energy per inference: predicted from counted
   FLOPs, bytes and launches on a CPU, measured with NVML on an NVIDIA GPU.
3. Score the front on the held-out test split, draw the Pareto plot, and export the most
   accurate model to ONNX (checked against torch with onnxruntime) and to a mutnas model
   folder (safetensors + JSON).

Run:  python examples/evolve_from_scratch.py [--quick] [--out runs/example]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

import evolve
import mutnas_torch as mt
from evolve.data import load_dataset
from evolve.export import export_onnx
from evolve.training import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny search (CI)")
    parser.add_argument("--out", type=Path, default=Path("runs/evolve_from_scratch"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    shutil.rmtree(args.out / "run", ignore_errors=True)  # this example's own previous run

    # 1. Data. `limit` keeps a stratified subset for the quick run.
    splits = load_dataset("mnist1d", seed=args.seed, limit=600 if args.quick else None)
    print(splits)

    # 2. Search. Energy is measured where a meter exists (an NVIDIA GPU with NVML), else
    # predicted: the front then ranks models by what they would cost, deterministically.
    measure = torch.cuda.is_available()
    objectives = ["accuracy", evolve.EnergyObjective(measure=measure)]
    result = evolve.fit(
        splits,
        objectives=objectives,
        population=4 if args.quick else 10,
        generations=2 if args.quick else 8,
        training=evolve.TrainingConfig(epochs=1 if args.quick else 4, cull_fraction=0.25),
        seed=args.seed,
        run_dir=args.out / "run",
        progress=False,
    )
    source = "measured (NVML)" if measure else "predicted from counted costs"
    print(f"\nPareto front, energy {source}, after {result.n_generations} generations:")
    print(result.summary())

    # 3. The front on the test split; the plot fit() drew; the best model exported.
    x, y = splits.test.tensors
    print("\n id  test accuracy  mJ/inference  parameters")
    for c in result.pareto:
        with torch.no_grad():
            accuracy = (predict(c.model.eval(), x).argmax(1) == y).float().mean().item()
        energy_mj = 1e3 * c.scores["energy"]
        print(f"{c.id:>3}  {accuracy:>13.3f}  {energy_mj:>12.4f}  {c.model.n_parameters():>10,}")
    print(f"\nPareto plot: {args.out / 'run' / 'pareto.png'}")

    best = result.best.model.cpu().eval()
    mt.save(best, args.out / "best_model")
    print(f"best model (id {result.best.id}) saved to {args.out / 'best_model'}")
    try:
        diff, checker = export_onnx(
            best.to_module(), splits.input_shape, args.out / "best_model.onnx"
        )
        print(f"ONNX: {args.out / 'best_model.onnx'} ({checker}: max difference {diff:.1e})")
    except Exception as err:  # onnx is an optional extra
        print(f"ONNX export skipped: {err}")


if __name__ == "__main__":
    main()
