"""Shared helpers for the attack tests: run a payload in a subprocess under a memory cap.

Every test in this folder writes a crafted file into ``tmp_path``, hands it to the library
and asserts two things: the refusal (error type and a one-line message naming the cause)
and the absence of side effects (a marker file the payload would create, victim folders,
memory). Memory-amplification attempts run in a child process whose address space is
capped at what it uses after the imports plus a margin, so an allocation of gigabytes
fails there instead of taking this machine's memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_PRELUDE = """
import resource, sys
import torch, numpy, mutnas, mutnas_torch, evolve, evolve.cli
def _vm_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1])
_cap = _vm_kib() * 1024 + {margin_mib} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (_cap, _cap))
"""


def run_capped(code: str, *, margin_mib: int = 512, cwd: Path | None = None, timeout: int = 120):
    """Run ``code`` in a fresh interpreter whose address space may grow ``margin_mib`` only.

    The library is imported before the cap is set, so the margin is what the payload may
    allocate. Returns the ``CompletedProcess`` (text output captured).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    script = _PRELUDE.format(margin_mib=margin_mib) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def capped():
    """``capped(code, margin_mib=512)``: run ``code`` in a subprocess under a memory cap."""
    return run_capped


def one_line(message: str) -> str:
    """Assert that an error message is a single line, and return it."""
    assert "\n" not in message.strip(), f"not one line: {message!r}"
    return message.strip()
