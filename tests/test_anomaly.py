"""Anomaly mode: the first NaN/inf, forward or backward, is reported with the op,
its input shapes and the user's line; off by default and restored after the block."""

import inspect

import numpy as np
import pytest
from tinygrad_ee.models import SparseAutoencoder

import tinygrad_ee as tg


# NumPy warns about the very values anomaly mode is there to find.
def quiet():
    return np.errstate(all="ignore")


def _this_line() -> int:
    return inspect.currentframe().f_back.f_lineno


def test_planted_nan_in_a_backward_names_the_op_and_the_users_line(device):
    x = tg.Tensor([4.0, 0.0, 9.0], requires_grad=True, device=device)
    with tg.detect_anomaly(), quiet():
        # sqrt is finite at 0 but its gradient 1/(2 sqrt x) is not: 0 * inf = nan there
        root, line = x.sqrt(), _this_line()
        loss = (root * tg.Tensor([1.0, 0.0, 1.0], device=device)).sum()
        with pytest.raises(tg.AnomalyError) as caught:
            loss.backward()
    message = str(caught.value)
    assert "backward of sqrt produced nan" in message
    assert "(3,) float32" in message
    assert f"{__file__}:{line}" in message
    assert "root, line = x.sqrt()" in message


def test_forward_overflow_names_the_op_shapes_and_line(device):
    x = tg.Tensor(np.full((2, 3), 100.0), device=device, dtype="float32")
    with tg.detect_anomaly(), quiet(), pytest.raises(tg.AnomalyError) as caught:
        line = _this_line() + 1
        (x * 2).exp()
    message = str(caught.value)
    assert message.startswith("exp produced inf from finite inputs")
    assert "(2, 3) float32" in message
    assert f"{__file__}:{line}" in message


def test_nan_hidden_by_relu_is_still_caught_where_it_enters(device):
    data = tg.Tensor([1.0, np.nan], device=device)
    with (
        tg.detect_anomaly(),
        pytest.raises(tg.AnomalyError, match="relu was given nan in its input 0"),
    ):
        data.relu()  # relu maps nan to 0: the output alone would hide it


def test_nan_in_a_models_loss_is_traced_to_the_model_source():
    model = SparseAutoencoder(4, 2)
    patches = tg.Tensor(np.full((3, 4), 0.5), dtype="float32")
    model.encoder.weight.data[0, 0] = np.inf
    where = r"linear was given inf in its input 1 .* at .*models/autoencoder\.py:\d+ in encode"
    with tg.detect_anomaly(), quiet(), pytest.raises(tg.AnomalyError, match=where):
        model.loss(patches, 1e-4, 1.0, 0.1)


def test_off_by_default_nan_flows_through_silently(device):
    assert not tg.is_anomaly_enabled()
    x = tg.Tensor([-1.0], requires_grad=True, device=device)
    with quiet():
        y = x.log()
        y.backward()
    assert np.isnan(y.numpy()[0])


def test_mode_is_restored_after_an_error_and_can_be_nested_off():
    with pytest.raises(tg.AnomalyError), tg.detect_anomaly(), quiet():
        assert tg.is_anomaly_enabled()
        with tg.detect_anomaly(False):
            assert not tg.is_anomaly_enabled()
        tg.Tensor([0.0]).log()
    assert not tg.is_anomaly_enabled()


def test_a_non_finite_gradient_seed_is_reported():
    x = tg.Tensor([1.0, 2.0], requires_grad=True)
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match="gradient holding inf"):
        (x * 2).backward(np.array([1.0, np.inf], dtype=np.float32))


def test_graph_recorded_outside_the_mode_says_so():
    x = tg.Tensor([0.0], requires_grad=True)
    y = x.sqrt() * 0.0
    with (
        tg.detect_anomaly(),
        quiet(),
        pytest.raises(tg.AnomalyError, match="outside detect_anomaly"),
    ):
        y.backward(np.ones(1, dtype=np.float32))


def test_split_outputs_are_checked_too():
    x = tg.Tensor([1.0, np.inf])
    with tg.detect_anomaly(), pytest.raises(tg.AnomalyError, match="split was given inf"):
        tg.split(x, sections=2)


def test_clean_graph_gives_the_same_gradients_in_anomaly_mode(device):
    values = np.array([[0.5, -1.0], [2.0, 0.25]], dtype=np.float32)
    grads = []
    for on in (False, True):
        x = tg.Tensor(values, requires_grad=True, device=device)
        with tg.detect_anomaly(on):
            (x.tanh() * x.exp()).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_a_non_finite_sum_reaching_a_split_is_reported_at_the_split():
    """Gradients from several uses are summed without a check; the sum's overflow is
    caught at the next backward (here unbind's), which says its input was non-finite."""
    x = tg.Tensor([0.5, 0.5], requires_grad=True, dtype="float16")  # forward: 60000, finite
    first, _ = x.unbind()
    loss = first * 60000.0 + first * 60000.0  # each gradient fits float16, their sum not
    with tg.detect_anomaly(), quiet(), pytest.raises(tg.AnomalyError) as caught:
        loss.backward()
    assert "backward of unbind produced inf" in str(caught.value)
    assert "the incoming gradient was non-finite" in str(caught.value)


def test_unneeded_gradients_are_not_reported():
    """pow's exponent gradient holds log(base): NaN for a negative base, but a constant
    exponent tensor needs no gradient, so nothing is wrong."""
    base = tg.Tensor([-2.0, 3.0], requires_grad=True)
    exponent = tg.Tensor([2.0, 2.0])
    with tg.detect_anomaly(), quiet():
        (base**exponent).sum().backward()
    np.testing.assert_allclose(base.grad.numpy(), [-4.0, 6.0])


def test_a_non_finite_python_constant_is_named_as_an_input():
    x = tg.Tensor([1.0])
    with tg.detect_anomaly(), quiet(), pytest.raises(tg.AnomalyError, match="add was given inf"):
        x + float("inf")


def test_a_0d_float64_result_is_checked_like_any_array(device):
    """NumPy makes a 0-d float64 result a NumPy scalar, which is a Python float too:
    it is still an op's result, not a constant, and is checked."""
    x = tg.Tensor(0.0, dtype="float64", device=device)
    with tg.detect_anomaly(), quiet(), pytest.raises(tg.AnomalyError, match="^log produced -?inf"):
        x.log()
