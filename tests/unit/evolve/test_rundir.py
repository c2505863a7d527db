"""A run directory's lock, run id and record of what it wrote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from evolve_helpers import signals

import evolve
from evolve import checkpoint
from evolve.errors import ConfigError
from evolve.rundir import RunDirectory, RunInUseError, check_run_id

HOLD = """
import sys, time
from evolve.rundir import RunDirectory
run = RunDirectory.create(sys.argv[1])
run.started = True
print("locked", flush=True)
time.sleep(120)
"""
TINY = {"population": 2, "generations": 1, "progress": False}


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path):
    folder = tmp_path / "run"
    root = str(Path(__file__).parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunInUseError, match=f"is in use by process {holder.pid};") as info:
            RunDirectory.create(folder)
        assert info.value.pid == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunDirectory.create(folder) as run:  # the kernel released the killed holder's lock
        assert (folder / ".lock").read_text().strip() == str(os.getpid())
        assert check_run_id(run.run_id, "x") == run.run_id


def test_a_second_opening_in_the_same_process_is_refused_too(tmp_path):
    with RunDirectory.create(tmp_path / "run") as run:
        run.started = True
        with pytest.raises(RunInUseError, match=f"process {os.getpid()}"):
            RunDirectory.create(tmp_path / "run")
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".lock"]
    RunDirectory.create(tmp_path / "run").close()  # a lone lock file counts as empty


def test_a_refused_start_removes_only_what_it_wrote(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new", tmp_path / "empty"):
        run = RunDirectory.create(folder)
        run.write_json("cli.json", {"command": "evolve"})
        run.close()  # no search started: cli.json and the lock file go, the folder stays
    assert not (tmp_path / "new").exists() and list((tmp_path / "empty").iterdir()) == []


def test_create_refuses_files_and_folders_that_are_not_empty(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; pick an empty or new folder"):
        RunDirectory.create(tmp_path / "file")
    (tmp_path / "half" / "config.json").parent.mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="stopped before its first checkpoint"):
        RunDirectory.create(tmp_path / "half")
    with pytest.raises(ConfigError, match="holds no checkpointed run"):
        RunDirectory.open(tmp_path / "half")
    assert sorted(p.name for p in (tmp_path / "half").iterdir()) == ["config.json"]


def test_a_lock_file_that_is_a_link_is_refused(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").symlink_to(victim)
    with pytest.raises(ConfigError, match="cannot open the lock file"):
        RunDirectory.create(tmp_path / "run")
    (tmp_path / "run" / ".lock").unlink()
    os.link(victim, tmp_path / "run" / ".lock")  # truncating it would empty the victim
    with pytest.raises(ConfigError, match="is not a plain file of its own"):
        RunDirectory.create(tmp_path / "run")
    assert victim.read_text() == "keep me"


def test_resume_finishes_an_interrupted_checkpoint(tmp_path):
    """Killed after writing a new model folder (noted) but before state.json: resume
    deletes that folder, which the note names, and nothing else."""
    run_dir = tmp_path / "run"
    evolve.fit(signals(), run_dir=run_dir, **TINY)
    models = run_dir / "models"
    kept = sorted(p.name for p in models.iterdir())
    checkpoint.save_model(checkpoint.load_model(models / kept[0]), models / "900")
    with RunDirectory.open(run_dir) as run:
        run.note_pending(write=[900], delete=[])
    (models / ".901.abcdef12.tmp").mkdir()  # a temporary folder of the interrupted save
    more = evolve.MaxGenerationsTermination(2)
    evolve.resume(run_dir, signals(), termination=more, progress=False)
    assert "900" not in os.listdir(models) and not (run_dir / ".pending.json").exists()
    assert not any(checkpoint.is_temporary(p.name) for p in models.iterdir())


def test_a_pending_note_of_another_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    evolve.fit(signals(), run_dir=run_dir, **TINY)
    checkpoint.write_json(run_dir / ".pending.json", {"run_id": "0" * 32, "write": [5]})
    with pytest.raises(ConfigError, match=r"\.pending\.json is not this run's note"):
        evolve.resume(run_dir, signals(), progress=False)
    assert (run_dir / ".pending.json").exists()


def test_fit_holds_the_lock_while_it_runs(tmp_path):
    seen = []

    class Probe(evolve.Callback):
        def on_generation_end(self, algorithm):
            with pytest.raises(RunInUseError):
                RunDirectory.open(algorithm.run_dir)
            seen.append(algorithm.generation)

    evolve.fit(signals(), run_dir=tmp_path / "run", callbacks=[Probe()], **TINY)
    assert seen == [1]
    RunDirectory.open(tmp_path / "run").close()  # released when fit returned
