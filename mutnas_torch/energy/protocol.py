"""The measurement protocol: warm up, size windows to at least a second, repeat.

Counters tick coarsely (NVML on an H100 every ~100 ms; 13 ms windows varied 200 %,
0.8 s windows 1.3 %), so a single call of a small network is never measured alone:
:func:`measure` runs the function enough times to fill ``min_window_s``, repeats the
window, and divides by the calls. Idle power of the same domains is recorded first
(and cached on the meter), so results carry both total and dynamic energy.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence

from mutnas_torch.energy.meters import EnergyMeter, Measurement

__all__ = ["calls_per_window", "measure", "time_per_call"]


def calls_per_window(fn: Callable[[], object], meter: EnergyMeter, min_window_s: float) -> int:
    """How many calls of ``fn`` fill ``min_window_s`` (timed on a tenth of it).

    Example:
        >>> from mutnas_torch.energy import EstimatedMeter
        >>> calls_per_window(lambda: time.sleep(0.01), EstimatedMeter("cpu"), 0.05) >= 4
        True
    """
    n_calls = 1
    while True:
        meter.synchronize()
        start = time.perf_counter()
        for _ in range(n_calls):
            fn()
        meter.synchronize()
        elapsed = time.perf_counter() - start
        if elapsed >= 0.1 * min_window_s:
            break
        n_calls *= 2
    return max(1, math.ceil(1.05 * min_window_s * n_calls / max(elapsed, 1e-9)))


def time_per_call(
    fn: Callable[[], object],
    *,
    synchronize: Callable[[], None] | None = None,
    min_time_s: float = 0.05,
    repeats: int = 5,
    warmup: int = 2,
) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` timings of at least ``min_time_s``.

    Cheap (no energy counter), for latency objectives and latency-informed predictions.

    Example:
        >>> time_per_call(lambda: time.sleep(0.002), min_time_s=0.01, repeats=2) >= 0.002
        True
    """
    synchronize = synchronize or (lambda: None)
    for _ in range(warmup):
        fn()
    timings = []
    for _ in range(repeats):
        synchronize()
        start, n_calls = time.perf_counter(), 0
        while n_calls == 0 or time.perf_counter() - start < min_time_s:
            fn()
            n_calls += 1
        synchronize()
        timings.append((time.perf_counter() - start) / n_calls)
    return statistics.median(timings)


def _top_up(fn: Callable[[], object], meter: EnergyMeter, batch: int, deadline: float) -> int:
    """More calls until ``deadline``, in case the calls got faster than when sized."""
    calls = 0
    meter.synchronize()
    while time.perf_counter() < deadline:
        for _ in range(batch):
            fn()
        calls += batch
        meter.synchronize()
    return calls


def _per_call(windows: Sequence[tuple[Measurement, int]], idle_w: float | None) -> Measurement:
    totals = [w.total_j / n for w, n in windows]
    mean_total = statistics.fmean(totals)
    spread = (max(totals) - min(totals)) / mean_total if mean_total > 0 else 0.0

    def per_call(field: str) -> float | None:
        if getattr(windows[0][0], field) is None:
            return None
        return statistics.fmean(getattr(w, field) / n for w, n in windows)

    return Measurement(
        time_s=per_call("time_s"),
        gpu_j=per_call("gpu_j"),
        cpu_j=per_call("cpu_j"),
        dram_j=per_call("dram_j"),
        source=windows[0][0].source,
        idle_power_w=idle_w,
        n_calls=round(statistics.fmean(n for _, n in windows)),
        spread=spread,
    )


def measure(
    fn: Callable[[], object],
    meter: EnergyMeter,
    *,
    min_window_s: float = 1.0,
    repeats: int = 3,
    warmup: int = 3,
    idle_s: float = 1.0,
) -> Measurement:
    """Time and energy of one call of ``fn``, by the protocol above.

    Steps: record idle power over ``idle_s`` (once per meter; 0 skips it), call ``fn``
    ``warmup`` times, size a window to at least ``min_window_s``, then measure
    ``repeats`` windows (each between device synchronisations) and average them. With
    a coarsely ticking counter (NVML, every ~100 ms) each window starts and ends on a
    tick while ``fn`` keeps the device busy, and the calls made while waiting for the
    closing tick are counted: that removes the up to 10 % quantisation of 1 s windows.

    Args:
        fn: the work, e.g. ``lambda: model(x)``; its device work is synchronised by
            the meter at window edges.
        meter: any :class:`EnergyMeter`.
        min_window_s: shortest window; keep at least 1 s for NVML and RAPL.
        repeats: windows to average; their spread is reported.
        warmup: untimed calls first (allocator, cuDNN autotuning, caches).
        idle_s: seconds of idle measurement, 0 to skip.

    Returns:
        Per-call :class:`Measurement`: ``n_calls`` per window, ``spread`` across
        windows, ``idle_power_w`` for the dynamic/total split.

    Raises:
        ValueError: a non-positive window or repeat count, or a negative warm-up.

    Example:
        >>> from mutnas_torch.energy import EstimatedMeter
        >>> m = measure(lambda: sum(range(1000)), EstimatedMeter("cpu"), min_window_s=0.02)
        >>> m.source, m.n_calls > 1, m.dynamic_j is not None
        ('estimated', True, True)
    """
    if min_window_s <= 0 or repeats < 1 or warmup < 0 or idle_s < 0:
        raise ValueError(
            f"measure needs min_window_s > 0, repeats >= 1, warmup >= 0 and idle_s >= 0; got "
            f"{min_window_s=}, {repeats=}, {warmup=}, {idle_s=}"
        )
    idle_w = meter.idle_power_w(idle_s) if idle_s > 0 else None
    for _ in range(warmup):
        fn()
    n_calls = calls_per_window(fn, meter, min_window_s)
    batch = max(1, math.ceil(0.005 * n_calls / (1.05 * min_window_s)))  # ~5 ms of calls
    windows = []
    for _ in range(repeats):
        meter.wait_for_tick(fn, batch=batch)  # start on a tick of a coarse counter
        with meter.window() as window:
            start = time.perf_counter()
            for _ in range(n_calls):
                fn()
            extra = _top_up(fn, meter, batch, start + min_window_s)
            extra += meter.wait_for_tick(fn, batch=batch)  # and end on one
        windows.append((window.result, n_calls + extra))
    return _per_call(windows, idle_w)
