"""Every script in ``examples/`` runs with its ``--quick`` budget and says what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))


def run_example(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_every_example_is_covered():
    assert EXAMPLES == [
        "evolve_from_scratch.py",
        "mutate_existing_network.py",
        "property_testing.py",
        "transfer_learning_surgery.py",
    ]


def test_mutate_existing_network():
    out = run_example("mutate_existing_network.py")
    promised = [line for line in out.splitlines() if "outputs equal:" in line]
    assert promised, out
    assert all(line.endswith("outputs equal: True") for line in promised), out
    assert "output shape kept: True" in out
    assert "plain torch.fx.GraphModule: GraphModule" in out


def test_transfer_learning_surgery():
    out = run_example("transfer_learning_surgery.py")
    assert "task A (digits 0-4): test accuracy" in out
    assert "task B (0-9) after head swap" in out
    assert "FLOPs/sample" in out


def test_property_testing():
    out = run_example("property_testing.py")
    assert "widen_narrowest held on 50 random graphs" in out


@pytest.mark.parametrize("name", ["evolve_from_scratch.py"])
def test_evolve_from_scratch(name, tmp_path):
    pytest.importorskip("onnxruntime")
    out = run_example(name, "--out", str(tmp_path))
    assert "Pareto front, energy predicted from counted costs" in out
    assert (tmp_path / "run" / "pareto.png").exists()
    assert (tmp_path / "best_model" / "model.safetensors").exists()
    assert "(onnxruntime: max difference" in out and (tmp_path / "best_model.onnx").exists()
