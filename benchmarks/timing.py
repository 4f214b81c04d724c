"""The one timing rule every benchmark here uses: warm up, then the median of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(step: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``step()`` in milliseconds, after ``warmup`` untimed calls
    (the first calls allocate buffers and start BLAS threads)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
