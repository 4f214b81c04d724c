"""Special functions at full relative precision, against an exact reference.

The reference evaluates each function in 60-digit decimal arithmetic on the exact value
of every float input (``Decimal(float)`` is exact), so it shares no rounding with the
engine. Errors are counted in ulps of the exact result in the tensor's dtype: a
relative measure down to the smallest normal number (below it, absolute: see `_ulps`).
Inputs run over the whole float range, both tails included.

Tolerances. Elementwise functions: 4 ulps for values and 6 for gradients. A correctly
rounded function is within 0.5 ulp; exp, log1p and tanh add up to 1 or 2 (NumPy, CUDA),
and each division or product about 0.5 more; tanh's gradient squares sech(x), doubling
its error. Measured on NumPy and on CuPy (an H200): at most 2.4 ulps for values and 4.5
for gradients. sigmoid from tanh(x / 2), or a gradient 1 - out * out, is off by
thousands of ulps, or by 100% where it rounds to 0 or 1.
softmax and log_softmax: 4 ulps plus the rounding of x - max(x), which every shifted
softmax makes, amplified by the function's sensitivity to it (its condition number with
respect to those differences). The log of a sum rounded to 1 + rest is off by up to
10^8 ulps.
"""

from __future__ import annotations

import decimal
import functools
import math
from decimal import Decimal

import numpy as np
import pytest

import tinygrad_ee as tg

CONTEXT = decimal.Context(prec=60, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)
VALUE_ULPS = 4
GRADIENT_ULPS = 6
DTYPES = ["float32", "float64"]


# --- the exact reference -----------------------------------------------------------
def _log1p(t: Decimal) -> Decimal:
    # ln(1 + t) for 0 <= t <= 1: below 1e-20, 1 + t would round t's digits away.
    return t - t * t / 2 if t < Decimal("1e-20") else (1 + t).ln()


def _sigmoid(x: Decimal) -> Decimal:
    e = (-abs(x)).exp()
    return 1 / (1 + e) if x >= 0 else e / (1 + e)


def _softplus(x: Decimal) -> Decimal:
    return max(x, Decimal(0)) + _log1p((-abs(x)).exp())


def _tanh(x: Decimal) -> Decimal:
    if abs(x) < Decimal("1e-15"):
        return x - x**3 / 3
    e = (-2 * abs(x)).exp()
    return (1 - e) / (1 + e) * (1 if x > 0 else -1)


def _tanh_slope(x: Decimal) -> Decimal:
    e = (-2 * abs(x)).exp()
    return 4 * e / (1 + e) ** 2


ELEMENTWISE = {  # name: (function, derivative), both exact
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
    "softplus": (_softplus, _sigmoid),
    "log_sigmoid": (lambda x: -_softplus(-x), lambda x: _sigmoid(-x)),
    "tanh": (_tanh, _tanh_slope),
}


def _softmax_row(row: list[Decimal]) -> tuple[list[Decimal], list[Decimal]]:
    """(softmax, log_softmax) of one row; the log sum is log1p of the terms other than
    one maximum, so that it is exact when it is tiny."""
    top = max(row)
    shifted = [x - top for x in row]
    terms = [d.exp() for d in shifted]
    first_top = shifted.index(Decimal(0))
    rest = sum(t for i, t in enumerate(terms) if i != first_top)
    log_total = _log1p(rest) if rest <= 1 else (1 + rest).ln()
    return [t / (1 + rest) for t in terms], [d - log_total for d in shifted]


def _ulps(actual: np.ndarray, exact: list[Decimal], dtype: str) -> np.ndarray:
    """|actual - exact| in units of the last place of exact in ``dtype``, the spacing just
    below |exact| (np.spacing overflows at the largest value). Below the smallest normal
    number the unit is that number: subnormals carry fewer digits, and CUDA flushes
    them to zero, so precision there is absolute."""
    tiny = np.finfo(dtype).tiny
    errors = []
    for value, want in zip(actual.reshape(-1).tolist(), exact):
        size = np.abs(np.array(float(want), dtype=dtype))
        ulp = size - np.nextafter(size, 0) if size >= tiny else tiny
        errors.append(float(abs(Decimal(value) - want) / Decimal(float(ulp))))
    return np.array(errors).reshape(actual.shape)


# --- inputs over the whole range -----------------------------------------------------------
@functools.cache
def _points(dtype: str) -> np.ndarray:
    """Both signs of: magnitudes from the smallest subnormal to the largest finite value,
    a dense grid over the region where the functions change (to past the underflow of
    exp(-|x|)), and random points."""
    info = np.finfo(dtype)
    underflow = -math.log(float(info.smallest_subnormal))  # 103.3 (float32), 744.4
    magnitudes = np.concatenate(
        [
            np.geomspace(float(info.smallest_subnormal), float(info.max) / 2, 200),
            [float(info.max)],
            np.linspace(0.0, underflow + 5, 400),
            np.random.default_rng(0).uniform(0, 40, 200),
            [1.0, 9.0, 10.0, 17.0, 20.0, 38.0, 40.0, 88.7, 104.0, 709.0, 745.0],
        ]
    )
    return np.concatenate([magnitudes, -magnitudes]).astype(dtype)


@functools.cache
def _exact(name: str, dtype: str) -> tuple[list[Decimal], list[Decimal]]:
    function, derivative = ELEMENTWISE[name]
    with decimal.localcontext(CONTEXT):
        xs = [Decimal(float(x)) for x in _points(dtype)]
        return [function(x) for x in xs], [derivative(x) for x in xs]


def _rows(dtype: str) -> np.ndarray:
    """Rows of five: O(1) values, wide spreads, one value far above the rest (the log of
    the sum is then tiny), ties at the maximum, and magnitudes up to the dtype's limit
    with a spread that stays finite."""
    big = float(np.finfo(dtype).max)
    rng = np.random.default_rng(1)
    rows = [
        [0.0, -20.0, -30.0, -40.0, -50.0],
        [3.0, 3.0, -15.0, -40.0, 2.0],
        [1e4, 1e4 - 1, 1e4 - 20, -1e4, 0.0],
        [big, big * 0.5, big * 0.9, 0.0, -1.0],
        [-big * 0.4, -big * 0.4, big * 0.4, 1.0, -1e30],
        [100.3, -0.7, -5.1, 99.9, 90.0],
    ]
    for scale in (1.0, 10.0, 100.0, 1e3, 1e6):
        rows.extend((rng.standard_normal((4, 5)) * scale).tolist())
    return np.array(rows, dtype=dtype)


def _no_float_warnings():
    return np.errstate(over="raise", invalid="raise", divide="raise")


# --- elementwise functions ---------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_values_and_gradients_are_within_a_few_ulps(device, name, dtype):
    x = tg.Tensor(_points(dtype), requires_grad=True, device=device)
    with _no_float_warnings():
        out = getattr(x, name)()
        out.backward(np.ones(out.shape, dtype=dtype))  # not sum(): it would overflow
    values, slopes = _exact(name, dtype)
    value_ulps, slope_ulps = _ulps(out.numpy(), values, dtype), _ulps(x.grad.numpy(), slopes, dtype)
    for what, ulps, limit in (
        ("value", value_ulps, VALUE_ULPS),
        ("gradient", slope_ulps, GRADIENT_ULPS),
    ):
        worst = int(np.argmax(ulps))
        assert ulps[worst] <= limit, (
            f"{name} {what} at x = {x.numpy()[worst]!r} ({dtype}) is {ulps[worst]:.3g} ulps "
            f"off the exact {float((values if what == 'value' else slopes)[worst]):.17g}"
        )


# --- softmax and log_softmax --------------------------------------------------------
def _shift_sensitivity(rows: np.ndarray, probabilities: list[list[Decimal]]) -> np.ndarray:
    """Per element, sum_k |delta_jk - p_k| |x_k - max(x)|: how many ulps (relative) a
    rounding of 1 ulp in each difference x_k - max(x) moves softmax_j, and times
    |x_j - logsumexp(x)| the same for log_softmax_j."""
    p = np.array([[float(v) for v in row] for row in probabilities])
    distance = np.abs(rows.astype(np.float64) - rows.max(axis=1, keepdims=True))
    eye = np.eye(rows.shape[1])
    return np.einsum("njk,nk->nj", np.abs(eye[None] - p[:, None, :]), distance)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_log_softmax_are_within_a_few_ulps(device, dtype):
    rows = _rows(dtype)
    x = tg.Tensor(rows, device=device)
    with _no_float_warnings():
        probabilities, log_probabilities = x.softmax(axis=1), x.log_softmax(axis=1)
    with decimal.localcontext(CONTEXT):
        exact = [_softmax_row([Decimal(float(v)) for v in row]) for row in rows]
    exact_p = [p for p, _ in exact]
    exact_log = [log_p for _, log_p in exact]
    sensitivity = _shift_sensitivity(rows, exact_p)
    log_size = np.abs(np.array([[float(v) for v in row] for row in exact_log]))
    cases = [
        ("softmax", probabilities, exact_p, sensitivity),
        ("log_softmax", log_probabilities, exact_log, sensitivity / np.maximum(log_size, 1e-300)),
    ]
    for name, out, want, condition in cases:
        ulps = _ulps(out.numpy(), [v for row in want for v in row], dtype)
        limit = VALUE_ULPS + 2 * np.minimum(condition, 1e30)
        worst = np.unravel_index(int(np.argmax(ulps - limit)), ulps.shape)
        assert ulps[worst] <= limit[worst], (
            f"{name} of row {rows[worst[0]].tolist()} ({dtype}), element {worst[1]}: "
            f"{ulps[worst]:.3g} ulps off the exact {float(want[worst[0]][worst[1]]):.17g} "
            f"(limit {limit[worst]:.3g})"
        )
