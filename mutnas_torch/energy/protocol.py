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

__all__ = ["calls_per_window", "measure"]


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


def _mean(values: Sequence[float | None]) -> float | None:
    return None if values[0] is None else statistics.fmean(v or 0.0 for v in values)


def _per_call(windows: Sequence[Measurement], n_calls: int, idle_w: float | None) -> Measurement:
    totals = [w.total_j for w in windows]
    mean_total = statistics.fmean(totals)
    spread = (max(totals) - min(totals)) / mean_total if mean_total > 0 else 0.0

    def per_call(values: Sequence[float | None]) -> float | None:
        mean = _mean(values)
        return None if mean is None else mean / n_calls

    return Measurement(
        time_s=statistics.fmean(w.time_s for w in windows) / n_calls,
        gpu_j=per_call([w.gpu_j for w in windows]),
        cpu_j=per_call([w.cpu_j for w in windows]),
        dram_j=per_call([w.dram_j for w in windows]),
        source=windows[0].source,
        idle_power_w=idle_w,
        n_calls=n_calls,
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
    ``repeats`` windows (each between device synchronisations) and average them.

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
    windows = []
    for _ in range(repeats):
        with meter.window() as window:
            for _ in range(n_calls):
                fn()
        windows.append(window.result)
    return _per_call(windows, n_calls, idle_w)
