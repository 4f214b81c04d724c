"""Per-op overhead of the engine over raw array calls.

    python -m benchmarks.op_overhead [--device cpu] [--repeat 2000]

For a (32, 128) float32 input, median time in microseconds of:
- the raw array call (``a * b``), and the same op through the engine with and
  without ``requires_grad``;
- one recorded op, forward + backward, against the same arithmetic by hand;
- a ten-op chain, forward + backward, against the same arithmetic by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import tinygrad_ee as tg

from .timing import positive_int, synchronizer

# What each figure of `measure` is, for reports.
DESCRIPTIONS = {
    "raw_mul": "raw array call a * b",
    "engine_mul_no_grad": "engine x * y, no requires_grad",
    "engine_mul_recorded": "engine x * y, recorded",
    "raw_mul_forward_backward": "raw forward + backward of a multiply (3 array multiplies)",
    "engine_mul_forward_backward": "engine forward + backward of one recorded multiply",
    "raw_chain_10_ops": "raw 10-op chain (5 x (mul, tanh)), forward + backward by hand",
    "engine_chain_10_ops": "engine 10-op chain, forward + backward",
    "forward_overhead_no_grad": "overhead: forward, no grad (engine - raw)",
    "forward_overhead_recorded": "overhead: forward, recorded (engine - raw)",
    "forward_backward_overhead_one_op": "overhead: forward + backward of one op",
    "forward_backward_overhead_per_chain_op": "overhead: forward + backward per op in a chain",
}


def median_us(fn: Callable[[], object], repeat: int, number: int = 20, sync=lambda: None) -> float:
    """Median over ``repeat`` runs of the mean time of ``number`` calls, in microseconds."""
    for _ in range(number * 5):  # warm-up
        fn()
    sync()  # the warm-up's queued work (on a GPU) must not land in the first sample
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times) * 1e6


def measure(device: str = "cpu", repeat: int = 2000, shape=(32, 128)) -> dict[str, float]:
    """The figures described in the module docstring, as a dict of microseconds."""
    backend = tg.get_backend(device)
    xp = backend.xp
    rng = np.random.default_rng(0)
    a_host, b_host = (rng.uniform(0.5, 1.5, size=shape).astype(np.float32) for _ in range(2))
    a, b = backend.asarray(a_host), backend.asarray(b_host)
    seed = backend.asarray(np.ones(shape, dtype=np.float32))
    x, y = tg.Tensor(a_host, device=device), tg.Tensor(b_host, device=device)
    xg = tg.Tensor(a_host, device=device, requires_grad=True)
    yg = tg.Tensor(b_host, device=device, requires_grad=True)
    sync = synchronizer(device)  # CPU: nothing; CUDA: wait for the queued kernels

    def engine_step():
        out = xg * yg
        out.backward(seed)
        xg.grad = yg.grad = None

    def raw_step():
        out = a * b
        grad_a, grad_b = seed * b, seed * a  # noqa: F841
        return out

    def engine_chain():
        h = xg
        for _ in range(5):
            h = (h * yg).tanh()
        h.backward(seed)
        xg.grad = yg.grad = None

    def raw_chain():
        hs, outs = [a], []
        for _ in range(5):
            product = hs[-1] * b
            outs.append(xp.tanh(product))
            hs.append(outs[-1])
        grad, grad_b = seed, 0
        for h, out in zip(reversed(hs[:-1]), reversed(outs)):
            grad = grad * (1 - out * out)
            grad_b = grad_b + grad * h
            grad = grad * b
        return grad, grad_b

    r = {
        "raw_mul": median_us(lambda: a * b, repeat, sync=sync),
        "engine_mul_no_grad": median_us(lambda: x * y, repeat, sync=sync),
        "engine_mul_recorded": median_us(lambda: xg * yg, repeat, sync=sync),
        "raw_mul_forward_backward": median_us(raw_step, repeat, sync=sync),
        "engine_mul_forward_backward": median_us(engine_step, repeat, sync=sync),
        "raw_chain_10_ops": median_us(raw_chain, max(1, repeat // 4), sync=sync),
        "engine_chain_10_ops": median_us(engine_chain, max(1, repeat // 4), sync=sync),
    }
    r["forward_overhead_no_grad"] = r["engine_mul_no_grad"] - r["raw_mul"]
    r["forward_overhead_recorded"] = r["engine_mul_recorded"] - r["raw_mul"]
    r["forward_backward_overhead_one_op"] = (
        r["engine_mul_forward_backward"] - r["raw_mul_forward_backward"]
    )
    r["forward_backward_overhead_per_chain_op"] = (
        r["engine_chain_10_ops"] - r["raw_chain_10_ops"]
    ) / 10
    return r


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=positive_int, default=2000)
    args = parser.parse_args(argv)
    try:
        tg.get_backend(args.device)
    except tg.DeviceError as error:
        parser.error(str(error))
    results = measure(args.device, args.repeat)
    print(f"per-op timings on {args.device}, (32, 128) float32, median microseconds")
    for name, value in results.items():
        print(f"  {name:42s} {value:8.2f}")


if __name__ == "__main__":
    main()
