"""Energy meters behind one interface: ``with meter.window() as w: ...`` then ``w.result``.

The meters: :class:`~mutnas_torch.energy.nvml.NvmlMeter` (GPU, NVML),
:class:`~mutnas_torch.energy.rapl.RaplMeter` (CPU package + DRAM, sysfs),
:class:`ZeusMeter` (optional ``zeus`` backend) and
:class:`~mutnas_torch.energy.fallback.EstimatedMeter` (time measured, energy estimated);
:func:`~mutnas_torch.energy.fallback.auto_meter` picks the best readable one. The
measurement protocol (warm-up, windows of at least a second, repeats, idle power) is
:func:`~mutnas_torch.energy.protocol.measure`.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from mutnas_torch.energy.errors import EnergyError, MeterUnavailableError

__all__ = [
    "EnergyMeter",
    "Measurement",
    "MeterWindow",
    "PowerPoller",
    "ZeusMeter",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Time and energy of one window (or, from ``measure``, of one call).

    Attributes:
        time_s: wall-clock seconds.
        gpu_j, cpu_j, dram_j: joules per domain; ``None`` where the meter has none.
        source: ``"nvml"``, ``"rapl"``, ``"zeus"`` or ``"estimated"``.
        idle_power_w: power of the same domains at rest, if recorded.
        n_calls: calls of the measured function the figures were divided by.
        spread: (max - min) / mean of the total energy over repeated windows.

    Example:
        >>> m = Measurement(time_s=2.0, gpu_j=300.0, source="nvml", idle_power_w=100.0)
        >>> m.total_j, m.idle_j, m.dynamic_j
        (300.0, 200.0, 100.0)
    """

    time_s: float
    gpu_j: float | None = None
    cpu_j: float | None = None
    dram_j: float | None = None
    source: str = "estimated"
    idle_power_w: float | None = None
    n_calls: int = 1
    spread: float = 0.0

    @property
    def total_j(self) -> float:
        """Energy of every measured domain, idle power included."""
        return sum(j for j in (self.gpu_j, self.cpu_j, self.dram_j) if j is not None)

    @property
    def idle_j(self) -> float | None:
        """What the same domains would have used at rest over ``time_s``."""
        return None if self.idle_power_w is None else self.idle_power_w * self.time_s

    @property
    def dynamic_j(self) -> float | None:
        """Total minus idle energy: what running the work added."""
        idle = self.idle_j
        return None if idle is None else self.total_j - idle

    @property
    def power_w(self) -> float:
        """Average total power over the window."""
        return self.total_j / self.time_s if self.time_s > 0 else 0.0


class MeterWindow:
    """A measuring interval; ``result`` is set when the ``with`` block exits.

    Example:
        >>> from mutnas_torch.energy import EstimatedMeter
        >>> with EstimatedMeter("cpu").window() as w:
        ...     _ = sum(range(1000))
        >>> w.result.source, w.result.time_s > 0
        ('estimated', True)
    """

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter
        self._result: Measurement | None = None
        self._token: Any = None
        self._start = 0.0

    def __enter__(self) -> MeterWindow:
        self.meter.synchronize()
        self._token = self.meter._begin()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.meter.synchronize()
        elapsed = time.perf_counter() - self._start
        gpu_j, cpu_j, dram_j = self.meter._end(self._token, elapsed)
        self._result = Measurement(elapsed, gpu_j, cpu_j, dram_j, self.meter.source)

    @property
    def result(self) -> Measurement:
        """The measurement; raises :class:`EnergyError` while the window is open."""
        if self._result is None:
            raise EnergyError("the meter window is still open: read result after the with block")
        return self._result


class EnergyMeter(abc.ABC):
    """Base class: subclasses write ``_begin`` and ``_end``; ``window()`` does the rest."""

    source: str = "estimated"

    def __init__(self) -> None:
        self._idle_w: float | None = None

    def window(self) -> MeterWindow:
        """A context manager measuring the time and energy of its block."""
        return MeterWindow(self)

    def synchronize(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Wait for queued device work (a no-op except for GPU meters)."""

    def counter_j(self) -> float | None:
        """Raw cumulative energy of a coarsely ticking counter (NVML), else ``None``.

        Meters that return a value here get tick-aligned windows from :func:`measure`.
        """
        return None

    def wait_for_tick(
        self, fn: Callable[[], object] | None = None, *, batch: int = 1, timeout_s: float = 0.5
    ) -> int:
        """Return right after :meth:`counter_j` changes, calling ``fn`` meanwhile.

        With ``fn`` the device stays busy: ``batch`` calls are queued before each
        counter read and synchronised after it. Without a ticking counter, returns 0 at
        once. Returns the number of calls made.

        Example:
            >>> from mutnas_torch.energy import EstimatedMeter
            >>> EstimatedMeter("cpu").wait_for_tick(lambda: None)
            0
        """
        first = self.counter_j()
        if first is None:
            return 0
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < timeout_s:
            if fn is None:
                time.sleep(0.001)
            else:
                for _ in range(batch):
                    fn()
                calls += batch
            value = self.counter_j()
            if fn is not None:
                self.synchronize()
            if value != first:
                break
        return calls

    def idle_power_w(self, duration_s: float = 1.0, *, refresh: bool = False) -> float:
        """Power at rest over ``duration_s`` of sleep (tick-aligned), measured once and cached."""
        if self._idle_w is None or refresh:
            self.synchronize()
            self.wait_for_tick()
            with self.window() as w:
                time.sleep(duration_s)
                self.wait_for_tick()
            self._idle_w = w.result.power_w
        return self._idle_w

    def close(self) -> None:  # noqa: B027 (optional hook, no-op by default)
        """Release the counter's library handles (the meter is unusable afterwards)."""

    def __enter__(self) -> EnergyMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @abc.abstractmethod
    def _begin(self) -> Any:
        """Start reading; return a token handed back to ``_end``."""

    @abc.abstractmethod
    def _end(self, token: Any, elapsed_s: float) -> tuple[float | None, float | None, float | None]:
        """Stop reading; return (gpu_j, cpu_j, dram_j)."""


class PowerPoller:
    """Averages a power reading (watts) sampled on a background thread (trapezoids)."""

    def __init__(self, read_w: Any, interval_s: float) -> None:
        self._read_w = read_w
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._samples = [(time.perf_counter(), read_w())]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._samples.append((time.perf_counter(), self._read_w()))

    def stop(self) -> float:
        """Stop sampling; return the time-weighted mean power in watts."""
        self._stop.set()
        self._thread.join()
        self._samples.append((time.perf_counter(), self._read_w()))
        pairs = list(zip(self._samples, self._samples[1:], strict=False))
        span = self._samples[-1][0] - self._samples[0][0]
        if span <= 0:
            return self._samples[-1][1]
        return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in pairs) / span


# ---------------------------------------------------------------- Zeus


class ZeusMeter(EnergyMeter):
    """Energy from ``zeus.monitor.ZeusMonitor`` (optional: ``pip install zeus``).

    Args:
        gpu_indices: CUDA ordinals to measure (Zeus's default: all visible GPUs).
        cpu_indices: CPU packages to measure (Zeus's default: all, where RAPL is readable).

    Raises:
        MeterUnavailableError: zeus is not installed or finds no device.

    Example:
        >>> try:
        ...     meter = ZeusMeter()
        ... except MeterUnavailableError:
        ...     meter = None  # zeus not installed
    """

    source = "zeus"

    def __init__(
        self, *, gpu_indices: list[int] | None = None, cpu_indices: list[int] | None = None
    ) -> None:
        super().__init__()
        try:
            from zeus.monitor import ZeusMonitor
        except ImportError as error:
            raise MeterUnavailableError("the zeus backend needs: pip install zeus") from error
        try:
            self._monitor = ZeusMonitor(gpu_indices=gpu_indices, cpu_indices=cpu_indices)
        except Exception as error:
            raise MeterUnavailableError(f"zeus found no device to measure: {error}") from error
        self._n_windows = 0

    def synchronize(self) -> None:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def _begin(self) -> Any:
        self._n_windows += 1
        name = f"mutnas-{id(self)}-{self._n_windows}"
        self._monitor.begin_window(name, sync_execution=False)
        return name

    def _end(self, token: Any, elapsed_s: float) -> tuple[float | None, ...]:
        result = self._monitor.end_window(token, sync_execution=False)

        def total(values: dict[int, float] | None) -> float | None:
            return None if not values else float(sum(values.values()))

        return (
            total(result.gpu_energy),
            total(getattr(result, "cpu_energy", None)),
            total(getattr(result, "dram_energy", None)),
        )
