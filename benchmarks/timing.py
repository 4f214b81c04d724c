"""The one timing rule every benchmark here uses: warm up, then the median of repeats.

Device synchronisation lives here and nowhere else. GPU libraries (CuPy, PyTorch on
CUDA) return from a call as soon as the work is *queued*, so a timer read right after
the call measures the launch, not the work. `synchronizer` gives the function that
waits for the device (the engine's backend's `synchronize`, or PyTorch's); `measure`
calls it before starting the clock (so that earlier queued work is not billed to this
call) and before stopping it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import tinygrad_ee as tg

Sync = Callable[[], None]


def no_sync() -> None:
    """The CPU's synchronisation: its work is done when the call returns."""


def synchronizer(device: str, library: str = "engine") -> Sync:
    """The function that waits until work queued on ``device`` has finished.

    ``library`` is whose queue to wait for: ``"engine"`` (the backend's
    ``synchronize``) or ``"torch"`` (``torch.cuda.synchronize(device)``). CPU devices
    need no waiting. Raises `tinygrad_ee.DeviceError` for a CUDA device the engine
    cannot use.
    """
    if library not in ("engine", "torch"):
        raise ValueError(f"library must be 'engine' or 'torch', got {library!r}")
    if not device.startswith("cuda"):
        return no_sync
    if library == "engine":
        return tg.get_backend(device).synchronize
    torch = importlib.import_module("torch")
    torch_device = torch.device(device)
    return lambda: torch.cuda.synchronize(torch_device)


def cuda_index(device: str) -> int:
    """The GPU number N of an engine CUDA device ("cuda" is "cuda:0"); raises
    `tinygrad_ee.DeviceError` when the engine cannot use it (no CuPy, no such GPU)."""
    return int(tg.get_backend(device).device.partition(":")[2])


def positive_int(text: str) -> int:
    """An argparse type for counts (repeats, steps, threads): an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class Timing:
    """Wall time of one call, over ``repeats`` timed calls after the warm-up."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    """How many times to call a function.

    ``warmup`` untimed calls first (the first calls allocate buffers, start BLAS
    threads, compile GPU kernels). Then, with ``repeats`` set, exactly that many timed
    calls; otherwise as many as fit in ``budget_s`` seconds (estimated from the last
    warm-up call), but at least ``min_repeats`` and at most ``max_repeats``.
    """

    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 50
    budget_s: float = 1.0
    repeats: int | None = None

    def count(self, seconds_per_call: float) -> int:
        """Number of timed calls for a function that takes ``seconds_per_call``."""
        if self.repeats is not None:
            return self.repeats
        fit = math.floor(self.budget_s / max(seconds_per_call, 1e-9))
        return max(self.min_repeats, min(self.max_repeats, fit))


DEFAULT_PLAN = Plan()


def measure(fn: Callable[[], object], plan: Plan = DEFAULT_PLAN, sync: Sync = no_sync) -> Timing:
    """Time ``fn()`` following ``plan``; ``sync`` waits for the device (see `synchronizer`)."""
    seconds_per_call = 0.0
    # without a fixed count, at least one warm-up call: its time sizes the repeats
    for _ in range(plan.warmup if plan.repeats is not None else max(plan.warmup, 1)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        seconds_per_call = time.perf_counter() - start
    times = []
    for _ in range(plan.count(seconds_per_call)):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return Timing(statistics.median(times), min(times), max(times), len(times))


def measure_interleaved(
    sides: dict[str, Callable[[], object]], plan: Plan = DEFAULT_PLAN, syncs: dict | None = None
) -> dict[str, Timing]:
    """Time several functions in turns: each round calls every side once, starting from
    a different side each round, so that a busy moment of the machine falls on all sides
    alike. The number of rounds follows ``plan`` from the first side's warm-up time;
    ``syncs`` gives each side's device wait (default: none)."""
    syncs = syncs or {}
    waits = {name: syncs.get(name, no_sync) for name in sides}
    seconds_per_call = 0.0
    for name, fn in sides.items():
        for _ in range(plan.warmup if plan.repeats is not None else max(plan.warmup, 1)):
            waits[name]()
            start = time.perf_counter()
            fn()
            waits[name]()
            if name == next(iter(sides)):
                seconds_per_call = time.perf_counter() - start
    names = list(sides)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(plan.count(seconds_per_call)):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            wait = waits[name]
            wait()
            start = time.perf_counter()
            sides[name]()
            wait()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: Timing(statistics.median(t), min(t), max(t), len(t)) for name, t in times.items()}
