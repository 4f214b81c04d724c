"""Where one engine training step spends its time, by part of the engine (cProfile).

    python -m benchmarks.profile [--model lstm] [--dtype float32] [--steps 5] [--top 12]

Runs ``--steps`` training steps of one model at the experiments' sizes under cProfile and
sums each function's own time into the part of the engine it belongs to:

- op arithmetic, forward / backward: the ops' forward functions and backward closures
  in ``tinygrad_ee/ops.py``, including the array arithmetic they call (NumPy's ufunc
  operators are not separate profiler entries);
- recording: ``apply`` and the Tensor wrapper around each op result;
- backward walk: collecting, ordering and visiting the graph, accumulating gradients;
- library calls: array functions that are profiler entries of their own (matmul,
  reductions, NumPy's Python wrappers);
- optimiser, model code (``models/``, ``nn.py``), and the rest.

cProfile adds a constant cost per Python call, so the Python-heavy parts (recording,
walk) look larger here than they are; the unprofiled step time and the hand-derived
step's time are printed beside the table for scale.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
from pathlib import Path

import tinygrad_ee.models
from threadpoolctl import threadpool_limits

import tinygrad_ee

from . import models
from .timing import Plan, measure, positive_int

RECORDING = {
    "apply",
    "apply_multi",
    "_input_arrays",
    "_run_forward",
    "_make",
    "tensor_op",
    "__init__",
}
WALK = {
    "backward",
    "_run_backward",
    "_propagate",
    "_topological_order",
    "_accumulate_leaf",
    "_sum_to_shape",
}
ENGINE = Path(tinygrad_ee.__file__).resolve().parent
MODELS = Path(tinygrad_ee.models.__file__).resolve().parent


def part_of(filename: str, function: str) -> str:
    """The part of the engine a profiler entry belongs to."""
    path = Path(filename)
    if path.parent == ENGINE:
        if path.name == "ops.py":
            if function == "tensor_op":  # the wrapper @op puts around each forward
                return "recording"
            backward = function in ("backward", "<lambda>", "<listcomp>")
            return "op arithmetic, backward" if backward else "op arithmetic, forward"
        if path.name == "tensor.py":
            if function in RECORDING:
                return "recording"
            return "backward walk" if function in WALK else "engine, other"
        if path.name == "optim.py":
            return "optimiser"
        if path.name == "nn.py":
            return "model code"
        return "engine, other"
    if path.parent == MODELS:
        return "model code"
    if filename.startswith("~") or "numpy" in filename:
        return "library calls"
    return "other"


def profile(model: str, dtype: str, steps: int) -> tuple[pstats.Stats, dict[str, float]]:
    """Profile ``steps`` engine training steps; returns the stats and seconds per part."""
    spec = next(s for s in models.model_specs() if s.name == model)
    runners = models.engine_callables(models.make_case(spec, dtype))
    runners.step()  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        runners.step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    parts: dict[str, float] = {}
    for (filename, _, function), (_, _, own_seconds, _, _) in stats.stats.items():
        part = part_of(filename, function)
        parts[part] = parts.get(part, 0.0) + own_seconds / steps
    return stats, parts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [spec.name for spec in models.model_specs()]
    parser.add_argument("--model", choices=names, default="lstm")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--steps", type=positive_int, default=5, help="profiled steps (default 5)")
    parser.add_argument("--top", type=int, default=12, help="functions listed (default 12)")
    parser.add_argument("--blas-threads", type=positive_int, default=1)
    args = parser.parse_args(argv)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        spec = next(s for s in models.model_specs() if s.name == args.model)
        case = models.make_case(spec, args.dtype)
        plan = Plan(warmup=1, min_repeats=5, max_repeats=20, budget_s=2.0)
        engine_ms = measure(models.engine_callables(case).step, plan).median_ms
        hand_ms = measure(models.hand_callables(case).step, plan).median_ms
        stats, parts = profile(args.model, args.dtype, args.steps)
    print(
        f"{spec.label}, {args.dtype}: engine step {engine_ms:.2f} ms, hand-derived "
        f"{hand_ms:.2f} ms (unprofiled medians)\n"
    )
    total = sum(parts.values())
    print("| part | ms per step (profiled) | share |")
    print("|---|---:|---:|")
    for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"| {part} | {seconds * 1e3:.2f} | {seconds / total:.0%} |")
    print()
    stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
