"""The ``mutnas`` command: the search → report → retrain → export path and its errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import mutnas_torch as mt
from evolve.cli import main
from evolve.data import load_dataset

TINY = ["--dataset", "digits", "--population", "2", "--generations", "1", "--epochs", "0.1"]


def run(*argv):
    """``(status, stdout, stderr)`` of ``mutnas argv``, in this process."""
    out, err = io.StringIO(), io.StringIO()
    status = main([str(a) for a in argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished tiny search on digits with the energy objective (estimated on a CPU)."""
    folder = tmp_path_factory.mktemp("run")
    status, out, err = run(
        "evolve",
        *TINY,
        "--generations",
        "2",
        "--objectives",
        "accuracy,energy",
        "--quiet",
        "--run-dir",
        folder,
    )
    assert status == 0, err
    assert "Pareto front after 2 generations" in out
    return folder


def test_evolve_writes_the_run_directory_and_the_resolved_options(run_dir):
    for name in ("config.json", "cli.json", "state.json", "candidates.jsonl", "pareto.png"):
        assert (run_dir / name).exists(), name
    options = json.loads((run_dir / "cli.json").read_text())
    assert options["dataset"] == "digits" and options["population"] == 2
    assert options["objectives"] == ["accuracy", "energy"] and options["evaluator"] == "serial"
    config = json.loads((run_dir / "config.json").read_text())
    assert [o["class"] for o in config["objectives"]] == [
        "evolve.objectives.AccuracyObjective",
        "evolve.objectives.EnergyObjective",
    ]
    assert config["objectives"][1]["params"]["measure"] is False  # predicted (estimated)


def test_search_report_retrain_export_end_to_end(run_dir, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    status, out, err = run("report", run_dir, "--test", "--json", tmp_path / "front.json")
    assert status == 0, err
    rows = json.loads((tmp_path / "front.json").read_text())
    assert rows and {"id", "accuracy", "energy", "test_accuracy"} <= set(rows[0])
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["energy"] > 0 for r in rows)
    assert str(rows[0]["id"]) in out and "plot:" in out
    best = rows[0]["id"]

    status, out, err = run(
        "retrain",
        run_dir,
        "--model",
        best,
        "--epochs",
        "1",
        "--width",
        "1.5",
        "--depth",
        "1",
        "--quiet",
    )
    assert status == 0, err
    summary = json.loads((run_dir / "retrained" / str(best) / "retrain.json").read_text())
    assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    assert summary["changes"][0].startswith("width x1.5") and len(summary["changes"]) == 2
    assert f"test accuracy {summary['test']['accuracy']:.4f}" in out

    target = tmp_path / "model.onnx"
    status, out, err = run(
        "export", run_dir, "--model", best, "--retrained", "--format", "onnx", "--out", target
    )
    assert status == 0, err
    assert "onnxruntime: max |onnx - torch|" in out
    model = mt.load(run_dir / "retrained" / str(best)).eval()
    x = torch.randn(5, 1, 8, 8)
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-4, atol=1e-5)

    status, out, err = run("export", run_dir, "--model", best, "--format", "torch")
    assert status == 0, err
    exported = mt.load(run_dir / "export" / f"model{best}")
    searched = mt.load(run_dir / "models" / str(best))
    with torch.no_grad():
        assert torch.equal(exported.eval()(x), searched.eval()(x))


def test_resume_extends_a_run(tmp_path):
    status, _, err = run(
        "evolve", *TINY, "--valid-fraction", "0.25", "--quiet", "--run-dir", tmp_path
    )
    assert status == 0, err
    assert json.loads((tmp_path / "cli.json").read_text())["valid_fraction"] == 0.25
    data = json.loads((tmp_path / "config.json").read_text())["data"]
    expected = load_dataset("digits", valid_fraction=0.25, seed=0)
    assert data["n_valid"] == len(expected.valid) > len(load_dataset("digits", seed=0).valid)
    assert data["valid_fraction"] is None  # the command made the split, not fit()
    # resume reloads the same split (the data fingerprint would not match otherwise)
    status, out, err = run("resume", tmp_path, "--generations", "2", "--quiet")
    assert status == 0, err
    assert "Pareto front after 2 generations" in out
    status, _, err = run("evolve", *TINY, "--quiet", "--run-dir", tmp_path)
    assert status == 1
    assert "already holds a run" in one_line_error(err)


def test_toml_config_sets_options_and_flags_win(tmp_path):
    config = tmp_path / "search.toml"
    config.write_text(
        '[evolve]\ndataset = "digits"\npopulation = 2\ngenerations = 1\nepochs = 0.1\n'
        'objectives = ["accuracy", "parameters"]\nseed = 3\n'
    )
    status, out, err = run(
        "evolve", "--config", config, "--seed", "4", "--quiet", "--run-dir", tmp_path / "r"
    )
    assert status == 0, err
    options = json.loads((tmp_path / "r" / "cli.json").read_text())
    assert options["seed"] == 4 and options["objectives"] == ["accuracy", "parameters"]
    assert "parameters" in out

    config.write_text("populaton = 2\n")
    status, _, err = run("evolve", "--config", config, "--run-dir", tmp_path / "bad")
    assert status == 1
    assert one_line_error(err).endswith("unknown option 'populaton'; did you mean 'population'?")
    config.write_text("population = -1\n")
    status, _, err = run("evolve", "--config", config, "--run-dir", tmp_path / "bad")
    assert "population: expected an integer > 0, got -1" in one_line_error(err)


def test_unknown_dataset(tmp_path):
    status, _, err = run("evolve", "--dataset", "cifar", "--quiet", "--run-dir", tmp_path)
    assert status == 1
    line = one_line_error(err)
    assert line.startswith("mutnas evolve: unknown dataset 'cifar'") and "cifar10" in line


def test_empty_data_folder(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    status, _, err = run(
        "evolve", "--dataset", "cifar10", "--data-dir", empty, "--quiet", "--run-dir",
        tmp_path / "run",
    )  # fmt: skip
    assert status == 1
    line = one_line_error(err)
    assert "is empty" in line and "data_batch_1.bin" in line


def test_corrupt_cifar_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    record = bytes([3]) + bytes(3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / f"{name}.bin").write_bytes(record * 2)
    (folder / "data_batch_3.bin").write_bytes(record * 2 + b"\x00" * 100)  # cut mid-record
    status, _, err = run(
        "evolve",
        "--dataset",
        "cifar10",
        "--data-dir",
        tmp_path,
        "--quiet",
        "--run-dir",
        tmp_path / "run",
    )
    assert status == 1
    line = one_line_error(err)
    assert "data_batch_3.bin" in line


def test_user_model_with_the_wrong_input_shape(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(5, 10))  # digits are 1x8x8 = 64 features
    mt.save(mt.mutable(net, torch.zeros(1, 5)), tmp_path / "model")
    status, _, err = run(
        "evolve", *TINY, "--model", tmp_path / "model", "--quiet", "--run-dir", tmp_path / "run"
    )
    assert status == 1
    line = one_line_error(err)
    assert "does not accept this data's inputs of shape (1, 8, 8)" in line
    assert "mat1 and mat2 shapes cannot be multiplied" in line
    assert not (tmp_path / "run" / "state.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evolve", "--population", "-3"], "argument --population: expected an integer > 0"),
        (["evolve", "--generations", "0"], "argument --generations: expected an integer > 0"),
        (["evolve", "--epochs", "nan"], "argument --epochs: expected a number > 0"),
        (["evolve", "--evaluator", "gpu"], "argument --evaluator: invalid choice: 'gpu'"),
        (
            ["evolve", "--valid-fraction", "1"],
            "--valid-fraction: expected a number between 0 and 1",
        ),
        (["evolve", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["export", "runs/x"], "the following arguments are required: --model"),
        (["calibrate", "--bogus"], "mutnas calibrate: unrecognized arguments: --bogus"),
        (["calibrate", "--repeats", "0"], "--repeats: expected an integer from 1 to 100"),
        (["retrain", "runs/x", "--model", "1", "--depth", "33"], "from 0 to 32, got '33'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv, message):
    status, _, err = run(*argv)
    assert status == 2
    assert message in one_line_error(err)


def test_missing_run_directory_and_model(tmp_path, run_dir):
    status, _, err = run("report", tmp_path / "nope")
    assert status == 1 and "is not a directory" in one_line_error(err)
    status, _, err = run("report", tmp_path)
    assert status == 1 and "no state.json" in one_line_error(err)
    status, _, err = run("export", run_dir, "--model", "999")
    assert status == 1
    assert one_line_error(err).startswith(f"mutnas export: no model 999 in {run_dir}/models")


def test_unknown_command_and_usage():
    status, out, err = run("evolv")
    assert status == 2 and "did you mean 'evolve'?" in one_line_error(err)
    status, out, _ = run()
    assert status == 2 and "commands:" in out
    status, out, _ = run("--help")
    assert status == 0 and "retrain" in out


def test_console_script_prints_one_line_for_a_bad_flag():
    """The real command in a subprocess: no traceback reaches the terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "evolve.cli", "evolve", "--population", "-2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mutnas evolve: argument --population: expected an integer > 0, got '-2' "
        "(see mutnas evolve --help)"
    )


def test_processes_evaluator_from_the_command_line_gives_the_serial_front(tmp_path):
    fronts = {}
    for evaluator in ("serial", "processes"):
        status, out, err = run(
            "evolve", *TINY, "--evaluator", evaluator, "--workers", "1", "--quiet",
            "--run-dir", tmp_path / evaluator,
        )  # fmt: skip
        assert status == 0, err
        fronts[evaluator] = out.split(":\n", 1)[1].split("plots:")[0]
    assert fronts["processes"] == fronts["serial"]
    options = json.loads((tmp_path / "processes" / "cli.json").read_text())
    assert options["evaluator"] == "processes" and options["asynchronous"] is False
