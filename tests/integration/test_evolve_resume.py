"""Kill a search with SIGKILL in the middle of a generation, resume it, and check that it
finishes with the same number of generations, the same history as an uninterrupted run,
and no corrupt file."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evolve
from evolve import checkpoint

SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
import evolve
from test_evolve_resume import data, SETTINGS
evolve.fit(data(), run_dir=sys.argv[1], **SETTINGS)
"""
SETTINGS = {
    "population": 3,
    "generations": 5,
    "seed": 4,
    "progress": False,
    "training": evolve.TrainingConfig(steps=40, cull_fraction=0.34),
}
TIME_KEYS = {"seconds", "elapsed_s", "train_seconds"}


def data():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.randn(60, 1, 24, generator=g) * 0.3
    x[torch.arange(60), 0, y * 8] += 2.0
    return x, y


def stripped(records):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in records]


def _mid_generation(run_dir: Path) -> bool:
    """A checkpoint after generation >= 2 exists and the next generation has logged work."""
    try:
        state = json.loads((run_dir / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    log = run_dir / "candidates.jsonl"
    return state["generation"] >= 2 and log.stat().st_size > state["log_offset"]


def test_sigkill_mid_generation_then_resume(tmp_path):
    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(here=str(Path(__file__).parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(run_dir)])
    try:
        deadline = time.monotonic() + 240
        while not _mid_generation(run_dir):
            if proc.poll() is not None:
                pytest.fail(f"the search ended (rc {proc.returncode}) before it could be killed")
            if time.monotonic() > deadline:
                pytest.fail("the search did not reach generation 2 in time")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    state = checkpoint.read_json(run_dir / "state.json")
    killed_at = state["generation"]
    assert 2 <= killed_at < SETTINGS["generations"]

    resumed = evolve.resume(run_dir, data(), progress=False)
    assert resumed.n_generations == SETTINGS["generations"]
    whole = evolve.fit(data(), run_dir=tmp_path / "whole", **SETTINGS)
    assert stripped(resumed.history) == stripped(whole.history)
    assert stripped(resumed.candidates) == stripped(whole.candidates)

    # no corrupt file: every JSON parses, every line is whole, every model loads
    lines = (run_dir / "candidates.jsonl").read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert len(set(ids)) == len(ids) == len(whole.candidates)  # each candidate once
    for name in ("config.json", "state.json"):
        checkpoint.read_json(run_dir / name)
    final = checkpoint.read_json(run_dir / "state.json")
    wanted = {r["id"] for r in final["population"] + final["archive"]}
    assert {p.name for p in (run_dir / "models").iterdir()} == {str(i) for i in wanted}
    x = data()[0][:4]
    for i in wanted:
        assert checkpoint.load_model(run_dir / "models" / str(i))(x).shape == (4, 3)
