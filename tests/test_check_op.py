"""check_op itself: a correct op passes on every backend; each mistake a hand-derived
backward makes is caught, shrunk to a small call, and reported naming the input, the
backend and the worst element."""

import math
import re
from pathlib import Path

import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_ee as tg
from tinygrad_ee.domains import REAL, Domain
from tinygrad_ee.testing import CHECKS, OpCheckError, available_devices, check_op

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing-your-ops.md"
MATRICES = hnp.array_shapes(min_dims=2, max_dims=2, max_side=4).map(lambda shape: (shape,))
SQUARES = st.integers(1, 4).map(lambda n: ((n, n),))
MATRIX_AND_ROWS = MATRICES.map(lambda shapes: (shapes[0], shapes[0][:1]))


def shapes_in(message: str) -> list[tuple[int, ...]]:
    """The input shapes of the call an OpCheckError shows."""
    call = message.split("\n  call: ", 1)[1]
    return [
        tuple(int(n) for n in re.findall(r"\d+", s)) for s in re.findall(r"shape (\([^)]*\))", call)
    ]


def caught(op, **options) -> str:
    with pytest.raises(OpCheckError) as error:
        check_op(op, **options)
    print(error.value)  # shown with -s
    return str(error.value)


# --- a correct op, and a wrong sign ---------------------------------------------------------
@tg.op(REAL)
def swish(be, x):
    """x sigmoid(x); its derivative is s + x s (1 - s)."""
    s = 1 / (1 + be.xp.exp(-x))
    return x * s, lambda g: (g * (s + x * s * (1 - s)),)


@tg.op(REAL, name="swish")
def swish_wrong_sign(be, x):
    s = 1 / (1 + be.xp.exp(-x))
    return x * s, lambda g: (g * (s - x * s * (1 - s)),)  # planted: - for +


def test_a_correct_op_passes_on_every_available_backend():
    assert {"cpu", "strict"} <= set(available_devices())  # and "cuda" where CuPy sees a GPU
    check_op(swish)


def test_a_wrong_sign_is_caught_shrunk_and_named():
    message = caught(swish_wrong_sign)
    assert message.startswith("check_op(swish) on 'cpu': the gradient of input 0 (x) is wrong")
    assert re.search(r"at element \([\d, ]*\): engine gradient", message)
    assert math.prod(shapes_in(message)[0]) == 1  # shrunk to one element


# --- a missing broadcast reduction ---------------------------------------------------------
@tg.op(REAL, REAL)
def scale_rows(be, x, s):
    """x (n, m) with row i times s[i], s (n,). The op broadcasts s itself (as a column),
    so its backward sums s's gradient back itself: the engine only undoes broadcasting
    by NumPy's rules, which line s up with x's columns."""
    column = be.xp.reshape(s, (-1, 1))
    return x * column, lambda g: (g * column, be.xp.sum(g * x, axis=1))


@tg.op(REAL, REAL, name="scale_rows")
def scale_rows_unreduced(be, x, s):
    column = be.xp.reshape(s, (-1, 1))
    return x * column, lambda g: (g * column, g * x)  # planted: no sum over each row


def test_a_missing_broadcast_reduction_is_caught():
    check_op(scale_rows, shapes=MATRIX_AND_ROWS)
    message = caught(scale_rows_unreduced, shapes=MATRIX_AND_ROWS)
    assert message.startswith("check_op(scale_rows) on 'cpu': ")
    # n != m: a gradient of x's shape for s is refused; n == m: it is summed the wrong way
    assert "for its input 1 of shape" in message or "the gradient of input 1 (s)" in message


# --- a gradient for the wrong input --------------------------------------------------------
@tg.op(REAL, REAL)
def scaled_exp(be, x, y):
    """x e^y, broadcasting."""
    e = be.xp.exp(y)
    return x * e, lambda g: (g * e, g * x * e)


@tg.op(REAL, REAL, name="scaled_exp")
def scaled_exp_swapped(be, x, y):
    e = be.xp.exp(y)
    return x * e, lambda g: (g * x * e, g * e)  # planted: each input gets the other's


def test_a_gradient_for_the_wrong_input_is_caught():
    check_op(scaled_exp)
    message = caught(scaled_exp_swapped)
    assert re.match(
        r"check_op\(scaled_exp\) on 'cpu': the gradient of input [01] \([xy]\)", message
    )
    assert "at element" in message


# --- a backward right only for square inputs ------------------------------------------------
@tg.op(REAL)
def row_means(be, x):
    """The mean of each row: x (n, m) -> (n,)."""
    xp = be.xp
    return xp.mean(x, axis=1), lambda g: (xp.broadcast_to(g[:, None], x.shape) / x.shape[1],)


@tg.op(REAL, name="row_means")
def row_means_square_only(be, x):
    xp = be.xp
    return xp.mean(x, axis=1), lambda g: (xp.broadcast_to(g[:, None], x.shape) / x.shape[0],)


def test_a_backward_right_only_for_square_inputs_is_caught_on_a_non_square_one():
    check_op(row_means, shapes=MATRICES)
    check_op(row_means_square_only, shapes=SQUARES)  # what a test of square inputs sees
    message = caught(row_means_square_only, shapes=MATRICES)
    assert "the gradient of input 0 (x) is wrong" in message
    ((rows, columns),) = shapes_in(message)
    assert rows != columns


# --- a float32 backward that loses precision badly ----------------------------------------
LOGITS = Domain("logits", low=-30.0, high=30.0)  # saturating values are part of its range


@tg.op(LOGITS)
def logistic(be, x):
    """1 / (1 + e^-x) from e = exp(-|x|) (never overflows); its derivative is e r^2 with
    r = 1 / (1 + e), at full relative precision in both tails."""
    e = be.xp.exp(-be.xp.abs(x))
    r = 1 / (1 + e)
    return be.xp.where(x >= 0, r, e * r), lambda g: (g * e * r * r,)


@tg.op(LOGITS, name="logistic")
def logistic_imprecise(be, x):
    e = be.xp.exp(-be.xp.abs(x))
    out = be.xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, lambda g: (g * out * (1 - out),)  # planted: 1 - out is 0 once out rounds to 1


def test_a_float32_backward_that_loses_precision_is_caught():
    check_op(logistic)
    check_op(logistic_imprecise, checks=["gradient"])  # right in float64
    message = caught(logistic_imprecise)
    assert message.startswith(
        "check_op(logistic) on 'cpu': in float32, the gradient of input 0 (x) differs from "
        "float64 at element"
    )
    logit = float(
        re.search(r"call: logistic\(x: shape \(1?,?\) float64 = \[?(\S+?)\]?\)", message)[1]
    )
    assert logit > 8  # shrunk into the tail where float32 rounds sigmoid(x) to 1


# --- the other checks ----------------------------------------------------------------------
state = {"calls": 0}


@tg.op(REAL)
def counted(be, x):
    """x times the number of calls so far: a Python value a compiled step freezes."""
    state["calls"] += 1
    return x * state["calls"], lambda g: (g * state["calls"],)


@tg.op(REAL)
def reads_a_value(be, x):
    """Scales by max(x) read in Python: a compiled step cannot replay that."""
    top = float(be.xp.max(x))
    return x * top, lambda g: (g * top,)  # (not a gradient of anything: never reached)


def test_an_op_that_a_compiled_step_cannot_replay_is_caught():
    message = caught(counted, checks=["compiled"])
    assert re.search(r"compiled \((traced call|replay)\), the .* differs from eager at", message)
    message = caught(reads_a_value, checks=["compiled"])
    assert "the compiled step (traced call) raised TraceError" in message


@tg.op(REAL)
def reciprocal(be, x):
    """1 / x, declared on REAL (which holds 0) by mistake: NONZERO is its domain."""
    out = 1 / x
    return out, lambda g: (-g * out * out,)


@tg.op(REAL)
def integer_part(be, x):
    """Reads x's top value on the host, which a NaN makes fail before anomaly mode sees it."""
    top = int(be.xp.max(x)) if x.ndim == 0 else 0
    return x * 1.0 + top * 0.0, lambda g: (g,)


def test_anomaly_checks_catch_a_wrong_domain_and_a_swallowed_nan():
    message = caught(reciprocal, checks=["anomaly"])
    assert "a clean run under detect_anomaly() raised AnomalyError: reciprocal produced inf" in (
        message
    )
    message = caught(integer_part, checks=["anomaly"])
    assert re.search(
        r"at element \(\) of input 0 \(x\) raised (Value|Overflow)Error.*, not Anom", message
    )


def test_check_op_refuses_what_it_cannot_check():
    with pytest.raises(TypeError, match="not an op made by tinygrad_ee.op"):
        check_op(lambda x: x)
    with pytest.raises(ValueError, match=r"unknown checks \['speed'\]"):
        check_op(swish, checks=["gradient", "speed"])
    with pytest.raises(tg.DeviceError):
        check_op(swish, devices=["tpu"])
    assert set(CHECKS) == {"gradient", "float32", "compiled", "anomaly"}
