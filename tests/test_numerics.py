"""Numerical stability at extreme inputs, and the conventions for ties."""

import math
import warnings

import numpy as np
import pytest

import tinygrad_ee as tg

EXTREMES = [1e4, -1e4, 0.0, 1e4 - 1.0, -30.0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x.sigmoid(),
        lambda x: x.softmax(),
        lambda x: x.log_softmax(),
        lambda x: x.logsumexp(keepdims=True),
        lambda x: x.tanh(),
        lambda x: x.softplus(),
        lambda x: x.log_sigmoid(),
    ],
    ids=["sigmoid", "softmax", "log_softmax", "logsumexp", "tanh", "softplus", "log_sigmoid"],
)
def test_values_and_gradients_stay_finite_at_plus_minus_1e4(device, dtype, fn):
    x = tg.Tensor(np.array(EXTREMES, dtype=dtype), requires_grad=True, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow or invalid-value warning fails
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            out = fn(x)
            out.backward(
                tg.Tensor(
                    np.linspace(-1, 1, out.size).reshape(out.shape), device=device, dtype=dtype
                )
            )
    assert np.all(np.isfinite(out.numpy())), out.numpy()
    assert np.all(np.isfinite(x.grad.numpy())), x.grad.numpy()


def test_extreme_values_are_right(device):
    x = tg.Tensor(np.array([1e4, -1e4, 0.0]), device=device)
    np.testing.assert_allclose(x.sigmoid().numpy(), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(x.log_softmax().numpy(), [0.0, -2e4, -1e4])
    np.testing.assert_allclose(x.logsumexp().numpy(), 1e4)
    np.testing.assert_allclose(x.softmax().numpy(), [1.0, 0.0, 0.0])


LARGE = [-700.0, -100.0, -30.0, -1.0, 0.5, 30.0, 100.0, 700.0]


@pytest.mark.parametrize(
    "name, points",
    [
        # sigmoid near 1 rounds to 1 within 1e-16, so finite differences cannot see its
        # gradient of 1e-14 at x = 30: its small tail is checked here, both tails against
        # the exact reference in test_precision.py.
        ("sigmoid", [p for p in LARGE if p < 1]),
        ("softplus", LARGE),
        ("log_sigmoid", LARGE),
    ],
)
def test_logistic_gradients_match_finite_differences_at_large_magnitudes(device, name, points):
    # atol=0: a gradient as small as e^-700 is held to the same relative tolerance as 1.
    # One point at a time, so that no larger output swamps the finite difference.
    for value in points:
        x = tg.Tensor(np.array([value]), requires_grad=True, device=device)
        tg.gradcheck(getattr(tg, name), x, atol=0.0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_gradients_match_finite_differences_at_large_magnitudes(device, name):
    rows = [[1e4, 1e4 - 1.0, 1e4 - 3.0], [-1e4, -1e4 + 2.0, -1e4 + 0.5], [700.0, 0.0, 690.0]]
    x = tg.Tensor(np.array(rows), requires_grad=True, device=device)
    tg.gradcheck(lambda x: getattr(x, name)(axis=1), x)


def test_max_splits_the_gradient_equally_between_ties(device):
    x = tg.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True, device=device)
    x.max(axis=1).backward(tg.Tensor(np.array([1.0, 6.0]), device=device))
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [2, 2, 2]])
    y = tg.Tensor(np.array([5.0, 1.0, 5.0]), requires_grad=True, device=device)
    y.max().backward()
    np.testing.assert_allclose(y.grad.numpy(), [0.5, 0, 0.5])


def test_argmax_picks_the_first_of_tied_maxima(device):
    x = tg.Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), device=device)
    np.testing.assert_array_equal(x.argmax(axis=1).numpy(), [1, 0])
    assert x.argmax().item() == 1


def test_relu_and_abs_have_zero_gradient_at_zero(device):
    x = tg.Tensor(np.array([0.0, 0.0]), requires_grad=True, device=device)
    (x.relu() + x.abs()).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0])


@pytest.mark.parametrize("exponent", ["number", "tensor"])
def test_power_zero_has_gradient_zero_even_at_zero(device, exponent):
    # d/dx x^0 = 0 everywhere: not 0 * x^-1 = nan at x = 0 (with a divide warning,
    # which the test configuration makes an error).
    x = tg.Tensor(np.array([0.0, 1.5, -2.0]), requires_grad=True, device=device)
    power = 0 if exponent == "number" else tg.Tensor(np.zeros(3), device=device)
    (x**power).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.0, 0.0])


def test_tensor_exponent_gradient_is_right_where_some_exponents_are_zero(device):
    x = tg.Tensor(np.array([0.0, 1.5, 0.0, 2.0]), requires_grad=True, device=device)
    y = tg.Tensor(np.array([0.0, 0.0, 2.0, 3.0]), device=device)
    (x**y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 0.0, 3 * 2.0**2])


def test_log_sums_dominated_by_one_term_keep_their_small_part(device):
    # log(e^0 + e^-40) = log1p(e^-40), about 4.2e-18: not 0, which log(1 + e^-40) gives.
    x = tg.Tensor(np.array([0.0, -40.0]), device=device)
    small = math.log1p(math.exp(-40.0))
    np.testing.assert_allclose(x.logsumexp().item(), small, rtol=4e-16)
    np.testing.assert_allclose(x.log_softmax().numpy(), [-small, -40.0 - small], rtol=4e-16)
    ties = tg.Tensor(np.array([3.0, 3.0, -40.0]), device=device)
    np.testing.assert_allclose(ties.logsumexp().item(), 3.0 + math.log(2.0), rtol=4e-16)
