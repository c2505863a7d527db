"""The files of a run directory, read back and checked before anything trusts them.

A run directory may be damaged (a file deleted, a disk full) or come from someone else
(``state.json`` or ``models/`` copied from another run, a crafted file). Everything read
here is checked against the shape the library writes (keys, types, the random
generator's state), and the files against each other: one run id in ``config.json``,
``state.json``, ``cli.json`` and every log line; the checkpoint's log offset landing on a
line boundary after as many candidates as the state counts; a model folder for every
candidate the state holds; and, for a resume, nothing in ``models/`` the run did not
write. Each refusal is one :class:`~evolve.errors.ConfigError` line naming the file (and
the line or key) and what disagrees.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evolve import checkpoint
from evolve.candidate import STATUSES
from evolve.errors import ConfigError
from evolve.rundir import check_run_id

__all__ = [
    "CONFIG_VERSION",
    "STATE_VERSION",
    "Checkpoint",
    "check",
    "mismatch_error",
    "read_checkpoint",
    "read_config",
    "read_log",
]

#: Version of ``config.json`` and of ``state.json`` (2: run ids and the model record).
CONFIG_VERSION = STATE_VERSION = 2

RECORD = {
    "id": int,
    "parents": [int],
    "generation": int,
    "mutations": [str],
    "hparams": {"optimizer": str, "lr": float, "batch_size": int, "weight_decay": float},
    "status": STATUSES,
    "reason": (None, str),
    "scores": {"*": float},
    "train_steps": int,
    "train_seconds": float,
    "n_parameters": (None, int),
    "sizes": {"*": int},
}
HISTORY = {
    "generation": int,
    "n_candidates": int,
    "n_ok": int,
    "n_failed": int,
    "n_culled": int,
    "best": {"*": float},
    "median": {"*": float},
    "fitness": (None, float),
    "hypervolume": float,
    "front_size": int,
    "population": [int],
}
STATE = {
    "version": (STATE_VERSION,),
    "generation": int,
    "n_evaluations": int,
    "next_id": int,
    "rng": {
        "bit_generator": ("PCG64",),
        "state": {"state": int, "inc": int},
        "has_uint32": int,
        "uinteger": int,
    },
    "elapsed_s": float,
    "history": [HISTORY],
    "population": [RECORD],
    "archive": [RECORD],
    "scale": {"ideal": [float], "reference": [float]},
    "log_offset": int,
    "n_logged": int,
    "models": [int],
    "seed_model": bool,
}
CONFIG = {
    "version": (CONFIG_VERSION,),
    "seed": int,
    "device": str,
    "data": {
        "dataset": (None, {"name": str, "seed": int, "valid_fraction": (None, float)}),
        "fingerprint": str,
        "task": ("classification", "regression"),
        "n_train": int,
        "n_valid": int,
        "input_shape": [int],
        "n_outputs": int,
        "valid_fraction": (None, float),
    },
    "objectives": [object],
    "weights": (None, [float]),
    "training": {"*": object},
    "algorithm": object,
}


def _what(schema: Any) -> str:
    if schema is int:
        return "a non-negative integer"
    if schema is float:
        return "a number"
    if schema in (str, bool):
        return {str: "a string", bool: "true or false"}[schema]
    if isinstance(schema, tuple):
        return " or ".join(_what_option(s) for s in schema)
    if isinstance(schema, list):
        return "a list"
    return "an object"


def _what_option(option: Any) -> str:
    if option is None:
        return "null"
    return _what(option) if isinstance(option, type | list | dict) else json.dumps(option)


def _fits(value: Any, schema: Any) -> bool:
    if schema is object:
        return True
    if schema is int:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if schema is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if schema in (str, bool):
        return isinstance(value, schema)
    if isinstance(schema, tuple):
        return any(_fits_option(value, s) for s in schema)
    return isinstance(value, list if isinstance(schema, list) else dict)


def _fits_option(value: Any, option: Any) -> bool:
    if isinstance(option, type | list | dict):
        return _fits(value, option)
    return value == option and type(value) is type(option)  # a literal: "PCG64", 2, None


def check(value: Any, schema: Any, where: str, key: str = "") -> None:
    """Check parsed JSON against a schema of this module; one-line ``ConfigError`` if not.

    Example:
        >>> check({"id": True}, {"id": int}, "runs/x/state.json")
        Traceback (most recent call last):
        evolve.errors.ConfigError: runs/x/state.json: id must be a non-negative integer, got true
    """
    if not _fits(value, schema):
        shown = json.dumps(value)[:40] if _jsonable(value) else repr(value)[:40]
        raise ConfigError(f"{where}: {key or 'the file'} must be {_what(schema)}, got {shown}")
    if isinstance(schema, tuple):
        for option in schema:
            if isinstance(option, list | dict) and _fits(value, option):
                check(value, option, where, key)
    elif isinstance(schema, list):
        for i, item in enumerate(value):
            check(item, schema[0], where, f"{key}[{i}]")
    elif isinstance(schema, dict):
        if set(schema) == {"*"}:
            for k, v in value.items():
                check(v, schema["*"], where, f"{key}.{k}" if key else k)
            return
        for k, sub in schema.items():
            if k not in value:
                raise ConfigError(f"{where}: {f'{key}.' if key else ''}{k} is missing")
            check(value[k], sub, where, f"{key}.{k}" if key else k)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def read_config(run_dir: Path) -> dict:
    """``config.json``, checked (its components are checked when they are built)."""
    path = Path(run_dir) / "config.json"
    config = _read_versioned(path, CONFIG_VERSION, CONFIG)
    check_run_id(config.get("run_id"), str(path))
    return config


def _read_versioned(path: Path, version: int, schema) -> dict:
    """A run file of this evolve's ``version``, checked against its ``schema``."""
    data = checkpoint.read_json(path)
    if isinstance(data, dict) and data.get("version") != version:
        raise ConfigError(
            f"{path} has version {data.get('version')!r:.20}, expected {version} "
            f"(written by another version of evolve); start a new run with this one"
        )
    check(data, schema, str(path))
    return data


@dataclass
class Checkpoint:
    """A run's checked ``state.json`` and the log records it covers (run ids removed)."""

    state: dict
    records: list[dict]


def read_checkpoint(
    run_dir: Path, run_id: str, *, pending: set[int] = frozenset(), strict: bool = True
) -> Checkpoint:
    """Read and cross-check ``state.json``, ``candidates.jsonl``, ``models/`` (and
    ``cli.json``) against the run ``run_id``.

    Args:
        run_dir: the run directory.
        run_id: the run id of its ``config.json``.
        pending: model ids of the pending note (:meth:`RunDirectory.pending`).
        strict: also refuse entries of ``models/`` the run did not record (for a resume,
            under the lock; a reader of a running search passes ``False``).
    """
    run_dir = Path(run_dir)
    state = _read_state(run_dir / "state.json", run_id)
    records = read_log(run_dir / "candidates.jsonl", run_id, state["log_offset"], state)
    _check_models(run_dir, state, pending, strict)
    cli = run_dir / "cli.json"
    if strict and cli.exists():
        options = checkpoint.read_json(cli)
        found = options.get("run_id") if isinstance(options, dict) else None
        if check_run_id(found, str(cli)) != run_id:
            raise mismatch_error(cli, run_dir / "config.json", "run ids")
    return Checkpoint(state, records)


def mismatch_error(a: Path, b: Path, what: str) -> ConfigError:
    """The error for two files of a run directory that do not belong together."""
    return ConfigError(
        f"{a.name} and {b.name} in {a.parent} disagree ({what}): they are not files of "
        f"one run; nothing was changed"
    )


def _read_state(path: Path, run_id: str) -> dict:
    state = _read_versioned(path, STATE_VERSION, STATE)
    if check_run_id(state.get("run_id"), str(path)) != run_id:
        raise mismatch_error(path, path.parent / "config.json", "run ids")
    try:
        np.random.Generator(np.random.PCG64()).bit_generator.state = state["rng"]
    except (ValueError, TypeError, KeyError, OverflowError) as err:
        raise ConfigError(f"{path}: rng is not a PCG64 generator state ({err})") from None
    ids = [r["id"] for r in state["population"] + state["archive"]]
    problems = [
        (len(state["history"]) != state["generation"], "history has one record per generation"),
        (any(i >= state["next_id"] for i in ids), "candidate ids are below next_id"),
        (not set(ids) <= set(state["models"]), "models records every candidate's folder"),
        (len(state["scale"]["ideal"]) != len(state["scale"]["reference"]), "scale is square"),
        (not math.isfinite(state["elapsed_s"]), "elapsed_s is finite"),
    ]
    for broken, expected in problems:
        if broken:
            raise ConfigError(f"{path} is inconsistent (expected: {expected}); nothing was changed")
    return state


def read_log(path: Path, run_id: str, end: int, state: dict | None = None) -> list[dict]:
    """The records of the log's first ``end`` bytes, each checked, run ids removed.

    With ``state``, the records must be as many as ``state["n_logged"]``, with distinct ids
    below ``state["next_id"]``.
    """
    try:
        whole = checkpoint.read_bytes(path)
        data, size = whole[:end], len(whole)
    except FileNotFoundError:
        data, size = b"", None
    if size is None and end:
        raise mismatch_error(path, path.parent / "state.json", "the log is missing")
    if len(data) < end or (end and not data.endswith(b"\n")):
        what = f"the checkpoint ends at byte {end}, not at a line end of the {size}-byte log"
        raise mismatch_error(path, path.parent / "state.json", what)
    lines = data.split(b"\n")[:-1]
    records = [_record(line, path, n, run_id) for n, line in enumerate(lines, 1)]
    if state is not None:
        ids = [r["id"] for r in records]
        if len(ids) != state["n_logged"] or len(set(ids)) != len(ids):
            what = f"{len(ids)} log lines, {len(set(ids))} ids, {state['n_logged']} in the state"
            raise mismatch_error(path, path.parent / "state.json", what)
        if ids and max(ids) >= state["next_id"]:
            raise mismatch_error(path, path.parent / "state.json", "ids beyond next_id")
    return records


def _record(line: bytes, path: Path, number: int, run_id: str) -> dict:
    where = f"{path} line {number}"
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ConfigError(f"{where} is not a JSON record: {line[:40]!r}") from None
    check(record, RECORD, where)
    if record.get("run_id") != run_id:
        raise mismatch_error(path, path.parent / "config.json", f"run id of line {number}")
    return {k: v for k, v in record.items() if k != "run_id"}


def _check_models(run_dir: Path, state: dict, pending: set[int], strict: bool) -> None:
    models = run_dir / "models"
    if models.is_symlink() or (run_dir / "seed_model").is_symlink():
        raise ConfigError(f"{models} or seed_model is a symbolic link; a run writes folders")
    for record in state["population"] + state["archive"]:
        folder = models / str(record["id"])
        if not (folder / "model.json").is_file():
            raise mismatch_error(run_dir / "state.json", folder, f"no model.json in {folder}")
    if (run_dir / "seed_model").exists() != state["seed_model"]:
        raise mismatch_error(run_dir / "state.json", run_dir / "seed_model", "seed model")
    if strict and models.is_dir():
        ours = {str(i) for i in set(state["models"]) | pending}
        foreign = [
            p.name
            for p in models.iterdir()
            if p.name not in ours and not checkpoint.is_temporary(p.name)
        ]
        if foreign:
            raise ConfigError(
                f"{models} holds {', '.join(sorted(foreign)[:3])}, which the run did not "
                f"record writing (state.json): not files of this run; nothing was changed"
            )
