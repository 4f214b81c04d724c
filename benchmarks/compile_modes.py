"""What each optimisation of a compiled step is worth: the same models, one setting at a time.

    python -m benchmarks.compile_modes [--device cuda] [--dtype float32] [--model lstm] [--hand]

For each model: the eager step, then compiled steps that add one optimisation at a
time (`tinygrad_ee.compiler.passes.Options`), all timed in turns (`measure_interleaved`),
median ms and speedup over eager. On CUDA the last two settings add fused elementwise
kernels and CUDA graphs; their rows also say whether the graphs ran. ``--hand`` (CPU)
times the hand-derived NumPy step in the same turns, as one more row.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Iterator

from threadpoolctl import threadpool_limits

import tinygrad_ee as tg
from tinygrad_ee.compiler.passes import Options

from . import models
from .timing import Plan, measure_interleaved, synchronizer

OFF = {field.name: False for field in dataclasses.fields(Options)}
# Each setting switches on one more optimisation than the one before.
SETTINGS = {
    "replayed, no optimisation": {},
    "+ constants folded": {"fold_constants": True},
    "+ dead code removed": {"dead_code": True},
    "+ stacked weight gradients": {"stack_products": True},
    "+ buffers reused (out=)": {"reuse_buffers": True},
    "+ casts folded, numbers typed": {"fold_casts": True, "typed_numbers": True},
    "+ fused elementwise kernels": {"fuse": True},
    "+ CUDA graphs": {"cuda_graph": True},
}


HAND = "hand-derived NumPy step"
SHORT = (
    "+ buffers reused (out=)",
    "+ casts folded, numbers typed",
    "+ fused elementwise kernels",
    "+ CUDA graphs",
)


def rows(
    device: str,
    dtype: str,
    names: list[str],
    plan: Plan,
    batch: int = 32,
    short: bool = False,
    hand: bool = False,
) -> Iterator[dict]:
    """One row per model and setting: median ms, speedup over eager, graph status
    (``short``: only the rows from buffer reuse on: the CPU optimisations, then
    fusion, then graphs; ``hand``: a last row for the hand-derived step, CPU only)."""
    for spec in models.model_specs(batch=batch):
        if names and spec.name not in names:
            continue
        case = models.make_case(spec, dtype)
        sides = {"eager": models.engine_callables(case, device).step}
        options = dict(OFF)
        for label, switches in SETTINGS.items():
            options.update(switches)
            if short and label not in SHORT:
                continue
            sides[label] = tg.compile(models.engine_callables(case, device).step, **options)
        if hand:
            sides[HAND] = models.hand_callables(case).step
        sync = synchronizer(device)
        timings = measure_interleaved(sides, plan, {name: sync for name in sides})
        eager = timings["eager"].median_ms
        for label, timing in timings.items():
            graphs = "-"
            if label not in ("eager", HAND):
                graphs = getattr(sides[label].program().run, "failure", "not used") or "used"
            yield {
                "model": spec.label,
                "setting": label,
                "median_ms": timing.median_ms,
                "speedup": eager / timing.median_ms,
                "graphs": graphs,
            }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_modes", description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    parser.add_argument("--repeat", type=int, default=10, help="timed calls per setting")
    parser.add_argument("--batch", type=int, default=32, help="the recurrent models' batch")
    parser.add_argument("--short", action="store_true", help="only the rows from buffer reuse on")
    parser.add_argument("--hand", action="store_true", help="also time the hand-derived step (cpu)")
    args = parser.parse_args(argv)
    if args.hand and args.device != "cpu":
        print(f"error: --hand runs on the cpu only, not on {args.device}", file=sys.stderr)
        return 2
    try:
        tg.get_backend(args.device)
    except tg.DeviceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.device} {args.dtype}: median ms per training step, speedup over eager")
    print("| model | setting | ms | speedup | CUDA graphs |\n|---|---|---:|---:|---|", flush=True)
    plan = Plan(warmup=2, repeats=args.repeat)
    with threadpool_limits(limits=1, user_api="blas"):
        found = rows(
            args.device, args.dtype, args.model or [], plan, args.batch, args.short, args.hand
        )
        for row in found:
            print(
                f"| {row['model']} | {row['setting']} | {row['median_ms']:.3f} | "
                f"{row['speedup']:.2f} | {row['graphs']} |",
                flush=True,  # row by row: a run cut short keeps what it measured
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
