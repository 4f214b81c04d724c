"""Your own ops (`tg.op`): registered nowhere unless asked, clear errors for a forward or
backward that breaks the contract, several inputs and outputs (the worked example of
docs/testing-your-ops.md: tests/test_benchmarks_lstm_op.py)."""

import math

import numpy as np
import pytest

import tinygrad_ee as tg
from tinygrad_ee.domains import BOOL, POSITIVE, REAL
from tinygrad_ee.ops import OpSpec, Registry


@tg.op(POSITIVE)
def log2(be, x):
    """log base 2."""
    return be.xp.log(x) / math.log(2.0), lambda g: (g / (x * math.log(2.0)),)


# --- registration ------------------------------------------------------------------------
def test_an_op_is_a_tensor_function_that_carries_its_spec_and_is_registered_nowhere():
    y = log2(tg.Tensor([8.0, 0.5], requires_grad=True))
    np.testing.assert_allclose(y.numpy(), [3.0, -1.0])
    assert log2.__name__ == "log2" and log2.__doc__ == "log base 2."
    assert log2.spec == OpSpec("log2", log2, log2.spec.forward, (POSITIVE,), "elementwise", "float")
    assert "log2" not in tg.REGISTRY


def test_registries_are_explicit_and_separate():
    mine, theirs = Registry(), Registry()
    assert mine.add(log2) is log2
    assert list(mine) == ["log2"] and not theirs and "log2" not in tg.REGISTRY

    @theirs.op(REAL, name="log2")  # another library's op of the same name
    def other_log2(be, x):
        return x, lambda g: (g,)

    assert mine["log2"].function is log2 and theirs["log2"].function is other_log2
    with pytest.raises(ValueError, match="an op named 'log2' is registered already"):
        mine.add(other_log2)
    with pytest.raises(TypeError, match="not an op made by tinygrad_ee.op"):
        mine.add(np.log)


# --- the contract, enforced --------------------------------------------------------------
def test_declaring_an_op_wrongly_is_an_error_at_once():
    with pytest.raises(TypeError, match=r"takes tensors \['x', 'y'\] .* but 1 domains were given"):
        tg.op(REAL)(lambda be, x, y: (x, None))
    with pytest.raises(TypeError, match="one tinygrad_ee.domains.Domain per tensor input"):
        tg.op()(lambda be, x: (x, None))
    with pytest.raises(ValueError, match="dtypes must be one of"):
        tg.op(REAL, dtypes="complex")


def test_inputs_must_hold_the_dtypes_the_op_accepts(device):
    @tg.op(BOOL, REAL, dtypes="numeric")
    def masked(be, mask, x):
        return be.xp.where(mask, x, 0), lambda g: (None, be.xp.where(mask, g, 0.0))

    x = tg.Tensor([1.0, 2.0], device=device)
    mask = tg.Tensor([True, False], device=device)
    np.testing.assert_array_equal(masked(mask, x).numpy(), [1.0, 0.0])
    assert str(masked(mask, tg.Tensor([3, 4], device=device)).dtype).endswith("int64")
    with pytest.raises(TypeError, match="masked: input 0 must hold bool values"):
        masked(x, x)
    with pytest.raises(TypeError, match="log2: input 0 must hold float values, got dtype int64"):
        log2(tg.Tensor(np.array([1, 2]), device=device))


def test_a_forward_or_backward_that_breaks_the_contract_is_named(device):
    @tg.op(REAL)
    def two_outputs(be, x):
        return (x, x), lambda g: (g,)

    @tg.op(REAL, multiple_outputs=True)
    def one_output(be, x):
        return x, lambda grads: (grads[0],)

    @tg.op(REAL)
    def bare_gradient(be, x):
        return x * 2, lambda g: g * 2  # not a tuple: would be zipped row by row

    @tg.op(REAL, REAL)
    def one_gradient(be, x, y):
        return x * y, lambda g: (g * y,)

    x = tg.Tensor(np.ones((2, 3)), requires_grad=True, device=device)
    with pytest.raises(TypeError, match="two_outputs: its forward returned 2 outputs; .* mult"):
        two_outputs(x)
    with pytest.raises(TypeError, match="one_output: an op with multiple_outputs=True returns"):
        one_output(x)
    with pytest.raises(TypeError, match="backward of bare_gradient returned \\w+ for its 1 inputs"):
        bare_gradient(x).sum().backward()
    with pytest.raises(TypeError, match="backward of one_gradient returned 1 gradients for its 2"):
        one_gradient(x, x).sum().backward()


def test_a_gradient_of_a_shape_the_input_does_not_broadcast_to_is_refused(device):
    @tg.op(REAL, REAL)
    def transposed(be, x, w):
        """x @ w with the weight's gradient transposed by mistake."""
        t = be.xp.matrix_transpose
        return x @ w, lambda g: (g @ t(w), t(t(x) @ g))

    @tg.op(REAL, REAL)
    def bias(be, x, b):
        """x + b: the engine sums b's broadcast gradient back itself."""
        return x + b, lambda g: (g, g)

    x = tg.Tensor(np.ones((2, 3)), requires_grad=True, device=device)
    w = tg.Tensor(np.ones((3, 4)), requires_grad=True, device=device)
    with pytest.raises(
        ValueError,
        match=r"of transposed returned a gradient of shape \(4, 3\) "
        r"for its input 1 of shape \(3, 4\): neither that shape nor one it",
    ):
        transposed(x, w).sum().backward()
    b = tg.Tensor(np.ones(3), requires_grad=True, device=device)
    bias(x, b).sum().backward()
    np.testing.assert_array_equal(b.grad.numpy(), [2.0, 2.0, 2.0])
