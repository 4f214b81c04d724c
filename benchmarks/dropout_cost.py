"""What dropout costs the language model's compiled training step: the (32, 256) model,
batch 200, with the modern recipe's dropout and without, timed in turns.

    python -m benchmarks.dropout_cost [--dropout 0.27] [--rounds 30]
"""

from __future__ import annotations

import argparse

import numpy as np
from threadpoolctl import threadpool_limits
from tinygrad_ee.models import FourGramLanguageModel

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

from .timing import Plan, measure_interleaved, positive_int


def compiled_step(dropout: float, context: tg.Tensor, target: tg.Tensor):
    """``step(indices, key)``, as the training loop makes it (tasks/training.py)."""
    nn.seed(0)
    model = FourGramLanguageModel(250, 32, 256, dropout=dropout)
    optimizer = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.087)

    def step(indices: tg.Tensor, key: tg.Tensor) -> tg.Tensor:
        loss = model.loss(context[indices], target[indices], key)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return tg.compile(step)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dropout_cost", description=__doc__)
    parser.add_argument("--dropout", type=float, default=0.27, help="(default: 0.27)")
    parser.add_argument("--rounds", type=positive_int, default=30, help="(default: 30)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    context, target = (
        tg.Tensor(rng.integers(0, 250, (46_000, 3))),
        tg.Tensor(rng.integers(0, 250, 46_000)),
    )
    batches = [tg.Tensor(rng.integers(0, 46_000, 200)) for _ in range(64)]
    sides = {}
    for name, p in (("no dropout", 0.0), (f"dropout {args.dropout:g}", args.dropout)):
        step, calls = compiled_step(p, context, target), iter(range(10**9))

        def call(step=step, calls=calls):
            number = next(calls)
            step(batches[number % 64], tg.Tensor(np.asarray(number))).item()

        sides[name] = call
    with threadpool_limits(limits=1, user_api="blas"):
        timings = measure_interleaved(sides, Plan(warmup=5, repeats=args.rounds))
    base = timings["no dropout"].median_ms
    for name, timing in timings.items():
        print(
            f"{name:>14}: median {timing.median_ms:.3f} ms (min {timing.min_ms:.3f}, max "
            f"{timing.max_ms:.3f}), x{timing.median_ms / base:.2f}"
        )


if __name__ == "__main__":
    main()
