"""A hand-derived LSTM cell as one custom op, and its speed against the composed cell.

    python -m benchmarks.lstm_op [--device cpu] [--dtype float32] [--rounds 21] [--repeat 5]

`lstm_cell` is the worked example of docs/testing-your-ops.md: one LSTM step written
with `tg.op`, its backward derived by hand (and checked by `check_op`). `FusedLSTMCell`
is `models.LSTMCell` with its step made of that op. The script trains the activity
classifier (H = 128, T = 150, B = 32, as in the experiments) with each cell in compiled
steps, timed in turns: ``--rounds`` rounds, each the median of ``--repeat`` steps per
cell; it prints each round's medians, then the median over rounds and the spread
(lowest and highest round) of each cell and of their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from threadpoolctl import threadpool_limits
from tinygrad_ee.models.recurrent import LSTMCell, State

import tinygrad_ee as tg
from tinygrad_ee import optim
from tinygrad_ee.domains import REAL

from . import models
from .timing import Plan, measure_interleaved, positive_int, synchronizer


@tg.op(REAL, REAL, REAL, REAL, multiple_outputs=True)
def lstm_cell(be, x_projected, h, c, hidden_weight):
    """One LSTM step: x_projected (B, 4H) = x_t W_x + b, h and c (B, H), hidden_weight
    (H, 4H) -> [h_next, c_next], both (B, H).

    Gates [i, f, g, o] of a = x_projected + h @ hidden_weight: i, f, o = sigmoid, g = tanh;
    c_next = f c + i g, h_next = o tanh(c_next)."""
    xp = be.xp
    n = h.shape[1]
    a = xp.matmul(h, hidden_weight) + x_projected
    # sigmoid(a) = e^min(a, 0) r with e = exp(-|a|), r = 1 / (1 + e): nothing overflows,
    # and e^min(a, 0), 1 or e, is max(e, a >= 0) (NumPy's where branches per element).
    e = xp.exp(-xp.abs(a))
    r = 1 / (1 + e)
    gates = xp.maximum(e, xp.astype(a >= 0, a.dtype)) * r  # every block (g's is not used)
    i, f, o = gates[:, :n], gates[:, n : 2 * n], gates[:, 3 * n :]
    g = xp.tanh(a[:, 2 * n : 3 * n])
    c_next = f * c + i * g
    t = xp.tanh(c_next)
    h_next = o * t

    def backward(grads):
        dh, dc_next = grads
        dc = dc_next + dh * o * (1 - t * t)  # c_next reaches the loss through h_next too
        slope = e * r * r  # sigmoid'(a) = sigmoid(a) sigmoid(-a) = e r^2, in both tails
        da = xp.concat(
            [
                dc * g * slope[:, :n],  # through i
                dc * c * slope[:, n : 2 * n],  # through f
                dc * i * (1 - g * g),  # through g
                dh * t * slope[:, 3 * n :],  # through o
            ],
            axis=1,
        )
        dh_prev = xp.matmul(da, be.transposed_operand(hidden_weight))  # a cached copy
        dw = xp.matmul(xp.matrix_transpose(h), da)
        return da, dh_prev, dc * f, dw

    return [h_next, c_next], backward


class FusedLSTMCell(LSTMCell):
    """`LSTMCell` whose step is the one op `lstm_cell` (same parameters and layout)."""

    def step(self, x_projected: tg.Tensor, state: State) -> State:
        h, c = state
        return tuple(lstm_cell(x_projected, h, c, self.hidden_weight))


def classifiers(case: models.Case, device: str) -> dict[str, tg.nn.Module]:
    """The benchmark's LSTM classifier for ``case``, composed and fused, with the same
    parameters."""
    composed = models.engine_model(case, device)
    fused = models.engine_model(case, device)
    sizes = case.spec.sizes
    fused.cell = FusedLSTMCell(sizes["input"], sizes["hidden"], device=device, dtype=case.dtype)
    fused.load_state_dict(case.params)
    return {"composed cell": composed, "lstm_cell op": fused}


def compiled_steps(case: models.Case, device: str) -> dict[str, tg.compile]:
    """A compiled training step (loss, backward, SGD with momentum) per classifier."""
    x = tg.Tensor(case.data["x"], device=device)
    targets = tg.Tensor(case.data["targets"], device=device)
    steps = {}
    for name, model in classifiers(case, device).items():
        optimizer = optim.SGD(model.parameters(), lr=case.spec.lr, momentum=case.spec.momentum)
        loss = lambda model=model: model.loss(x, targets)
        steps[name] = tg.compile(models.engine_step(model, optimizer, loss))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lstm_op", description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--rounds", type=positive_int, default=21, help="rounds of turns")
    parser.add_argument("--repeat", type=positive_int, default=5, help="steps per cell a round")
    parser.add_argument("--steps", type=positive_int, default=150, help="T")
    parser.add_argument("--batch", type=positive_int, default=32, help="B")
    parser.add_argument("--hidden", type=positive_int, default=128, help="H")
    args = parser.parse_args(argv)
    try:
        sync = synchronizer(args.device)
    except tg.DeviceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    spec = models.recurrent_spec("lstm", args.steps, args.batch, args.hidden)
    steps = compiled_steps(models.make_case(spec, args.dtype), args.device)
    print(f"{spec.label}, {args.device} {args.dtype}: median ms per compiled training step")
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    with threadpool_limits(limits=1, user_api="blas"):
        for number in range(args.rounds):
            plan = Plan(warmup=2 if number == 0 else 1, repeats=args.repeat)
            timings = measure_interleaved(steps, plan, {name: sync for name in steps})
            for name, timing in timings.items():
                rounds[name].append(timing.median_ms)
            shown = ", ".join(f"{name} {timing.median_ms:.1f}" for name, timing in timings.items())
            print(f"round {number + 1}: {shown}", flush=True)
    composed, fused = rounds.values()
    ratios = [c / f for c, f in zip(composed, fused)]
    for name, values in [*rounds.items(), ("speedup (composed / op)", ratios)]:
        print(
            f"{name}: median {statistics.median(values):.2f}, "
            f"rounds from {min(values):.2f} to {max(values):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
