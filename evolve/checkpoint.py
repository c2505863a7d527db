"""Atomic checkpoints of a run directory: models, state, config.

Layout::

    run_dir/.lock              the run's lock (holds the holder's process id)
    run_dir/config.json        resolved configuration and the run id (written once)
    run_dir/state.json         the search state after the last completed generation
    run_dir/models/<id>/       model files (mutnas_torch.io: safetensors + JSON), one per
                               candidate in the population or the Pareto archive
    run_dir/candidates.jsonl   one line per candidate, each with the run id
    run_dir/seed_model/        the user's starting model, if any

Every file is written to a temporary name (:func:`temporary_path`) and renamed into place,
and ``state.json`` is written last: a run killed at any moment resumes from the last
complete generation. Only model folders the run recorded writing are ever deleted
(:func:`remove_models`); see :mod:`evolve.rundir`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evolve.errors import ConfigError
from mutnas_torch import io as model_io
from mutnas_torch.errors import MutnasTorchError
from mutnas_torch.io_schema import read_regular

__all__ = [
    "MAX_RUN_FILE_BYTES",
    "is_temporary",
    "load_model",
    "read_bytes",
    "read_json",
    "remove_models",
    "remove_tree",
    "save_model",
    "temporary_path",
    "write_json",
]

#: Largest run file read (``state.json`` grows by about a kilobyte per generation; the
#: candidate log by about a kilobyte per candidate).
MAX_RUN_FILE_BYTES = 2**30
_TEMPORARY = re.compile(r"\.[\w.-]+\.[0-9a-f]{8}\.tmp")


def temporary_path(path: Path) -> Path:
    """A fresh temporary name next to ``path`` (``.state.json.1a2b3c4d.tmp``)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one :func:`temporary_path` makes.

    Example:
        >>> is_temporary(temporary_path(Path("state.json")).name), is_temporary("notes.txt")
        (True, False)
    """
    return _TEMPORARY.fullmatch(name) is not None


def write_json(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and an atomic rename (synced first)."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_bytes(path: Path, cap: int = MAX_RUN_FILE_BYTES) -> bytes:
    """A run file's bytes: a regular file (never a device, FIFO or link to one) of at most
    ``cap`` bytes, checked before anything is read; ``FileNotFoundError`` if missing.

    Example:
        >>> read_bytes(Path("/dev/zero"))
        Traceback (most recent call last):
        evolve.errors.ConfigError: /dev/zero is not a regular file (a device, FIFO or directory); copy the real file there
    """
    try:
        return read_regular(Path(path), cap, cap_home="evolve.checkpoint.MAX_RUN_FILE_BYTES")
    except MutnasTorchError as err:
        raise ConfigError(str(err)) from None


def read_json(path: Path) -> Any:
    """Read a JSON file, naming it in the error when it is missing or corrupt.

    Example:
        >>> read_json(Path("no/such/state.json"))
        Traceback (most recent call last):
        evolve.errors.ConfigError: no/such/state.json does not exist; is this a run directory of evolve.fit?
    """
    try:
        return json.loads(read_bytes(path).decode("utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path} does not exist; is this a run directory of evolve.fit?") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is corrupt ({err}); the run cannot be resumed from it") from err
    except RecursionError:
        raise ConfigError(f"{path} is corrupt (nested too deeply); it is not a run file") from None


def save_model(model, folder: Path) -> None:
    """Save ``model`` into ``folder`` atomically (a temporary folder renamed into place).

    An existing ``folder`` is replaced: callers pass only folders their run wrote.
    """
    tmp = temporary_path(folder)
    try:
        model_io.save(model, tmp)
        if folder.exists():
            remove_tree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_model(folder: Path, *, growth: str = "exact"):
    """Load a model saved by :func:`save_model` (on the CPU, eval mode)."""
    mm = model_io.load(folder)
    mm.growth = growth
    return mm.eval()


def remove_tree(path: Path) -> None:
    """Delete the folder or file ``path`` itself, never what a symbolic link points to.

    Raises:
        ConfigError: ``path`` or its parent folder is a symbolic link.
    """
    path = Path(path)
    if path.is_symlink() or path.parent.is_symlink():
        raise ConfigError(
            f"{path} is or lies under a symbolic link; a run only deletes what it wrote "
            f"itself, so it leaves it alone: remove the link by hand"
        )
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_models(models_dir: Path, ids: Iterable[int]) -> None:
    """Delete the model folders of the candidates ``ids`` (folders the run recorded writing).

    Nothing else in ``models_dir`` is touched.

    Example:
        >>> import tempfile
        >>> models = Path(tempfile.mkdtemp())
        >>> for name in ("3", "4", "notes"):
        ...     (models / name).mkdir()
        >>> remove_models(models, [3, 9])
        >>> sorted(p.name for p in models.iterdir())
        ['4', 'notes']
    """
    for i in ids:
        folder = models_dir / str(int(i))
        if folder.exists() or folder.is_symlink():
            remove_tree(folder)
