"""The MNIST-1D benchmark script runs end to end and reports the target honestly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "search_mnist1d.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("search_mnist1d", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Fixed(nn.Module):
    """Predicts class 0 for the first ``right`` samples and class 1 after."""

    def __init__(self, right: int):
        super().__init__()
        self.right = right

    def forward(self, x):
        out = torch.zeros(len(x), 2)
        out[: self.right, 0] = 1.0
        out[self.right :, 1] = 1.0
        return out


def test_accuracy_counts_950_of_1000_as_exactly_95_percent(bench):
    x, y = torch.zeros(1000, 4), torch.zeros(1000, dtype=torch.long)
    assert bench.accuracy(_Fixed(950), x, y) == 0.95  # a float32 mean gives 0.94999999
    assert bench.accuracy(_Fixed(949), x, y) < bench.TARGET_ACCURACY


def _report(test_accuracy: float, flops: int = 40_000) -> dict:
    row = {"id": 1, "valid_accuracy": 0.97, "test_accuracy": test_accuracy, "flops": flops,
           "parameters": 2000, "train_steps": 100, "generation": 3, "found_min": 1.0,
           "layers": {"conv1": 8}}  # fmt: skip
    return {"seed": 0, "search_minutes": 60.0, "generations": 3, "candidates": 36,
            "failed": 0, "culled": 9, "front": [row], "machine": "x86_64", "torch": "2",
            "threads": 1, "reference": {"test_accuracy": 0.93, "flops": 63_500,
            "parameters": 5210, "steps": 6000, "seconds": 8.0}}  # fmt: skip


@pytest.mark.parametrize(
    "test_accuracy, flops, met",
    [
        (0.949999988079071, 40_000, "yes"),  # 950/1000 as recorded before the fix
        (0.949, 40_000, "no"),
        (0.97, 70_000, "no"),  # over the FLOP budget
    ],
)
def test_summary_row_target(bench, test_accuracy, flops, met):
    assert bench._summary_row(_report(test_accuracy, flops)).endswith(f"| {met} |")


def test_write_markdown_includes_every_seed_and_the_notes(bench, tmp_path):
    folder = tmp_path / "search_mnist1d"
    folder.mkdir()
    for seed in (0, 1):
        (folder / f"seed{seed}.json").write_text(json.dumps({**_report(0.96), "seed": seed}))
    (folder / "notes.md").write_text("## Findings\n\n- hand-written\n")
    text = bench.write_markdown(tmp_path).read_text()
    assert "| 0 | 60.0 | 3 | 36 | 96.0 %" in text and "| 1 | 60.0 | 3 | 36 | 96.0 %" in text
    assert "- hand-written" in text and "## Seed 1: Pareto front" in text


@pytest.fixture
def process_state():
    """``main`` sets torch's thread count and configures logging: undone after the test."""
    import logging

    threads, root = torch.get_num_threads(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    torch.set_num_threads(threads)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.slow
def test_script_runs_end_to_end(bench, tmp_path, process_state):
    out, run_dir = tmp_path / "out", tmp_path / "run"
    argv = ["--seed", "0", "--minutes", "0.1", "--reference-steps", "20",
            "--accuracy-floor", "0", "--out", str(out), "--run-dir", str(run_dir)]  # fmt: skip
    assert bench.main(argv) == 0
    report = json.loads((out / "search_mnist1d" / "seed0.json").read_text())
    assert report["accuracy_floor"] == 0 and report["front"] and report["generations"] >= 1
    for row in report["front"]:
        assert 0 <= row["test_accuracy"] <= 1 and row["flops"] <= bench.FLOP_BUDGET
    assert (out / "search_mnist1d" / "seed0_front.png").stat().st_size > 0
    assert "## Seed 0: Pareto front" in (out / "search_mnist1d.md").read_text()
    assert (run_dir / "state.json").exists()
