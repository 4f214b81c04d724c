"""One training step of each model: the engine against the hand-derived NumPy step.

    python -m benchmarks.models [--dtype float32 --dtype float64] [--repeat 20] [--quick]

Each step is forward + backward + SGD-momentum update, at SPEC.md's sizes:
autoencoder 256-64-256 batch 32; language model (D, P) = (32, 256) batch 200;
RNN/LSTM/GRU classifiers with hidden 128, T = 150, batch 32. Both sides start from
the same parameters and see the same data. Reported: median milliseconds per step
and the ratio engine / hand-derived (lower is better; 1.0 means no overhead).
Then the LSTM step at T = 50, 150, 300, to show that back-propagation through time
grows linearly in T.
"""

from __future__ import annotations

import argparse
import tracemalloc
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_limits

import tinygrad_ee as tg
from benchmarks import reference
from benchmarks.timing import median_ms
from models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder
from tinygrad_ee import optim


def engine_step(model, optimizer, loss_fn) -> Callable[[], float]:
    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def hand_step(step: Callable, *args) -> Callable[[], object]:
    return lambda: step(*args)


def cases(dtype: str, steps: int, rng: np.random.Generator):
    """(name, engine step, hand-derived step) for every model, from shared parameters."""
    np_dtype = np.dtype(dtype)

    params = reference.init_autoencoder(64, rng, np_dtype)
    x = rng.uniform(0.1, 0.9, (32, 256)).astype(np_dtype)
    model = SparseAutoencoder(256, 64, dtype=dtype)
    model.load_state_dict(params)
    xt = tg.Tensor(x)
    yield (
        "autoencoder 256-64-256 N=32",
        engine_step(
            model,
            optim.SGD(model.parameters(), lr=0.075, momentum=0.85),
            lambda m=model: m.loss(xt, 5e-4, 2.0, 0.025),
        ),
        hand_step(
            reference.autoencoder_step,
            params,
            reference.SGDMomentum(0.075, 0.85),
            x,
            5e-4,
            2.0,
            0.025,
        ),
    )

    params = reference.init_language_model(250, 32, 256, rng, np_dtype)
    context = rng.integers(0, 250, (200, 3))
    targets = rng.integers(0, 250, 200)
    model = FourGramLanguageModel(250, 32, 256, dtype=dtype)
    model.load_state_dict(params)
    ct, tt = tg.Tensor(context), tg.Tensor(targets)
    yield (
        "language model D=32 P=256 N=200",
        engine_step(
            model,
            optim.SGD(model.parameters(), lr=0.15, momentum=0.85),
            lambda m=model: m.loss(ct, tt),
        ),
        hand_step(
            reference.language_model_step,
            params,
            reference.SGDMomentum(0.15, 0.85),
            context,
            targets,
        ),
    )

    xs = rng.normal(size=(32, steps, 3)).astype(np_dtype)
    ys = rng.integers(0, 6, 32)
    xst, yst = tg.Tensor(xs), tg.Tensor(ys)
    for cell in ("rnn", "lstm", "gru"):
        params = reference.init_recurrent(cell, 3, 128, 6, rng, np_dtype)
        model = SequenceClassifier(cell, 3, 6, hidden_size=128, dtype=dtype)
        model.load_state_dict(params)
        yield (
            f"{cell} H=128 T={steps} B=32",
            engine_step(
                model,
                optim.SGD(model.parameters(), lr=0.1, momentum=0.85),
                lambda m=model: m.loss(xst, yst),
            ),
            hand_step(
                reference.recurrent_step, cell, params, reference.SGDMomentum(0.1, 0.85), xs, ys
            ),
        )


def run(dtypes: list[str], repeat: int, quick: bool) -> list[dict]:
    rows = []
    for dtype in dtypes:
        for name, engine, hand in cases(dtype, 20 if quick else 150, np.random.default_rng(0)):
            engine_ms = median_ms(engine, repeat)
            hand_ms = median_ms(hand, repeat)
            rows.append(
                {
                    "model": name,
                    "dtype": dtype,
                    "engine_ms": engine_ms,
                    "hand_ms": hand_ms,
                    "ratio": engine_ms / hand_ms,
                }
            )
    return rows


def bptt_scaling(lengths: list[int], repeat: int, dtype: str = "float64") -> list[dict]:
    """LSTM step time against T: linear growth means constant milliseconds per step.

    float64 by default: in float32 the gradients flowing back through 300 steps of an
    untrained LSTM decay into subnormal numbers, whose arithmetic is many times slower
    on x86 (the hand-derived step slows down the same way), which hides the scaling.
    """
    rng = np.random.default_rng(0)
    rows = []
    for steps in lengths:
        model = SequenceClassifier("lstm", 3, 6, hidden_size=128, dtype=dtype)
        xs = tg.Tensor(rng.normal(size=(32, steps, 3)).astype(dtype))
        ys = tg.Tensor(rng.integers(0, 6, 32))
        step = engine_step(
            model, optim.SGD(model.parameters(), lr=0.1), lambda m=model, x=xs, y=ys: m.loss(x, y)
        )
        ms = median_ms(step, repeat)
        tracemalloc.start()  # NumPy reports its array allocations to tracemalloc
        step()
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append(
            {"T": steps, "engine_ms": ms, "ms_per_time_step": ms / steps, "peak_mb": peak_mb}
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="T=20 and few repetitions")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads (default 1: these products are small, and threads that must share "
        "busy cores make each one many times slower)",
    )
    args = parser.parse_args(argv)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):
        _report(args)


def _report(args: argparse.Namespace) -> None:
    repeat = 3 if args.quick else args.repeat
    print("| model | dtype | engine ms | hand-derived ms | engine / hand |")
    print("|---|---|---:|---:|---:|")
    for row in run(args.dtype or ["float32", "float64"], repeat, args.quick):
        print(
            f"| {row['model']} | {row['dtype']} | {row['engine_ms']:.2f} | "
            f"{row['hand_ms']:.2f} | {row['ratio']:.2f} |"
        )
    print()
    print("| LSTM T (float64) | engine ms per training step | ms per time step | peak MiB |")
    print("|---:|---:|---:|---:|")
    for row in bptt_scaling([10, 20] if args.quick else [50, 150, 300], repeat):
        print(
            f"| {row['T']} | {row['engine_ms']:.1f} | {row['ms_per_time_step']:.3f} "
            f"| {row['peak_mb']:.1f} |"
        )


if __name__ == "__main__":
    main()
