"""The backward walk: deep graphs, shared nodes, accumulation, release, no_grad, errors."""

import gc
import weakref

import numpy as np
import pytest

import tinygrad_ee as tg
from tinygrad_ee.domains import REAL
from tinygrad_ee.ops import DTYPE_KINDS
from tinygrad_ee.tensor import apply


def t(values, device, requires_grad=False, dtype="float64"):
    return tg.Tensor(np.asarray(values, dtype=dtype), requires_grad=requires_grad, device=device)


def test_ten_thousand_op_chain_backpropagates_without_recursion_error(device):
    x = t(1.0, device, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 1.0001**10_000, rtol=1e-9)


def test_reused_non_leaf_gets_the_sum_of_its_uses(device):
    a = t([1.5, -2.0], device, requires_grad=True)
    b = a * a
    c = b + b  # c = 2 a^2, dc/da = 4 a
    c.backward(t([1.0, 1.0], device))
    np.testing.assert_allclose(a.grad.numpy(), [6.0, -8.0])


def test_diamond_graph(device):
    x = t(0.5, device, requires_grad=True)
    y = x.exp()
    z = y * x.tanh() + y.log()  # e^x tanh x + x
    z.backward()
    expected = np.exp(0.5) * np.tanh(0.5) + np.exp(0.5) * (1 - np.tanh(0.5) ** 2) + 1
    np.testing.assert_allclose(x.grad.numpy(), expected)


def test_gradients_accumulate_across_backward_calls_until_zeroed(device):
    x = t([1.0, 2.0], device, requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0 + 2.0, 3.0 + 4.0])
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3.0, 3.0])


def test_broadcast_gradient_is_summed_back_to_each_input_shape(device):
    x = t(np.ones((2, 1, 3)), device, requires_grad=True)
    bias = t(np.ones((4, 3)), device, requires_grad=True)
    scale = t(2.0, device, requires_grad=True)
    (x * scale + bias).backward(t(np.ones((2, 4, 3)), device))
    assert x.grad.shape == (2, 1, 3) and bias.grad.shape == (4, 3) and scale.grad.shape == ()
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 1, 3), 8.0))
    np.testing.assert_allclose(bias.grad.numpy(), np.full((4, 3), 2.0))
    np.testing.assert_allclose(scale.grad.numpy(), 24.0)


def test_no_grad_records_nothing(device):
    x = t([1.0, 2.0], device, requires_grad=True)
    with tg.no_grad():
        y = (x * x).exp()
        assert not tg.is_grad_enabled()
    assert tg.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_detach_cuts_the_graph(device):
    x = t([1.0, 2.0], device, requires_grad=True)
    y = (x * x).detach() * x
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 4.0])


def test_graph_is_released_after_backward_unless_retained(device):
    x = t(np.ones(3), device, requires_grad=True)

    def build():
        saved = (x * 2.0).exp()  # exp saves its output for backward
        return saved, weakref.ref(saved.data), saved.sum()

    saved, saved_array, loss = build()
    del saved
    gc.collect()
    assert saved_array() is not None, "the graph holds what backward needs"
    loss.backward()
    gc.collect()
    assert saved_array() is None, "backward must release the saved arrays"

    saved, saved_array, loss = build()
    del saved
    loss.backward(retain_graph=True)
    gc.collect()
    assert saved_array() is not None
    loss.backward()  # a second pass works when the first retained the graph
    # three backward passes in all, each adding d(sum(exp(2x)))/dx = 2 exp(2)
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.exp(2.0) * np.ones(3))


def test_second_backward_through_a_freed_graph_is_an_error(device):
    x = t([1.0], device, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_backward_on_non_scalar_needs_a_gradient_of_its_shape(device):
    y = t(np.ones((2, 3)), device, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"shape \(2, 3\) needs a gradient"):
        y.backward()
    with pytest.raises(ValueError, match=r"gradient has shape \(3,\), expected \(2, 3\)"):
        y.backward(t(np.ones(3), device))


def test_backward_on_a_leaf_accumulates_the_seed(device):
    x = t([1.0, 2.0], device, requires_grad=True)
    x.backward(t([0.5, 0.25], device))
    np.testing.assert_allclose(x.grad.numpy(), [0.5, 0.25])


def test_only_floating_tensors_can_require_gradients(device):
    with pytest.raises(TypeError, match="only floating-point"):
        tg.Tensor([1, 2], requires_grad=True, device=device)


def test_unused_outputs_of_split_get_zero_gradient(device):
    x = t(np.arange(6.0), device, requires_grad=True)
    first, _, third = x.split(3)
    (first * 2.0 + third).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2, 2, 0, 0, 1, 1])


def test_unbind_backward_runs_once_however_many_steps_are_used(device):
    calls = []

    @tg.op(REAL, dtypes="any", multiple_outputs=True)
    def counting_unbind(be, x):
        pieces, backward = tg.REGISTRY["unbind"].forward(be, x)
        return pieces, lambda grads: calls.append(len(grads)) or backward(grads)

    x = t(np.ones((5, 2)), device, requires_grad=True)
    steps = counting_unbind(x)
    total = steps[0]
    for step in steps[1:]:
        total = total + step * 2.0
    total.sum().backward()
    assert calls == [5], "unbind's backward must assemble its gradient in one call"
    np.testing.assert_allclose(x.grad.numpy(), [[1, 1]] + [[2, 2]] * 4)


def test_a_constant_operand_gets_no_gradient_and_keeps_the_dtype(device):
    x = tg.Tensor([1.0, 2.0], requires_grad=True, device=device)  # float32
    y = 2.0 - x * 3
    assert y.dtype == x.dtype
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-3.0, -3.0])


def test_op_without_any_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="at least one input must be a Tensor"):
        apply(tg.REGISTRY["add"].forward, "add", (1.0, 2.0), {}, (DTYPE_KINDS["numeric"],) * 2)


def test_in_place_accumulation_never_touches_shared_or_user_held_arrays(device):
    """add's backward hands one array to both inputs; summing into one leaf's gradient
    in place must leave the other's alone, and a .grad held from an earlier backward
    must not change its array when the next backward accumulates."""
    a = tg.Tensor([1.0, 2.0], requires_grad=True, device=device)
    b = tg.Tensor([3.0, 4.0], requires_grad=True, device=device)
    # d/da = 1 + 1 + 2a + 3 (a used four times), d/db = 1
    ((a + b) + a + a * a + a * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 5.0 + 2 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    held = a.grad.data  # e.g. an optimiser's reference to last step's gradient
    held_values = a.grad.numpy()
    (a * 2.0 + a).sum().backward()  # accumulates 2 + 1 more into a.grad
    np.testing.assert_allclose(a.grad.numpy(), held_values + 3.0)
    np.testing.assert_array_equal(a.backend.to_host(held), held_values)


def test_a_weight_changed_between_backward_passes_gets_fresh_gradients(device):
    """A weight used in many products (a recurrence) may have its transpose cached for
    one backward pass; a second pass after the weight changed must not reuse it."""
    rng = np.random.default_rng(0)
    w = tg.Tensor(rng.normal(size=(3, 3)), device=device)
    for _ in range(2):
        h0 = tg.Tensor(rng.normal(size=(2, 3)), requires_grad=True, device=device)
        h = h0
        for _ in range(4):
            h = h @ w
        h.sum().backward()
        w_host = w.numpy()
        expected = np.ones((2, 3)) @ np.linalg.matrix_power(w_host, 4).T
        np.testing.assert_allclose(h0.grad.numpy(), expected, rtol=1e-10)
        w.data *= -0.5  # in place: same array, new values


@pytest.mark.parametrize("how", ["sum", "unbind"])
def test_a_0d_result_used_many_times_gets_every_contribution(device, how):
    """Three uses of one 0-d intermediate: its gradient sums three contributions, and a
    0-d NumPy sum is an immutable scalar that cannot be added into in place."""
    x = tg.Tensor([2.0], requires_grad=True, device=device)
    s = x.sum() if how == "sum" else x.unbind()[0]
    (s * s * s + s * 2.0).backward()  # d/dx = 3 s^2 + 2 = 14 at s = 2
    np.testing.assert_allclose(x.grad.numpy(), [14.0])
