"""A :class:`~evolve.GeneticAlgorithm`'s run directory: start, checkpoint, resume.

A checkpoint, after every generation, goes in this order, so that a kill at any moment
leaves a run that resumes exactly from its last complete generation and no file the run
cannot account for:

1. note the model folders it will write and delete (``.pending.json``);
2. write the new candidates' model folders;
3. write ``state.json`` (the commit: it records the model folders it needs, the log
   offset and the number of log lines);
4. delete the model folders of candidates that left the population and the archive;
5. drop the note.

A resume first checks every file (:func:`evolve.runfiles.read_checkpoint`) and loads the
models; only then does it change anything: it deletes the folders an interrupted
checkpoint noted but did not record, its temporary files, and the log lines after the
checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from evolve import checkpoint, runfiles
from evolve.candidate import Candidate
from evolve.errors import ConfigError
from evolve.logs import CandidateLog
from evolve.population import HypervolumeScale
from evolve.rundir import RunDirectory

__all__ = ["open_run", "save_state"]

log = logging.getLogger(__name__)


def open_run(algorithm, run_dir: str | Path | RunDirectory, resume: bool) -> None:
    """Open (or take) ``run_dir`` for ``algorithm``: start a new run there, or resume it.

    Raises:
        ConfigError: a new run's folder is not empty, or a resumed run's files are
            malformed or disagree (nothing is changed then).
        RunInUseError: another process holds the run.
    """
    if isinstance(run_dir, RunDirectory):
        run, algorithm._owns_run = run_dir, False
    else:
        run = RunDirectory.open(run_dir) if resume else RunDirectory.create(run_dir)
        algorithm._owns_run = True
    algorithm.run_directory, algorithm.run_dir = run, run.path
    try:
        if resume:
            _resume(algorithm, run)
        elif run.checkpointed:
            raise ConfigError(f"{run.path} already holds a run; continue it with evolve.resume")
        else:
            _start(algorithm, run)
    except BaseException:
        algorithm.close()
        raise


def _start(algorithm, run: RunDirectory) -> None:
    run.started = True
    algorithm._log = CandidateLog(run.wrote(run.path / "candidates.jsonl"), run.run_id)
    if algorithm.seed_model is not None:
        checkpoint.save_model(algorithm.seed_model, run.wrote(run.path / "seed_model"))


def save_state(algorithm) -> None:
    """Checkpoint ``algorithm`` into its run directory (after a generation)."""
    run: RunDirectory = algorithm.run_directory
    models = run.path / "models"
    if not models.exists():
        models.mkdir()
        run.wrote(models)
    keep = {c.id: c for c in algorithm.population + algorithm.archive}
    new = [cid for cid in keep if cid not in algorithm._saved_models]
    stale = sorted(algorithm._saved_models - set(keep))
    if new or stale:
        run.note_pending(write=new, delete=stale)
    for cid in new:
        checkpoint.save_model(keep[cid].model, models / str(cid))
    state = {
        "version": runfiles.STATE_VERSION,
        "generation": algorithm.generation,
        "n_evaluations": algorithm.n_evaluations,
        "next_id": algorithm.next_id,
        "rng": algorithm.rng.bit_generator.state,
        "elapsed_s": algorithm.elapsed_s,
        "history": algorithm.history,
        "population": [c.record() for c in algorithm.population],
        "archive": [c.record() for c in algorithm.archive],
        "scale": algorithm.scale.to_dict(),
        "log_offset": algorithm._log.offset(),
        "n_logged": len(algorithm._logged),
        "models": sorted(keep),
        "seed_model": algorithm.seed_model is not None,
    }
    run.write_json("state.json", state)
    checkpoint.remove_models(models, stale)
    run.clear_pending()
    algorithm._saved_models = set(keep)


def _resume(algorithm, run: RunDirectory) -> None:
    found = runfiles.read_checkpoint(run.path, run.run_id, pending=run.pending())
    state = found.state
    n_objectives = len(algorithm.problem.objectives.names)
    if len(state["scale"]["ideal"]) != n_objectives:
        raise ConfigError(
            f"state.json and config.json in {run.path} disagree (the scale has "
            f"{len(state['scale']['ideal'])} objectives, the config {n_objectives}): they "
            f"are not files of one run; nothing was changed"
        )
    loaded = _load_candidates(algorithm, run.path, state)
    if state["seed_model"]:
        algorithm.seed_model = checkpoint.load_model(
            run.path / "seed_model", growth=algorithm.growth
        )
    # every check passed and every model loaded: from here on, files change
    run.recover(set(state["models"]))
    algorithm._log = CandidateLog(run.path / "candidates.jsonl", run.run_id)
    algorithm._log.truncate(state["log_offset"])
    algorithm.population = [loaded[r["id"]] for r in state["population"]]
    algorithm.archive = [loaded[r["id"]] for r in state["archive"]]
    algorithm.generation, algorithm.n_evaluations = state["generation"], state["n_evaluations"]
    algorithm.next_id, algorithm.history = state["next_id"], state["history"]
    algorithm.rng.bit_generator.state = state["rng"]
    algorithm.scale = HypervolumeScale.from_dict(state["scale"])
    algorithm._elapsed_before = state["elapsed_s"]
    algorithm._saved_models = set(state["models"])
    algorithm.records = found.records
    algorithm._logged = {r["id"] for r in found.records}
    log.info("resumed %s at generation %d", run.path, algorithm.generation)


def _load_candidates(algorithm, run_dir: Path, state: dict) -> dict[int, Candidate]:
    loaded: dict[int, Candidate] = {}
    for record in state["population"] + state["archive"]:
        if record["id"] in loaded:
            continue
        try:
            candidate = Candidate.from_record(record, None)
        except ConfigError as err:
            raise ConfigError(
                f"{run_dir / 'state.json'}: candidate {record['id']}: {err}"
            ) from None
        folder = run_dir / "models" / str(record["id"])
        candidate.model = checkpoint.load_model(folder, growth=algorithm.growth)
        loaded[record["id"]] = candidate
        algorithm._fingerprints[record["id"]] = candidate.fingerprint()
    return loaded
