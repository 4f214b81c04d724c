"""How the LSTM classifier's training step scales: time and memory against T and batch.

Back-propagation through time keeps every step's activations until backward has used
them, so one training step needs memory linear in T (and in the batch), and all of it
must be released when the step ends. Two figures per step show both:

- ``peak_mb``: the most memory held *during* the step, above what was held before it;
- ``retained_mb``: what is still held *after* each of a few consecutive steps, above the
  same baseline (after a garbage collection: objects in reference cycles wait for the
  collector but are not retained). Parameters, gradients and momentum are replaced by
  arrays of the same size each step, so these figures stay near 0 and must not grow.

On the CPU both come from `tracemalloc` (NumPy reports its array allocations to it); on
CUDA from CuPy's default memory pool (``used_bytes`` for what is held; for the peak, the
pool is emptied of cached blocks first, so that its ``total_bytes`` afterwards is the
high-water mark of the step, an upper bound of the true peak by the pool's rounding).
"""

from __future__ import annotations

import gc
import importlib
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import models
from .timing import Plan, cuda_index, measure_interleaved, synchronizer

MiB = 2**20
LENGTHS = (25, 50, 100, 150, 300)  # T, at BATCH
BATCHES = (8, 32, 128, 512)  # B, at STEPS
STEPS, BATCH, HIDDEN = 150, 32, 128
QUICK = {"lengths": (4, 8, 16), "batches": (2, 4, 8), "steps": 8, "batch": 4, "hidden": 16}
MEMORY_STEPS = 3  # consecutive steps whose retained memory is reported
RELEASE_SLACK_MB = 10 / 1024
SWEEP_PLAN = Plan(warmup=1, min_repeats=3, max_repeats=10, budget_s=3.0)


def lstm_step(
    device: str, dtype: str, steps: int, batch: int, hidden: int, compiled: bool = False
) -> Callable[[], Any]:
    """One engine training step of the LSTM classifier on (batch, steps, 3) inputs, eager
    or compiled."""
    spec = models.recurrent_spec("lstm", steps=steps, batch=batch, hidden=hidden)
    make = models.compiled_callables if compiled else models.engine_callables
    return make(models.make_case(spec, dtype), device).step


def step_memory(step: Callable[[], Any], device: str, steps: int = MEMORY_STEPS) -> dict:
    """Peak memory of ``step`` and the memory retained after each of ``steps`` >= 1 calls.

    Returns ``{"peak_mb", "retained_mb": [after call 1, ...], "method"}``, in MiB above
    the memory held before the first measured call; the peak is the highest point over
    the measured calls. ``step`` should have run before (warm).
    """
    if steps < 1:
        raise ValueError(f"step_memory needs at least one measured step, got {steps}")
    # Objects that exist now cannot be garbage made by the steps: freezing them keeps the
    # collections below quick (a full collection with torch imported takes ~0.2 s).
    gc.collect()
    gc.freeze()
    try:
        if device.startswith("cuda"):
            return _cuda_step_memory(step, device, steps)
        return _host_step_memory(step, steps)
    finally:
        gc.unfreeze()


def _host_step_memory(step: Callable[[], Any], steps: int) -> dict:
    """`step_memory` on the CPU, from tracemalloc."""
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        # One call before the baseline: it replaces the arrays (parameters, gradients)
        # allocated before tracing began, whose release tracemalloc could not see.
        step()
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        retained = []
        for _ in range(steps):
            step()
            gc.collect()  # garbage in reference cycles is not retained, only not yet freed
            retained.append((tracemalloc.get_traced_memory()[0] - baseline) / MiB)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started_here:
            tracemalloc.stop()
    return {"peak_mb": (peak - baseline) / MiB, "retained_mb": retained, "method": "tracemalloc"}


def _cuda_step_memory(step: Callable[[], Any], device: str, steps: int) -> dict:
    """`step_memory` on a CUDA device, from CuPy's default memory pool."""
    cupy = importlib.import_module("cupy")
    sync = synchronizer(device)
    index = cuda_index(device)
    pool = cupy.get_default_memory_pool()
    with cupy.cuda.Device(index):
        step()
        sync()
        gc.collect()
        baseline = pool.used_bytes()
        pool.free_all_blocks()  # from here total_bytes grows only to serve the step
        retained = []
        for _ in range(steps):
            step()
            sync()
            gc.collect()  # as on the CPU: count what is still reachable
            retained.append((pool.used_bytes() - baseline) / MiB)
        peak = pool.total_bytes()
    return {
        "peak_mb": (peak - baseline) / MiB,
        "retained_mb": retained,
        "method": "cupy memory pool",
    }


def measure_point(
    device: str, dtype: str, steps: int, batch: int, hidden: int, plan: Plan, memory_steps: int
) -> dict:
    """Time and memory of one LSTM training step at (T, B) = (steps, batch), eager and
    compiled (timed in turns). A compiled step's peak counts the buffers its program
    holds between steps (``compiled_held_mb``) besides what a step allocates."""
    step = lstm_step(device, dtype, steps, batch, hidden)
    compiled = lstm_step(device, dtype, steps, batch, hidden, compiled=True)
    sync = synchronizer(device)
    timings = measure_interleaved(
        {"eager": step, "compiled": compiled}, plan, {"eager": sync, "compiled": sync}
    )
    timing = timings["eager"]
    memory = step_memory(step, device, memory_steps)
    held = models.program_bytes(compiled) / MiB
    compiled_peak = step_memory(compiled, device, 1)["peak_mb"] + held
    retained = memory["retained_mb"]
    growth = retained[-1] - retained[0] if retained else 0.0
    return {
        "device": device,
        "dtype": dtype,
        "T": steps,
        "B": batch,
        "H": hidden,
        "step": timing.as_dict(),
        "compiled_step": timings["compiled"].as_dict(),
        "compiled_peak_mb": compiled_peak,
        "compiled_held_mb": held,
        "ms_per_time_step": timing.median_ms / steps,
        "peak_mb": memory["peak_mb"],
        "peak_mb_per_time_step": memory["peak_mb"] / steps,
        "peak_mb_per_sample": memory["peak_mb"] / batch,
        "retained_mb": retained,
        "retained_growth_mb": growth,
        # "released": what the steps leave behind does not grow from step to step, up to
        # 1 % of the peak plus 10 KiB (measured: a few hundred bytes a step, from caches
        # inside Python and NumPy, whatever the model's size).
        "released": abs(growth) <= 0.01 * max(memory["peak_mb"], 0.0) + RELEASE_SLACK_MB,
        "memory_method": memory["method"],
    }


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict:
    """Least-squares line y = slope x + intercept, with how well it fits.

    ``r_squared``: 1 for a perfect line. ``max_relative_residual``: the largest
    |y - fit| / |y| over the points (0.05 means no point is more than 5 % off the line).
    """
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    fitted = slope * x + intercept
    spread = float(((y - y.mean()) ** 2).sum())
    residual = float(((y - fitted) ** 2).sum())
    relative = np.abs(y - fitted) / np.maximum(np.abs(y), 1e-12)
    return {
        "slope": float(slope),
        "intercept": float(intercept),
        "r_squared": 1.0 - residual / spread if spread > 0 else 1.0,
        "max_relative_residual": float(relative.max()),
    }


def sweep(
    device: str,
    dtype: str,
    lengths: Sequence[int] = LENGTHS,
    batches: Sequence[int] = BATCHES,
    steps: int = STEPS,
    batch: int = BATCH,
    hidden: int = HIDDEN,
    plan: Plan = SWEEP_PLAN,
    memory_steps: int = MEMORY_STEPS,
    progress: Callable[[str], None] = lambda message: None,
) -> dict:
    """Both sweeps on one device: T over ``lengths`` at ``batch``, B over ``batches`` at
    ``steps``; each row as `measure_point` returns it, and a `linear_fit` of peak memory
    and of step time against T (MiB and ms per time step) and against B (per sample)."""
    measured: dict[tuple[int, int], dict] = {}  # (T, B) -> row: the shared point runs once

    def point(t: int, b: int) -> dict:
        if (t, b) not in measured:
            progress(f"scaling {device} {dtype}: LSTM T={t} B={b}")
            measured[t, b] = measure_point(device, dtype, t, b, hidden, plan, memory_steps)
        return measured[t, b]

    by_length = [point(t, batch) for t in lengths]
    by_batch = [point(steps, b) for b in batches]
    return {
        "device": device,
        "dtype": dtype,
        "time_steps": by_length,
        "batch": by_batch,
        "fits": {
            "peak_mb_vs_T": linear_fit(lengths, [r["peak_mb"] for r in by_length]),
            "step_ms_vs_T": linear_fit(lengths, [r["step"]["median_ms"] for r in by_length]),
            "peak_mb_vs_B": linear_fit(batches, [r["peak_mb"] for r in by_batch]),
            "step_ms_vs_B": linear_fit(batches, [r["step"]["median_ms"] for r in by_batch]),
        },
    }
