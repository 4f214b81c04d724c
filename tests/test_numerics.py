"""Numerical stability at extreme inputs, and the conventions for ties."""

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
    ],
    ids=["sigmoid", "softmax", "log_softmax", "logsumexp", "tanh"],
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
