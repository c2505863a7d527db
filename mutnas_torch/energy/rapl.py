"""CPU package and DRAM energy from the Linux powercap (RAPL) sysfs counters.

The counters live under ``/sys/class/powercap/intel-rapl:N[:M]/energy_uj`` (AMD too,
since Linux 5.8), wrap at ``max_energy_range_uj``, are root-only since CVE-2020-8694,
and are usually absent in VMs and containers. Zones nest: ``core`` and ``uncore`` are
inside ``package-N``, and ``psys`` covers the whole SoC, so only packages and ``dram``
are summed.
"""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path
from typing import Any

from mutnas_torch.energy.errors import MeterUnavailableError
from mutnas_torch.energy.meters import EnergyMeter

__all__ = ["RaplMeter"]

_RAPL_DIR = re.compile(r"^intel-rapl:\d+(:\d+)?$")


class _RaplCounter:
    """One wrapping sysfs energy counter, accumulated in microjoules."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "energy_uj"
        self.max_range = int((directory / "max_energy_range_uj").read_text())
        self.last = int(self.path.read_text())
        self.total = 0

    def update(self) -> int:
        now = int(self.path.read_text())
        self.total += now - self.last if now >= self.last else self.max_range - self.last + now
        self.last = now
        return self.total


def _rapl_domains(root: Path) -> tuple[list[Path], list[Path]]:
    """Package and DRAM zone folders; core, uncore and psys are nested or overlapping."""
    packages, drams = [], []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not _RAPL_DIR.match(directory.name) or not (directory / "name").is_file():
            continue
        name = (directory / "name").read_text().strip()
        if name.startswith("package"):
            packages.append(directory)
        elif name == "dram":
            drams.append(directory)
    return packages, drams


class RaplMeter(EnergyMeter):
    """CPU package and DRAM energy from the Linux powercap (RAPL) sysfs counters.

    Sums the ``package-N`` zones into ``cpu_j`` and the ``dram`` zones into ``dram_j``;
    never adds ``core``/``uncore`` (inside a package) or ``psys`` (the whole SoC). A
    background thread reads the counters every ``poll_s`` so windows longer than one
    wrap-around period stay right.

    Args:
        root: the powercap folder (a fake tree in tests).
        poll_s: how often long windows read the counters.

    Raises:
        MeterUnavailableError: no package zone, or its counter is not readable.

    Example:
        >>> try:
        ...     meter = RaplMeter()
        ... except MeterUnavailableError:
        ...     meter = None  # no readable RAPL here (VMs, containers, non-root)
    """

    source = "rapl"

    def __init__(self, root: str | Path = "/sys/class/powercap", *, poll_s: float = 10.0) -> None:
        super().__init__()
        self.root = Path(root)
        self.poll_s = poll_s
        self._packages, self._drams = _rapl_domains(self.root)
        if not self._packages:
            raise MeterUnavailableError(
                f"no RAPL package zone under {self.root} (usual in VMs and containers)"
            )
        try:
            self._counters()
        except PermissionError as error:
            raise MeterUnavailableError(
                f"RAPL counters under {self.root} are root-only (CVE-2020-8694): run as root "
                "or make energy_uj readable"
            ) from error
        except (OSError, ValueError) as error:
            raise MeterUnavailableError(f"RAPL counters unreadable: {error}") from error

    def _counters(self) -> tuple[list[_RaplCounter], list[_RaplCounter]]:
        return [_RaplCounter(d) for d in self._packages], [_RaplCounter(d) for d in self._drams]

    def _begin(self) -> Any:
        packages, drams = self._counters()
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(self.poll_s):
                for counter in packages + drams:
                    with contextlib.suppress(OSError, ValueError):  # retried at the next poll
                        counter.update()

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        return packages, drams, stop, thread

    def _end(self, token: Any, elapsed_s: float) -> tuple[None, float, float | None]:
        packages, drams, stop, thread = token
        stop.set()
        thread.join()
        cpu_j = sum(c.update() for c in packages) / 1e6
        dram_j = sum(c.update() for c in drams) / 1e6 if drams else None
        return None, cpu_j, dram_j
