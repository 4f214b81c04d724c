"""gradcheck itself: it must catch wrong backwards, including ones an all-ones seed misses."""

import math

import numpy as np
import pytest

import tinygrad_ee as tg
from tinygrad_ee.domains import REAL
from tinygrad_ee.ops import DTYPE_KINDS
from tinygrad_ee.tensor import apply


def softmax_with_wrong_backward(x):
    """Softmax whose backward subtracts mean(g) instead of sum(g * s): s (g - mean(g)).

    For an all-ones cotangent both give 0, so a check seeded with ones passes it.
    """

    def forward(be, x):
        out = tg.REGISTRY["softmax"].forward(be, x)[0]
        return out, lambda g: (out * (g - be.xp.mean(g, axis=-1, keepdims=True)),)

    return apply(forward, "softmax_wrong", (x,), {}, (DTYPE_KINDS["float"],))


def test_a_wrong_backward_is_caught_and_the_worst_element_named(device):
    x = tg.Tensor(np.random.default_rng(1).normal(size=(3, 4)), requires_grad=True, device=device)
    with pytest.raises(
        tg.GradcheckError, match=r"input 0 \(shape \(3, 4\)\) at element \(\d, \d\)"
    ):
        tg.gradcheck(softmax_with_wrong_backward, x)


def test_the_wrong_softmax_backward_passes_an_all_ones_check(device):
    """Why gradcheck uses a random cotangent: with g = 1 the wrong term vanishes."""
    x = tg.Tensor(np.random.default_rng(2).normal(size=(3, 4)), requires_grad=True, device=device)
    ones_wrong = softmax_with_wrong_backward(x)
    ones_wrong.backward(tg.Tensor(np.ones((3, 4)), device=device))
    np.testing.assert_allclose(x.grad.numpy(), 0.0, atol=1e-12)  # the true gradient, too


def test_correct_gradient_passes_and_errors_are_reported_clearly(device):
    x = tg.Tensor(np.linspace(0.5, 2.0, 6).reshape(2, 3), requires_grad=True, device=device)
    assert tg.gradcheck(lambda x: x.log() * x, x)
    with pytest.raises(TypeError, match="use float64"):
        tg.gradcheck(lambda x: x * 2, tg.Tensor([1.0], requires_grad=True, device=device))
    with pytest.raises(ValueError, match="no input has requires_grad"):
        tg.gradcheck(lambda x: x * 2, tg.Tensor(np.ones(2), device=device))


def test_gradcheck_leaves_the_callers_gradients_alone():
    x = tg.Tensor(np.ones(3), requires_grad=True)
    tg.gradcheck(lambda x: x * x, x)
    assert x.grad is None


def test_a_nan_gradient_fails_and_names_its_element(device):
    """NaN compares false with everything: a check written as "error > tolerance" would
    pass it."""

    @tg.op(REAL)
    def nan_backward(be, x):
        return x * 2.0, lambda g: (be.xp.where(x > 0, g * 2.0, math.nan),)

    x = tg.Tensor(np.array([1.0, -1.0, 2.0]), requires_grad=True, device=device)
    with pytest.raises(
        tg.GradcheckError, match=r"at element \(1,\): engine gradient nan"
    ) as caught:
        tg.gradcheck(nan_backward, x)
    assert (caught.value.input, caught.value.element) == (0, (1,))
