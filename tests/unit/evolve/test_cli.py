"""The ``mutnas`` command."""

from __future__ import annotations

import io

from evolve.cli import main

ARGS = [
    "evolve",
    "--dataset",
    "digits",
    "--population",
    "2",
    "--generations",
    "1",
    "--epochs",
    "0.1",
    "--quiet",
]


def test_evolve_then_resume(tmp_path):
    out = io.StringIO()
    assert main([*ARGS, "--run-dir", str(tmp_path)], stdout=out) == 0
    assert "Pareto front after 1 generations" in out.getvalue()
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "state.json").exists()
    out = io.StringIO()
    assert main(["evolve", "--resume", "--quiet", "--run-dir", str(tmp_path)], stdout=out) == 0
    assert "Pareto front after 1 generations" in out.getvalue()


def test_errors_and_usage(tmp_path):
    out = io.StringIO()
    assert main(["evolve", "--dataset", "nope", "--run-dir", str(tmp_path)], stdout=out) == 1
    assert out.getvalue().startswith("mutnas evolve: unknown dataset")
    assert main([], stdout=io.StringIO()) == 2
    assert main(["--help"], stdout=io.StringIO()) == 0
