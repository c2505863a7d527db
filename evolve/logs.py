"""The candidate log (one JSON line per candidate) and the one-line generation summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["CandidateLog", "generation_line"]


class CandidateLog:
    """Append-only JSONL file; :meth:`truncate` rolls it back to a checkpoint's offset.

    With a ``run_id``, every line carries it (``"run_id"``), so a line from another run is
    recognised (:func:`evolve.runfiles.read_log`); :meth:`read` leaves it out.

    Example:
        >>> import tempfile, pathlib
        >>> log = CandidateLog(pathlib.Path(tempfile.mkdtemp()) / "candidates.jsonl", "ab" * 16)
        >>> log.append({"id": 0, "status": "ok"})
        >>> mark = log.offset()
        >>> log.append({"id": 1, "status": "failed"})
        >>> log.truncate(mark)
        >>> [r["id"] for r in log.read()], '"run_id": "abab' in log.path.read_text()
        ([0], True)
    """

    def __init__(self, path: str | os.PathLike, run_id: str | None = None):
        self.path = Path(path)
        self.run_id = run_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)

    def append(self, record: dict) -> None:
        """Write one record as a line (flushed and synced, so a crash keeps whole lines)."""
        if self.run_id is not None:
            record = {**record, "run_id": self.run_id}
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def offset(self) -> int:
        """Current size in bytes."""
        return self.path.stat().st_size

    def truncate(self, offset: int) -> None:
        """Drop everything after ``offset`` bytes (lines of candidates a crash lost)."""
        with open(self.path, "r+b") as f:
            f.truncate(offset)

    def read(self) -> list[dict]:
        """All records (without the run id)."""
        with open(self.path, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
        return [{k: v for k, v in r.items() if k != "run_id"} for r in records]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def generation_line(record: dict, progress: float) -> str:
    """One log line for a history record.

    Example:
        >>> generation_line({"generation": 2, "n_ok": 7, "n_candidates": 8, "n_failed": 1,
        ...                  "n_culled": 0, "best": {"accuracy": 0.91}, "hypervolume": 0.5,
        ...                  "front_size": 3, "seconds": 12.0}, 0.3)
        'gen 2 (30%): 7/8 ok, 1 failed, 0 culled | best per objective: accuracy=0.91 | front 3, hv 0.5 | 12.0 s'

    Each objective's best is its own candidate's (the most accurate model is rarely the
    one with the fewest FLOPs); the front holds the trade-offs.
    """
    best = ", ".join(f"{k}={_fmt(v)}" for k, v in record.get("best", {}).items())
    return (
        f"gen {record['generation']} ({progress:.0%}): {record['n_ok']}/{record['n_candidates']} ok, "
        f"{record['n_failed']} failed, {record['n_culled']} culled | best per objective: {best} | "
        f"front {record['front_size']}, hv {_fmt(record['hypervolume'])} | "
        f"{record.get('seconds', 0.0):.1f} s"
    )
