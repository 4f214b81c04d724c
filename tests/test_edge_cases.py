"""Edge cases an op's property test does not reach: index dtypes, bad indices and axes,
devices in comparisons, casts, iteration, calling conventions, copies of the caller's
arrays, and clear errors for model inputs."""

import types

import numpy as np
import pytest
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier

import tinygrad_ee as tg
from tinygrad_ee import backend as backend_module
from tinygrad_ee import nn


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64"])
def test_gather_gradient_is_right_for_every_integer_dtype(device, dtype):
    table = tg.Tensor(np.zeros((250, 4)), requires_grad=True, device=device)
    rows = tg.Tensor(np.array([[10, 20, 200], [200, 3, 3]], dtype=dtype), device=device)
    table[rows].sum().backward()
    expected = np.zeros(250)
    for row in [10, 20, 200, 200, 3, 3]:
        expected[row] += 1
    np.testing.assert_array_equal(table.grad.numpy()[:, 0], expected)


def test_cross_entropy_with_narrow_targets_and_many_classes(device):
    logits = tg.Tensor(np.zeros((1, 300)), requires_grad=True, device=device)
    target = tg.Tensor(np.array([5], dtype="uint8"), device=device)
    tg.ops.cross_entropy(logits, target).backward()
    expected = np.full(300, 1 / 300)
    expected[5] -= 1
    np.testing.assert_allclose(logits.grad.numpy()[0], expected)


@pytest.mark.parametrize("bad", [-1, 4])
def test_gather_rejects_indices_out_of_range_on_every_backend(device, bad):
    x = tg.Tensor(np.ones((4, 2)), device=device)
    with pytest.raises(IndexError, match=r"gather: indices must lie in \[0, 4\)"):
        x[tg.Tensor(np.array([0, bad]), device=device)]


def test_getitem_rejects_array_indices_with_a_pointer_to_gather():
    x = tg.Tensor(np.ones((4, 2)))
    with pytest.raises(TypeError, match="index with an integer Tensor"):
        x[[0, 0]]
    with pytest.raises(TypeError, match="got ndarray"):
        x[np.array([0, 0])]


@pytest.mark.parametrize(
    "call",
    [
        lambda x: x.split(2, axis=2),
        lambda x: x.split(2, axis=-3),
        lambda x: x.unbind(axis=2),
        lambda x: tg.concat([x, x], axis=2),
        lambda x: tg.stack([x, x], axis=3),
    ],
)
def test_out_of_range_axes_are_errors(call):
    with pytest.raises(ValueError, match="out of range"):
        call(tg.Tensor(np.ones((4, 6))))


def test_zero_d_tensors_cannot_be_split_or_iterated():
    with pytest.raises(ValueError, match="0-d tensor"):
        tg.Tensor(3.0).split(1)
    with pytest.raises(ValueError, match="0-d tensor"):
        list(tg.Tensor(3.0))


def test_iterating_yields_the_rows(device):
    x = tg.Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True, device=device)
    rows = list(x)
    assert [r.shape for r in rows] == [(2,)] * 3
    (rows[0] * 2.0 + rows[2]).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[2, 2], [0, 0], [1, 1]])


def test_comparisons_across_devices_name_both():
    with pytest.raises(tg.DeviceError, match="lt: tensors on different devices, cpu and strict"):
        _ = tg.Tensor([1.0, 2.0]) < tg.Tensor([1.0, 2.0], device="strict")


def test_cast_to_an_integer_dtype_has_no_gradient(device):
    x = tg.Tensor(np.array([1.5, 2.5]), requires_grad=True, device=device)
    assert not x.astype("int64").requires_grad
    assert x.astype("float32").requires_grad


def test_pow_with_a_constant_tensor_exponent_and_a_negative_base(device):
    x = tg.Tensor(np.array([-2.0, 0.0, 3.0]), requires_grad=True, device=device)
    (x ** tg.Tensor(np.array(2.0), device=device)).sum().backward()  # no log() warning
    np.testing.assert_allclose(x.grad.numpy(), [-4.0, 0.0, 6.0])


def test_zeros_and_ones_take_an_int_shape(device):
    assert tg.zeros(3, device=device).shape == (3,)
    assert tg.ones((2, 3), device=device, dtype="float64").numpy().sum() == 6.0


def test_models_name_the_shape_they_expected():
    model = SequenceClassifier("gru", input_size=3, classes=2, hidden_size=4)
    with pytest.raises(ValueError, match=r"shape \(B, T, 3\) with T > 0, got \(2, 5\)"):
        model.loss(tg.Tensor(np.ones((2, 5))), tg.Tensor(np.array([0, 1])))
    lm = FourGramLanguageModel(10, 2, 4)
    with pytest.raises(ValueError, match=r"context must have shape \(N, 3\), got \(2, 4\)"):
        lm.logits(tg.Tensor(np.zeros((2, 4), dtype=np.int64)))


def test_cupy_that_fails_to_import_is_not_called_missing(monkeypatch):
    monkeypatch.setattr(backend_module, "_BACKENDS", {})

    def broken_import(name):
        raise ImportError("CuPy is not correctly installed: libcudart.so.12 not found")

    monkeypatch.setattr(backend_module.importlib, "import_module", broken_import)
    with pytest.raises(tg.DeviceError, match="installed but fails to import .*libcudart"):
        tg.get_backend("cuda")


def test_cupy_namespace_has_a_bool_dtype_even_on_cupy_13():
    legacy = types.SimpleNamespace(
        concatenate=np.concatenate,
        transpose=np.transpose,
        power=np.power,
        swapaxes=np.swapaxes,
        bool_=np.bool_,
    )
    assert backend_module._cupy_namespace(legacy).bool is np.bool_


# --- calling conventions, casts, indices, copies ----------------------------------------
def test_split_and_unbind_take_their_arguments_by_position(device):
    x = tg.Tensor(np.arange(12.0).reshape(2, 6), requires_grad=True, device=device)
    halves = tg.split(x, 2, 1)
    assert [piece.shape for piece in halves] == [(2, 3), (2, 3)]
    np.testing.assert_array_equal(halves[1].numpy(), [[3, 4, 5], [9, 10, 11]])
    assert [piece.shape for piece in tg.split(x, [1, 5], axis=1)] == [(2, 1), (2, 5)]
    columns = tg.unbind(x, 1)
    assert len(columns) == 6 and columns[2].shape == (2,)
    (halves[0].sum() + columns[5].sum()).backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1, 1, 0, 0, 1]] * 2)


def test_split_refuses_extra_or_repeated_arguments():
    x = tg.Tensor(np.zeros((2, 4)))
    with pytest.raises(TypeError, match=r"split\(\) takes from 1 to 3 positional arguments"):
        tg.split(x, 2, 1, 0)
    with pytest.raises(TypeError, match=r"split\(\) got multiple values for argument 'sections'"):
        tg.split(x, 2, sections=2)


@pytest.mark.parametrize(
    "dtype, shown",
    [(object, "object"), (np.dtype("O"), "object"), (np.str_, "str_"), (float, "float")],
)
def test_astype_refuses_dtypes_that_are_not_numbers_or_bools(device, dtype, shown):
    x = tg.Tensor(np.arange(3.0), requires_grad=True, device=device)
    with pytest.raises(TypeError, match=rf"astype: dtype must be a number or bool .*got {shown}"):
        x.astype(dtype)
    with pytest.raises(TypeError, match="astype: dtype must be"):
        tg.astype(x, dtype=dtype)


def test_numpy_integers_index_like_python_ints(device):
    x = tg.Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True, device=device)
    for one, other in [(np.int64(1), 1), (np.uint8(2), 2), (np.int32(-1), -1)]:
        np.testing.assert_array_equal(x[one].numpy(), x[other].numpy())
    np.testing.assert_array_equal(x[np.int16(1), np.int64(3)].numpy(), 7.0)
    np.testing.assert_array_equal(x[np.int64(1) :, np.int8(0)].numpy(), [4.0, 8.0])
    x[np.int64(2)].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0] * 4, [0] * 4, [1] * 4])


@pytest.mark.parametrize("index", [True, np.bool_(False), 1.0, (0, True)])
def test_bools_and_floats_are_not_indices(index):
    # NumPy would read True as a new axis of length 1.
    with pytest.raises(TypeError, match="index entries must be ints"):
        tg.Tensor(np.zeros((2, 2)))[index]


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_a_tensor_never_shares_memory_with_the_callers_array(device, dtype):
    array = np.arange(4.0)
    x = tg.Tensor(array, dtype=dtype, device=device)
    p = nn.Parameter(array, device=device)
    array[0] = 99.0  # changing the caller's array changes neither
    np.testing.assert_array_equal(x.numpy(), [0, 1, 2, 3])
    np.testing.assert_array_equal(p.numpy(), [0, 1, 2, 3])
    if device == "cpu":  # and an update of the tensor in place (NumPy allows it) spares it
        p.data += 1
        assert array[1] == 1.0


def test_a_backward_seed_from_the_caller_is_copied(device):
    x = tg.Tensor(np.zeros(3), requires_grad=True, device=device)
    seed = np.ones(3)
    x.backward(seed)  # a leaf: the seed becomes its gradient
    seed[0] = 99.0
    np.testing.assert_array_equal(x.grad.numpy(), [1, 1, 1])


def test_top_k_refuses_k_below_one_and_gives_every_word_for_k_above_the_vocabulary():
    model = FourGramLanguageModel(vocab_size=5, embedding_dim=2, hidden_size=3)
    context = tg.Tensor(np.array([[0, 1, 2], [4, 4, 4]]))
    for bad in [0, -1, 2.5, True, "3"]:
        with pytest.raises(ValueError, match=r"top_k: k must be a positive integer"):
            model.top_k(context, bad)
    words, probabilities = model.top_k(context, 7)
    assert words.shape == probabilities.shape == (2, 5)
    assert (np.sort(words, axis=1) == np.arange(5)).all()  # every word, once
    assert (np.diff(probabilities, axis=1) <= 0).all()  # most probable first
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    top2, _ = model.top_k(context, np.int64(2))
    np.testing.assert_array_equal(top2, words[:, :2])
