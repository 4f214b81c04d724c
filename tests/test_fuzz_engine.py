"""Malformed input to the engine's public API: every case gets its documented error
(ValueError for shapes, TypeError for dtypes and non-tensors, IndexError for indices,
RuntimeError for a freed graph, AnomalyError for NaN/inf in anomaly mode), naming the
op, and never a silent wrong answer.

Shapes and dtypes are drawn at random and the outcome is compared with what NumPy's
own rules say should happen (an independent oracle), not with the engine itself.
"""

import re
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygrad_ee as tg
from tinygrad_ee import strategies

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
FLOAT_ONLY = sorted(name for name, spec in tg.REGISTRY.items() if spec.dtypes == "float")
NUMERIC = sorted(name for name, spec in tg.REGISTRY.items() if spec.dtypes == "numeric")
BINARY = sorted(name for name, spec in tg.REGISTRY.items() if spec.kind == "binary")


def _tensor(shape, dtype="float32", device="cpu"):
    return tg.Tensor(np.ones(shape, dtype=dtype), device=device)


@given(name=st.sampled_from(BINARY), first=shapes, second=shapes)
def test_binary_ops_broadcast_exactly_when_numpy_does(device, name, first, second):
    try:
        expected = np.broadcast_shapes(first, second)
    except ValueError:
        expected = None
    x, y = _tensor(first, device=device), _tensor(second, device=device)
    if expected is None:
        with pytest.raises(ValueError, match=rf"^{name}: .*\(inputs: {re.escape(str(first))}"):
            tg.REGISTRY[name].function(x, y)
    else:
        assert tg.REGISTRY[name].function(x, y).shape == expected


@given(
    first=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
    second=hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
)
def test_matmul_accepts_exactly_what_numpy_accepts(device, first, second):
    try:
        expected = np.matmul(np.ones(first), np.ones(second)).shape
    except ValueError:
        expected = None
    x = tg.Tensor(np.ones(first), requires_grad=True, device=device)
    y = tg.Tensor(np.ones(second), device=device)
    if expected is None:
        with pytest.raises(ValueError, match="^matmul: "):
            x @ y
    else:
        out = x @ y
        assert out.shape == expected
        out.sum().backward()
        assert x.grad.shape == first


@given(name=st.sampled_from(FLOAT_ONLY), data=st.data())
def test_float_only_ops_refuse_integer_and_bool_tensors(name, data):
    spec = tg.REGISTRY[name]
    args, params = data.draw(strategies.op_cases(spec), label="case")
    floats = [i for i, x in enumerate(args) if "float" in str(x.dtype)]
    index = data.draw(st.sampled_from(floats), label="input")
    dtype = data.draw(st.sampled_from(["int32", "int64", "bool"]), label="dtype")
    args = list(args)
    args[index] = tg.Tensor(np.zeros(args[index].shape, dtype=dtype))
    with pytest.raises(TypeError, match=rf"^{name}: input {index} must hold float values"):
        spec.function(*args, **params)


@given(name=st.sampled_from(NUMERIC), data=st.data())
def test_numeric_ops_refuse_bool_and_mixed_dtypes(name, data):
    spec = tg.REGISTRY[name]
    args, params = data.draw(strategies.op_cases(spec), label="case")
    index = data.draw(st.sampled_from(range(len(args))), label="input")
    replacement = data.draw(st.sampled_from(["bool", "float32", "int64"]), label="dtype")
    args = list(args)  # drawn in float64: float32 or int64 mixes dtypes, bool never fits
    args[index] = tg.Tensor(np.zeros(args[index].shape, dtype=replacement))
    if replacement == "bool":
        expected = rf"^{name}: input {index} must hold float or int values, got dtype bool"
    elif len(args) > 1:
        expected = rf"^{name}: inputs have different dtypes"
    else:
        result = spec.function(*args, **params)  # one input: any number type is fine
        assert result.dtype == args[0].dtype
        return
    with pytest.raises(TypeError, match=expected):
        spec.function(*args, **params)


@given(
    name=st.sampled_from(sorted(tg.REGISTRY)),
    junk=st.sampled_from(["text", None, [1.0, 2.0], np.ones(2), {"a": 1}, object()]),
    data=st.data(),
)
def test_anything_but_a_tensor_or_number_is_a_type_error(name, junk, data):
    spec = tg.REGISTRY[name]
    args, params = data.draw(strategies.op_cases(spec), label="case")
    args = list(args)
    args[data.draw(st.sampled_from(range(len(args))), label="replaced input")] = junk
    with pytest.raises(TypeError, match=rf"^{name}: inputs must be Tensors or Python numbers"):
        spec.function(*args, **params)


@pytest.mark.parametrize("number", [np.float64(0.5), np.float32(0.5), Fraction(1, 2), 0.5])
def test_number_constants_of_any_type_keep_the_tensors_dtype(device, number):
    x = tg.Tensor([1.0, 2.0], device=device)  # float32
    y = x * number
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(y.numpy(), [0.5, 1.0])


def test_constants_never_promote_an_integer_tensor(device):
    counts = tg.Tensor(np.array([1, 2]), device=device)
    with pytest.raises(TypeError, match="^add: a float constant with an integer tensor"):
        counts + 0.5
    with pytest.raises(TypeError, match="^where: a float constant with an integer tensor"):
        tg.where(counts > 1, counts, 0.5)
    with pytest.raises(OverflowError, match="^add: .*1000"):
        tg.Tensor(np.array([1, 2], dtype=np.int8), device=device) + 1000
    assert (counts + 1).dtype == counts.dtype


def test_booleans_are_counted_by_sum(device):
    matches = tg.Tensor([1.0, 2.0, 3.0], device=device) > 1.5
    assert matches.sum().item() == 2
    assert "int" in str(matches.sum().dtype)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_axis_out_of_range_is_a_value_error(device, name):
    with pytest.raises(ValueError, match=rf"^{name}: axis 2 is out of range for 2 axes"):
        tg.REGISTRY[name].function(tg.Tensor(np.ones((2, 3)), device=device), axis=2)


@given(name=st.sampled_from(sorted(tg.REGISTRY)), data=st.data())
def test_empty_tensors_give_an_empty_answer_or_a_value_error(name, data):
    """A zero-length axis: the op either works (and so does its backward) or raises
    ValueError naming itself; it never returns NaN from nothing or crashes."""
    spec = tg.REGISTRY[name]
    args, params = data.draw(strategies.op_cases(spec), label="case")
    empty_axis = data.draw(st.integers(0, 3), label="axis to empty")
    emptied = []
    for x in args:
        if "float" in str(x.dtype) and x.ndim > 0:
            shape = list(x.shape)
            shape[empty_axis % x.ndim] = 0
            x = tg.Tensor(np.zeros(shape), requires_grad=True)
        emptied.append(x)
    assume(any(x.size == 0 for x in emptied))
    try:
        out = spec.function(*emptied, **params)
    except (ValueError, IndexError) as error:
        assert str(error).startswith(f"{name}: "), error
        return
    outputs = out if isinstance(out, list) else [out]
    for piece in outputs:
        assert not np.isnan(piece.numpy()).any(), f"{name} made NaN from an empty input"
    total = sum((piece.sum() for piece in outputs), start=tg.Tensor(0.0, dtype="float64"))
    if outputs:  # unbind along an empty axis has no outputs, so nothing to differentiate
        total.backward()


@given(shape=shapes, grad_shape=shapes)
def test_backward_takes_a_gradient_of_exactly_the_tensors_shape(device, shape, grad_shape):
    x = tg.Tensor(np.ones(shape), requires_grad=True, device=device)
    y = x * 2.0
    seed = np.ones(grad_shape)
    if grad_shape != shape:
        with pytest.raises(ValueError, match=rf"gradient has shape {re.escape(str(grad_shape))}"):
            y.backward(seed)
        assert x.grad is None  # nothing was accumulated
    else:
        y.backward(seed)
        np.testing.assert_array_equal(x.grad.numpy(), np.full(shape, 2.0))


@given(shape=shapes.filter(lambda s: int(np.prod(s)) != 1))
def test_backward_of_a_non_scalar_needs_a_gradient(shape):
    y = tg.Tensor(np.ones(shape), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match="needs a gradient of that shape"):
        y.backward()


def test_backward_twice_without_retain_graph_is_refused(device):
    x = tg.Tensor([1.0, 2.0], requires_grad=True, device=device)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])  # not accumulated twice


def test_gradient_seeds_of_the_wrong_kind_are_refused(device):
    y = tg.Tensor([1.0, 2.0], requires_grad=True, device=device) * 2.0
    with pytest.raises(TypeError, match="gradient must hold floats, got dtype int64"):
        y.backward(np.array([1, 1]))
    with pytest.raises(TypeError, match="gradient has dtype float64, expected float32"):
        y.backward(tg.Tensor(np.ones(2), device=device))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (["a", "b"], TypeError, "data must be numbers or bools, got list holding <U1"),
        ([[1.0], [1.0, 2.0]], ValueError, "not a rectangular array"),
        ({"a": 1}, TypeError, "data must be numbers or bools, got dict"),
        (np.array(["a"]), TypeError, "data must be numbers or bools, got dtype <U1"),
    ],
)
def test_tensor_refuses_data_that_is_not_numbers(device, data, error, message):
    with pytest.raises(error, match=message):
        tg.Tensor(data, device=device)


@given(
    count=st.integers(1, 5),
    indices=st.lists(st.integers(-10, 10), min_size=1, max_size=6),
)
def test_gather_indices_out_of_range_are_index_errors(device, count, indices):
    table = tg.Tensor(np.arange(count * 2, dtype=np.float32).reshape(count, 2), device=device)
    index = tg.Tensor(np.array(indices), device=device)
    if all(0 <= i < count for i in indices):
        np.testing.assert_array_equal(table[index].numpy(), table.numpy()[indices])
    else:
        with pytest.raises(IndexError, match=rf"^gather: indices must lie in \[0, {count}\)"):
            table[index]


def test_clip_of_integers_with_float_bounds_is_refused_not_promoted(device):
    x = tg.Tensor(np.array([-3, 0, 3]), device=device)
    with pytest.raises(TypeError, match="integer tensor takes integer bounds"):
        x.clip(-1.0, 1.0)
    np.testing.assert_array_equal(x.clip(-1, 1).numpy(), [-1, 0, 1])
    assert x.clip(-1, 1).dtype == x.dtype
