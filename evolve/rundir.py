"""A run directory's identity and lock, and the record of what the run wrote there.

A run directory belongs to one run:

- **One run id.** A new run gets a random id (``uuid4().hex``), written into
  ``config.json``, ``state.json``, ``cli.json`` and every line of ``candidates.jsonl``;
  resuming checks that they all carry the same one (:mod:`evolve.runfiles`).
- **One process at a time.** The run holds an exclusive ``flock`` on ``run_dir/.lock``
  for its whole life, with its process id written in the file, so a second search,
  resume or retrain of the run stops with ``runs/x is in use by process N``. The kernel
  releases the lock when the process ends, however it ends (a killed run never blocks
  its resume); on file systems without ``flock`` (some network mounts) the lock fails.
- **Only its own files.** A new run starts only in an empty or new folder. Clean-up
  deletes only what the run recorded writing: model folders named in ``state.json``
  (and in the ``.pending.json`` note written before a checkpoint saves new models), its
  temporary files, and, if it is refused before its search starts, the files it wrote.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
import weakref
from pathlib import Path
from typing import Any

from evolve import checkpoint
from evolve.errors import ConfigError, RunInUseError

__all__ = ["RunDirectory", "RunInUseError", "check_run_id", "new_run_id"]

LOCK_NAME = ".lock"
PENDING_NAME = ".pending.json"
_RUN_ID = re.compile(r"[0-9a-f]{32}")

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def new_run_id() -> str:
    """A fresh run id: 32 hexadecimal digits."""
    return uuid.uuid4().hex


def check_run_id(value: Any, where: str) -> str:
    """``value`` if it is a run id, else a one-line :class:`ConfigError` naming ``where``.

    Example:
        >>> check_run_id("x", "runs/a/state.json")
        Traceback (most recent call last):
        evolve.errors.ConfigError: runs/a/state.json: run_id must be 32 hexadecimal digits, got 'x'
    """
    if not (isinstance(value, str) and _RUN_ID.fullmatch(value)):
        raise ConfigError(f"{where}: run_id must be 32 hexadecimal digits, got {value!r:.40}")
    return value


class _Lock:
    """An exclusive ``flock`` on ``folder/.lock``, released when closed or collected."""

    def __init__(self, folder: Path):
        if fcntl is None:  # pragma: no cover - Windows
            raise ConfigError("run directories need fcntl.flock (Linux, macOS)")
        path = folder / LOCK_NAME
        self.path, self.created = path, not path.exists()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as err:
            raise ConfigError(f"cannot open the lock file {path}: {err.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
                raise ConfigError(f"{path} is not a plain file of its own; remove it by hand")
            _acquire(fd, folder)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._close = weakref.finalize(self, os.close, fd)
        self._fd = fd

    @property
    def alive(self) -> bool:
        return self._close.alive

    def release(self) -> None:
        if self._close.alive:
            os.ftruncate(self._fd, 0)
            self._close()


def _acquire(fd: int, folder: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise ConfigError(f"cannot lock {folder}: {err.strerror}") from None
        text = os.pread(fd, 24, 0).decode("ascii", "replace").strip()
        pid = int(text) if text.isdigit() else None
        holder = f"process {pid}" if pid is not None else "another process"
        raise RunInUseError(
            f"{folder} is in use by {holder}; wait for it to finish or stop it", pid
        ) from None


class RunDirectory:
    """An open run directory: its path, its run id, its lock, what it wrote.

    Use :meth:`create` for a new run and :meth:`open` for an existing one, and
    :meth:`close` (or ``with``) to release the lock.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp()) / "run"
        >>> with RunDirectory.create(folder) as run:
        ...     RunDirectory.create(folder)
        Traceback (most recent call last):
        evolve.errors.RunInUseError: ...run is in use by process ...; wait for it to finish or stop it
    """

    def __init__(self, path: Path, run_id: str, lock: _Lock, *, new: bool):
        self.path, self.run_id, self._lock, self._new = path, run_id, lock, new
        self._written: list[Path] = []
        self._made_dir = False
        #: a search started here (its log exists): its files stay, even before a checkpoint
        self.started = not new
        self.checkpointed = not new

    @classmethod
    def create(cls, path: str | os.PathLike, *, resume_hint: str | None = None) -> RunDirectory:
        """Start a new run in ``path``, a new or empty folder; locked.

        Args:
            path: the folder (made if missing).
            resume_hint: how to continue a run found there, for the message (default
                ``evolve.resume('<path>')``).

        Raises:
            ConfigError: ``path`` holds a run or anything else (one line, nothing touched).
            RunInUseError: another process holds ``path``.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file; pick an empty or new folder for the run")
        _refuse_content(path, resume_hint)  # before anything is created there
        made = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, new_run_id(), _Lock(path), new=True)
        run._made_dir = made
        try:
            _refuse_content(path, resume_hint)  # again under the lock: no race
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def open(cls, path: str | os.PathLike) -> RunDirectory:
        """Open the existing run in ``path``; locked. Nothing is written but ``.lock``.

        Raises:
            ConfigError: ``path`` holds no run (no ``config.json`` and ``state.json``).
            RunInUseError: another process holds ``path``.
        """
        path = Path(path)
        for name in ("config.json", "state.json"):
            if not (path / name).exists():  # anything but a regular file: refused on read
                raise ConfigError(
                    f"{path / name} does not exist; {path} holds no checkpointed run of "
                    f"evolve.fit (a run stopped before its first checkpoint cannot resume)"
                )
        lock = _Lock(path)
        try:
            config = checkpoint.read_json(path / "config.json")
            where = str(path / "config.json")
            if not isinstance(config, dict):
                raise ConfigError(f"{where} must hold a JSON object")
            run_id = check_run_id(config.get("run_id"), where)
        except BaseException:
            lock.release()
            raise
        return cls(path, run_id, lock, new=False)

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r}, run_id={self.run_id!r})"

    def close(self) -> None:
        """Release the lock; a new run whose search never started removes what it wrote."""
        if self.started or not self._lock.alive:
            self._lock.release()
            return
        for path in reversed(self._written):
            if path.exists() or path.is_symlink():
                checkpoint.remove_tree(path)
        self._written.clear()
        if self._lock.created:
            self._lock.path.unlink(missing_ok=True)
        self._lock.release()
        if self._made_dir and not any(self.path.iterdir()):
            self.path.rmdir()

    def wrote(self, path: Path) -> Path:
        """Record that the run wrote ``path`` (removed by :meth:`close` before a checkpoint)."""
        if path not in self._written:
            self._written.append(path)
        return path

    def write_json(self, name: str, data: dict) -> Path:
        """Write ``name`` atomically with the run id added; ``state.json`` marks a checkpoint."""
        path = self.wrote(self.path / name)
        checkpoint.write_json(path, {**data, "run_id": self.run_id})
        if name == "state.json":
            self.checkpointed = True
        return path

    # ------------------------------------------------------------ model bookkeeping
    def note_pending(self, write: list[int], delete: list[int]) -> None:
        """Before a checkpoint: the model folders it is about to write and delete."""
        self.write_json(PENDING_NAME, {"write": sorted(write), "delete": sorted(delete)})

    def clear_pending(self) -> None:
        """After a checkpoint: the note is no longer needed."""
        (self.path / PENDING_NAME).unlink(missing_ok=True)

    def pending(self) -> set[int]:
        """Model ids a checkpoint noted but may not have completed (validated note)."""
        path = self.path / PENDING_NAME
        if not path.exists():
            return set()
        note = checkpoint.read_json(path)
        ids = note.get("write", []) + note.get("delete", []) if isinstance(note, dict) else None
        if (
            not isinstance(note, dict)
            or check_run_id(note.get("run_id"), str(path)) != self.run_id
            or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
        ):
            raise ConfigError(f"{path} is not this run's note of pending model folders")
        return set(ids)

    def recover(self, recorded: set[int]) -> None:
        """On resume, once every check passed: drop model folders of an interrupted
        checkpoint (noted but not recorded in ``state.json``) and temporary files."""
        models = self.path / "models"
        checkpoint.remove_models(models, self.pending() - recorded)
        self.clear_pending()
        for folder in (self.path, models):
            for entry in folder.iterdir() if folder.is_dir() else ():
                if checkpoint.is_temporary(entry.name):
                    checkpoint.remove_tree(entry)


def _refuse_content(path: Path, resume_hint: str | None) -> None:
    """Refuse a folder that is not empty (a lone ``.lock`` of a refused start is empty)."""
    if not path.is_dir():
        return
    names = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)
    if not names:
        return
    hint = resume_hint or f"evolve.resume({str(path)!r})"
    if "state.json" in names:
        raise ConfigError(
            f"{path} already holds a run; continue it with {hint} or choose another run_dir"
        )
    if "config.json" in names:
        raise ConfigError(
            f"{path} holds a run that stopped before its first checkpoint (no state.json), "
            f"so nothing can be resumed: delete the folder or pick another for the run"
        )
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    raise ConfigError(
        f"{path} is not empty ({len(names)} entries: {shown}) and holds no run; pick an "
        f"empty or new folder for the run, nothing there was changed"
    )
