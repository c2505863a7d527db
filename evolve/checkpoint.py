"""Atomic checkpoints of a run directory: models, state, config.

Layout::

    run_dir/config.json        resolved configuration (written once)
    run_dir/state.json         the search state after the last completed generation
    run_dir/models/<id>/       model files (mutnas_torch.io: safetensors + JSON), one per
                               candidate in the population or the Pareto archive
    run_dir/candidates.jsonl   one line per candidate
    run_dir/seed_model/        the user's starting model, if any

Every file is written to a temporary name and renamed into place, and ``state.json`` is
written last: a run killed at any moment resumes from the last complete generation.
Model files of candidates no longer referenced are deleted after ``state.json`` moved on.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evolve.errors import ConfigError
from mutnas_torch import io as model_io

__all__ = ["load_model", "prune_models", "read_json", "save_model", "write_json"]


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and an atomic rename (synced first)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it in the error when it is missing or corrupt."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path} does not exist; is this a run directory of evolve.fit?") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is corrupt ({err}); the run cannot be resumed from it") from err


def save_model(model, folder: Path) -> None:
    """Save ``model`` into ``folder`` atomically (a temporary folder renamed into place)."""
    if folder.exists():
        return
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        model_io.save(model, tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model(folder: Path, *, growth: str = "exact"):
    """Load a model saved by :func:`save_model` (on the CPU, eval mode)."""
    mm = model_io.load(folder)
    mm.growth = growth
    return mm.eval()


def prune_models(models_dir: Path, keep: Iterable[int]) -> None:
    """Delete model folders (and stale temporary folders) of candidates not in ``keep``."""
    wanted = {str(k) for k in keep}
    if not models_dir.exists():
        return
    for entry in models_dir.iterdir():
        if entry.name not in wanted:
            shutil.rmtree(entry, ignore_errors=True)
