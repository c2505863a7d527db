"""Run directories written by someone else, or damaged: nothing runs, nothing is touched.

Each test crafts file(s) of a run directory in ``tmp_path`` (or a folder the user owns),
hands it to the ``mutnas`` command or to :mod:`evolve`, and asserts the refusal (exit
status, one line naming the cause) and the absence of side effects: victim folders keep
their sentinel files, the run's files keep their bytes, the log has no duplicated id.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import evolve
from evolve.cli import main
from evolve.rundir import RunDirectory

TINY = ["--dataset", "digits", "--population", "2", "--epochs", "0.1", "--quiet"]
ROOT = Path(__file__).parents[2]


def run(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main([str(a) for a in argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a digest of its bytes (the lock file aside)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def victims(parent: Path) -> list[Path]:
    """Folders of the user beside the run, each with a sentinel file."""
    made = []
    for name in ("thesis", "photos"):
        (parent / name).mkdir()
        (parent / name / "sentinel.txt").write_text("keep me")
        made.append(parent / name / "sentinel.txt")
    return made


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished two-generation search on digits (a few seconds)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    status, _, err = run("evolve", *TINY, "--generations", "2", "--run-dir", folder)
    assert status == 0, err
    return folder


@pytest.fixture
def run_dir(finished_run, tmp_path) -> Path:
    """A private copy of the finished run, in ``tmp_path / "run"``."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- 2: config.json runs code
@pytest.mark.parametrize(
    "payload",
    [
        {  # the exploit of the issue: delete every folder under the current directory
            "class": "evolve.checkpoint.prune_models",
            "params": {"models_dir": {"class": "evolve.checkpoint.Path", "params": {}}, "keep": []},
        },
        {  # today's twin: a plain function that deletes the folder it is given
            "class": "evolve.checkpoint.remove_tree",
            "params": {"path": {"class": "evolve.checkpoint.Path", "params": {}}},
        },
        {  # a registered class, but of another role
            "class": "evolve.selection.TournamentSelection",
            "params": {"size": 2},
        },
    ],
)
@pytest.mark.parametrize("command", ["report", "resume"])
def test_config_json_cannot_call_functions_of_evolve(
    run_dir, tmp_path, monkeypatch, payload, command
):
    monkeypatch.chdir(tmp_path)
    sentinels = victims(tmp_path)
    edit_json(run_dir / "config.json", lambda c: c["objectives"].__setitem__(0, payload))
    before = snapshot(run_dir)
    status, _, err = run(command, "run")
    assert status == 1
    line = one_line(err)
    assert "config.json: objectives[0]" in line and payload["class"] in line
    assert "is not an Objective class of evolve" in line
    assert all(p.read_text() == "keep me" for p in sentinels)
    assert snapshot(run_dir) == before


def test_nested_component_of_the_wrong_role_is_refused_by_resume(run_dir):
    def change(config):
        config["algorithm"]["params"]["termination"] = {
            "class": "evolve.objectives.FlopsObjective",
            "params": {},
        }

    edit_json(run_dir / "config.json", change)
    before = snapshot(run_dir)
    status, _, err = run("resume", run_dir, "--quiet")
    assert status == 1
    assert (
        "config.json: algorithm.termination: 'evolve.objectives.FlopsObjective' is not a "
        "Termination class" in one_line(err)
    )
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- 3: a folder of the user
def test_evolve_refuses_a_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "mine"
    (folder / "models" / "holiday").mkdir(parents=True)
    (folder / "models" / "holiday" / "sentinel.txt").write_text("keep me")
    (folder / "notes.txt").write_text("keep me")
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    status, _, err = run("evolve", *TINY, "--generations", "1", "--run-dir", folder)
    assert status == 1
    line = one_line(err)
    assert f"{folder} is not empty" in line and "pick an empty or new folder" in line
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert (folder / "models" / "holiday" / "sentinel.txt").read_text() == "keep me"
    with pytest.raises(evolve.ConfigError, match=r"is not empty .* pick an empty or new folder"):
        evolve.fit("digits", population=2, generations=1, run_dir=folder, progress=False)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


def test_a_refused_start_leaves_a_new_folder_as_it_was(tmp_path):
    folder = tmp_path / "new"
    status, _, err = run("evolve", *TINY, "--objectives", "speed", "--run-dir", folder)
    assert status == 1 and "unknown objective 'speed'" in one_line(err)
    assert not folder.exists()  # no lock, no cli.json, no folder: it can be used as it is


# ---------------------------------------------------------------- 4: two processes at once
def test_a_run_in_use_is_refused_in_process(run_dir):
    before = snapshot(run_dir)
    with RunDirectory.open(run_dir):
        for argv in (["resume", run_dir], ["retrain", run_dir, "--model", "0"]):
            status, _, err = run(*argv)
            assert status == 1
            assert one_line(err).endswith(
                f"{run_dir} is in use by process {os.getpid()}; wait for it to finish or stop it"
            )
        status, out, err = run("report", run_dir)  # reads; leaves the plots to the holder
        assert status == 0 and f"plots not redrawn: {run_dir} is in use by process" in out
    assert snapshot(run_dir) == before


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _cli(*argv, cwd: Path) -> subprocess.Popen:
    """The real ``mutnas`` command in a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-m", "evolve.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=cwd,
    )


def test_two_resumes_at_once_the_second_exits_naming_the_first(run_dir, tmp_path):
    first = _cli("resume", run_dir, "--generations", "40", "--quiet", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while (run_dir / ".lock").read_text().strip() != str(first.pid):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first resume never took the lock"
            time.sleep(0.05)
        second = _cli("resume", run_dir, "--generations", "40", "--quiet", cwd=tmp_path)
        _, err = second.communicate(timeout=120)
        assert first.poll() is None, "the first resume ended before the second was refused"
        assert second.returncode == 1
        assert one_line(err) == (
            f"mutnas resume: {run_dir} is in use by process {first.pid}; "
            f"wait for it to finish or stop it"
        )
    finally:
        first.terminate()  # SIGTERM: a kill mid-generation, as a user's Ctrl-C or a scheduler
        first.communicate(timeout=60)
    # the killed run resumes, and its log holds every candidate once
    status, _, err = run("resume", run_dir, "--generations", "3", "--quiet")
    assert status == 0, err
    ids = [json.loads(line)["id"] for line in (run_dir / "candidates.jsonl").open()]
    assert len(ids) == len(set(ids))
    status, out, _ = run("report", run_dir)
    assert f"{len(ids)} candidates" in out


# ---------------------------------------------------------------- 5: files that disagree
@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    """Another finished run (another seed, another run id)."""
    folder = tmp_path_factory.mktemp("other") / "run"
    status, _, err = run("evolve", *TINY, "--generations", "1", "--seed", "1", "--run-dir", folder)
    assert status == 0, err
    return folder


def _first_model(run: Path) -> Path:
    return run / "models" / sorted(os.listdir(run / "models"))[0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r, o: (r / "candidates.jsonl").unlink(), "the log is missing"),
        (
            lambda r, o: os.truncate(r / "candidates.jsonl", r.joinpath("candidates.jsonl").stat().st_size - 5),
            "not at a line end",
        ),
        (lambda r, o: shutil.copy(o / "state.json", r / "state.json"), "(run ids)"),
        (lambda r, o: shutil.copy(o / "candidates.jsonl", r / "candidates.jsonl"), "candidates.jsonl"),
        (lambda r, o: shutil.rmtree(_first_model(r)), "no model.json"),
        (lambda r, o: shutil.copytree(_first_model(o), r / "models" / "999"),
         "which the run did not record writing"),
    ],
    ids=["log-deleted", "log-cut-mid-line", "state-of-another-run", "log-of-another-run",
         "model-missing", "models-of-another-run"],
)  # fmt: skip
def test_resume_refuses_files_that_disagree_and_changes_nothing(
    run_dir, other_run, damage, message
):
    damage(run_dir, other_run)
    before = snapshot(run_dir)
    status, _, err = run("resume", run_dir, "--generations", "3", "--quiet")
    assert status == 1
    line = one_line(err)
    assert message in line and ("nothing was changed" in line or "not files of" in line), line
    assert snapshot(run_dir) == before


def test_duplicated_log_lines_are_refused_not_miscounted(run_dir):
    log = run_dir / "candidates.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines + lines))  # a second process appended the same candidates
    edit_json(run_dir / "state.json", lambda s: s.update(log_offset=log.stat().st_size))
    status, _, err = run("report", run_dir)
    assert status == 1 and "candidates.jsonl and state.json" in one_line(err)


# ---------------------------------------------------------------- 7: unbounded numbers
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["retrain", "runs/x", "--model", "0", "--depth", "100000"],
         "argument --depth: expected an integer from 0 to 32, got '100000'"),
        (["retrain", "runs/x", "--model", "0", "--width", "1000"],
         "argument --width: expected a number from 0 to 16, got '1000'"),
        (["retrain", "runs/x", "--model", "0", "--seed", str(2**64)],
         "argument --seed: expected an integer from 0 to 4294967295"),
        (["evolve", "--seed", str(2**64)], "argument --seed: expected an integer from 0 to"),
        (["calibrate", "--repeats", "1000000"],
         "argument --repeats: expected an integer from 1 to 100, got 1000000"),
        (["calibrate", "--min-window-s", "nan"], "argument --min-window-s: expected a number"),
    ],
)  # fmt: skip
def test_numeric_flags_are_bounded(argv, message, tmp_path):
    status, _, err = run(*argv)
    assert status == 2
    assert message in one_line(err)


# ---------------------------------------------------------------- 9: booleans are not numbers
@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("population = true", "population: expected an integer > 0, got True"),
        ("seed = false", "seed: expected an integer from 0 to 4294967295, got False"),
        ("epochs = true", "epochs: expected a number > 0, got True"),
        ("workers = true", "workers: expected an integer, got True"),
        ("async = 1", "async must be true or false, got 1"),
        ("dataset = 5", "dataset: expected a string, got 5"),
    ],
)
def test_toml_booleans_do_not_pass_as_numbers(tmp_path, toml, message):
    config = tmp_path / "search.toml"
    config.write_text(toml + "\n")
    status, _, err = run("evolve", "--config", config, "--run-dir", tmp_path / "run")
    assert status == 1
    assert message in one_line(err)
    assert not (tmp_path / "run").exists()


def test_cli_json_booleans_do_not_pass_as_numbers(run_dir):
    edit_json(run_dir / "cli.json", lambda o: o.update(population=True))
    before = snapshot(run_dir)
    status, _, err = run("resume", run_dir, "--generations", "3")
    assert status == 1
    assert one_line(err).endswith("cli.json: population: expected an integer > 0, got True")
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------- 10: one line, not a traceback
def _set(key, value):
    return lambda data: data.__setitem__(key, value)


@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("state.json", lambda s: s.pop("next_id"), "state.json: next_id is missing"),
        ("state.json", _set("generation", "2"), "generation must be a non-negative integer"),
        ("state.json", _set("generation", True), "generation must be a non-negative integer"),
        ("state.json", _set("rng", {"bit_generator": "PCG64"}), "rng.state is missing"),
        ("state.json", lambda s: s["rng"]["state"].update(state=-1), "rng.state.state must be"),
        ("state.json", _set("history", "x"), "history must be a list"),
        ("state.json", lambda s: s["archive"][0].update(hparams={"optimizer": 3}), "archive[0].hparams.optimizer"),
        ("state.json", _set("log_offset", 1), "not at a line end"),
        ("state.json", lambda s: s.clear(), "has version None, expected 2"),
        ("cli.json", _set("seed", "x"), "cli.json: seed: expected an integer from 0 to"),
        ("cli.json", _set("dataset", ["digits"]), "cli.json: dataset: expected a string"),
        ("cli.json", _set("evaluator", "gpu"), "cli.json: evaluator must be one of"),
        ("cli.json", _set("frobnicate", 1), "cli.json: unknown option 'frobnicate'"),
        ("config.json", _set("seed", -1), "config.json: seed must be a non-negative integer"),
        ("config.json", lambda c: c["data"].pop("task"), "config.json: data.task is missing"),
        ("config.json", _set("run_id", "../../etc"), "run_id must be 32 hexadecimal digits"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["report", "resume"])
def test_malformed_run_files_are_one_line(run_dir, name, change, message, command):
    edit_json(run_dir / name, change)
    before = snapshot(run_dir)
    status, _, err = (
        run(command, run_dir, "--quiet") if command == "resume" else run(command, run_dir)
    )
    assert status == 1
    assert message in one_line(err)
    assert snapshot(run_dir) == before


def test_a_garbage_log_line_names_the_file_and_line(run_dir):
    log = run_dir / "candidates.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    lines[1] = b"\x00\xffnot json\n".ljust(len(lines[1]), b" ")[:-1] + b"\n"
    log.write_bytes(b"".join(lines))
    before = snapshot(run_dir)
    for argv in (["report", run_dir], ["resume", run_dir, "--quiet"]):
        status, _, err = run(*argv)
        assert status == 1
        assert f"{log} line 2 is not a JSON record" in one_line(err)
    assert snapshot(run_dir) == before


def test_calibrate_bad_flag_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "evolve.cli", "calibrate", "--bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "mutnas calibrate: unrecognized arguments: --bogus (see mutnas calibrate --help)"
    )


@pytest.mark.parametrize("name", ["config.json", "state.json", "cli.json", "candidates.jsonl"])
@pytest.mark.parametrize("command", ["report", "resume"])
def test_a_run_file_linked_to_a_device_is_refused_unread(run_dir, capped, name, command):
    """A run file that is a link to /dev/zero (as for model.json) is refused before any
    byte is read; reading it used to raise MemoryError or take the machine's memory."""
    (run_dir / name).unlink()
    (run_dir / name).symlink_to("/dev/zero")
    before = snapshot(run_dir)
    code = f"""
        import io
        from evolve.cli import main
        err = io.StringIO()
        status = main([{command!r}, {str(run_dir)!r}], stdout=io.StringIO(), stderr=err)
        print(status, err.getvalue().strip())
        """
    done = capped(code, margin_mib=256, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    status, _, message = done.stdout.strip().partition(" ")
    assert status == "1" and "\n" not in message, done.stdout
    assert f"{name} is not a regular file" in message, message
    assert snapshot(run_dir) == before
