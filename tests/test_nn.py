"""Modules, layers, initialisers and losses: discovery, saving, gradients, numerics."""

import decimal
import doctest
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_ee as tg
from tinygrad_ee import nn
from tinygrad_ee.strategies import arrays


def t(values, device, requires_grad=False, dtype="float64"):
    return tg.Tensor(np.asarray(values, dtype=dtype), requires_grad=requires_grad, device=device)


class Block(nn.Module):
    def __init__(self, device="cpu"):
        self.encoder = nn.Linear(3, 2, device=device)
        self.layers = [nn.Linear(2, 2, device=device), nn.Linear(2, 1, bias=False, device=device)]
        self.scale = nn.Parameter([1.5], device=device)
        self.constant = tg.Tensor([2.0], device=device)  # a plain Tensor: not a parameter
        self.name = "block"

    def forward(self, x):
        for layer in [self.encoder, *self.layers]:
            x = layer(x).tanh()
        return x * self.scale


# --- parameters and modules -------------------------------------------------------------


def test_parameter_always_requires_grad_and_is_a_tensor(device):
    p = nn.Parameter([1.0, 2.0], device=device)
    assert isinstance(p, tg.Tensor) and p.requires_grad and p.is_leaf
    assert p.device == tg.get_backend(device).device and p.shape == (2,)
    with pytest.raises(TypeError, match="only floating-point"):
        nn.Parameter([1, 2], device=device)


def test_parameters_are_found_in_definition_order_with_dotted_names(device):
    block = Block(device)
    names = [name for name, _ in block.named_parameters()]
    assert names == [
        "encoder.weight",
        "encoder.bias",
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "scale",
    ]
    assert [p.shape for p in block.parameters()] == [(3, 2), (2,), (2, 2), (2,), (2, 1), (1,)]
    assert block.parameters()[0] is block.encoder.weight


def test_nested_modules_tuples_and_shared_parameters():
    class Outer(nn.Module):
        def __init__(self):
            self.inner = Block()
            self.pair = (nn.Parameter([0.0]), nn.Linear(1, 1))
            self.tied = self.inner.encoder  # the same module again: listed once
            self.tied_weight = self.pair[1].weight  # the same parameter again: listed once

    names = [name for name, _ in Outer().named_parameters()]
    assert names[:6] == [f"inner.{name}" for name, _ in Block().named_parameters()]
    assert names[6:] == ["pair.0", "pair.1.weight", "pair.1.bias"]


def test_call_runs_forward_and_zero_grad_clears_every_gradient(device):
    block = Block(device)
    out = block(t(np.ones((4, 3)), device, dtype="float32"))
    assert out.shape == (4, 1)
    out.sum().backward()
    assert all(p.grad is not None for p in block.parameters())
    block.zero_grad()
    assert all(p.grad is None for p in block.parameters())


def test_forward_is_required():
    class Empty(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty must define forward"):
        Empty()(1.0)


def test_the_module_docstring_example_runs():
    assert doctest.testmod(nn).failed == 0


def test_to_moves_parameters_in_place():
    block = Block("cpu")
    parameters = block.parameters()
    before = block.state_dict()
    assert block.to("strict") is block
    assert all(a is b for a, b in zip(block.parameters(), parameters))
    assert all(p.device == "strict" for p in block.parameters())
    for name, value in block.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
        assert value.dtype == before[name].dtype
    assert block(tg.Tensor(np.ones((1, 3), dtype="float32"), device="strict")).device == "strict"


# --- state dicts --------------------------------------------------------------------


def test_state_dict_round_trips_exactly(device):
    source, target = Block(device), Block(device)
    state = source.state_dict()
    assert all(isinstance(value, np.ndarray) for value in state.values())
    target.load_state_dict(state)
    for name, value in target.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    state["scale"][0] = 99.0  # the loaded values are copies, not views of the caller's arrays
    assert target.scale.numpy()[0] == source.scale.numpy()[0]


def test_load_state_dict_converts_to_the_parameters_dtype_and_device(device):
    block = Block(device)
    state = {name: value.astype(np.float64) + 1.0 for name, value in block.state_dict().items()}
    block.load_state_dict(state)
    for name, p in block.named_parameters():
        assert p.device == tg.get_backend(device).device and "float32" in str(p.dtype)
        np.testing.assert_allclose(p.numpy(), state[name], rtol=1e-6)


def _assert_unchanged(block, state):
    for name, value in block.state_dict().items():
        np.testing.assert_array_equal(value, state[name], err_msg=f"{name} was changed")


def test_load_reports_missing_keys_and_changes_nothing(device):
    block = Block(device)
    original = block.state_dict()
    state = {name: value + 1.0 for name, value in original.items()}
    del state["layers.0.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['layers.0.bias'\]"):
        block.load_state_dict(state)
    _assert_unchanged(block, original)


def test_load_reports_unexpected_keys_and_changes_nothing(device):
    block = Block(device)
    original = block.state_dict()
    state = {name: value + 1.0 for name, value in original.items()}
    state["decoder.weight"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"unexpected keys \['decoder.weight'\]"):
        block.load_state_dict(state)
    _assert_unchanged(block, original)


def test_load_reports_wrong_shapes_and_changes_nothing(device):
    block = Block(device)
    original = block.state_dict()
    state = {name: value + 1.0 for name, value in original.items()}
    state["encoder.weight"] = np.zeros((2, 3))  # transposed
    with pytest.raises(
        ValueError, match=r"'encoder.weight' has the wrong shape: expected \(3, 2\), got \(2, 3\)"
    ):
        block.load_state_dict(state)
    _assert_unchanged(block, original)


@pytest.mark.parametrize(
    "bad", [np.array(["a", "b"]), np.array([None, None]), np.array([1 + 2j, 0j])]
)
def test_load_refuses_non_numeric_values_and_changes_nothing(device, bad):
    block = Block(device)
    original = block.state_dict()
    state = {name: value + 1.0 for name, value in original.items()}
    state["encoder.bias"] = bad
    with pytest.raises(
        ValueError, match=r"'encoder.bias' has dtype .*, expected integers or floats"
    ):
        block.load_state_dict(state)
    _assert_unchanged(block, original)


@pytest.mark.parametrize(
    "bad, shown", [(1e300, "1e+300"), (-1e39, "-1e+39"), (np.nan, "nan"), (np.inf, "inf")]
)
def test_load_refuses_values_the_parameters_dtype_cannot_hold_and_changes_nothing(
    device, bad, shown
):
    # 1e300 is finite in the float64 state but infinite once cast to a float32 parameter.
    block = Block(device)
    original = block.state_dict()
    state = {name: value.astype(np.float64) + 1.0 for name, value in original.items()}
    state["encoder.weight"][2, 1] = bad
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not loaded with an overflow warning
        with pytest.raises(
            ValueError,
            match=rf"'encoder.weight' holds {re.escape(shown)} at index \(2, 1\), which is not "
            "a finite float32 value",
        ):
            block.load_state_dict(state)
    _assert_unchanged(block, original)


def test_load_accepts_large_values_a_float64_parameter_holds(device):
    layer = nn.Linear(1, 1, dtype="float64", device=device)
    layer.load_state_dict({"weight": np.array([[1e300]]), "bias": np.array([-1e300])})
    assert layer.weight.numpy()[0, 0] == 1e300 and layer.bias.numpy()[0] == -1e300


@pytest.mark.parametrize("dtype, exact", [("float32", 2**24), ("float64", 2**53)])
def test_load_takes_integers_the_parameters_dtype_holds_exactly_and_refuses_larger(dtype, exact):
    """An integer state for a float parameter: every integer up to 2**(mantissa bits + 1)
    is a value of the dtype; beyond (2**62 for float32) it is no weight a run made."""
    layer = nn.Linear(2, 1, dtype=dtype)
    layer.load_state_dict({"weight": np.array([[exact], [-exact]]), "bias": np.array([3])})
    assert layer.weight.numpy().ravel().tolist() == [exact, -exact]
    original = layer.state_dict()
    for integers in (np.array([[exact + 1], [0]]), np.array([[2**62], [0]], dtype=np.uint64)):
        problem = rf"'weight' holds the integer {integers[0, 0]} at index \(0, 0\), beyond"
        with pytest.raises(ValueError, match=rf"{problem} the integers {dtype} holds exactly"):
            layer.load_state_dict({"weight": integers, "bias": np.array([0])})
        _assert_unchanged(layer, original)


def test_load_lists_every_problem_at_once():
    block = Block()
    state = block.state_dict()
    del state["scale"]
    state["extra"] = np.zeros(1)
    state["layers.1.weight"] = np.zeros(3)
    with pytest.raises(ValueError) as error:
        block.load_state_dict(state)
    message = str(error.value)
    assert "missing keys ['scale']" in message and "unexpected keys ['extra']" in message
    assert "'layers.1.weight' has the wrong shape: expected (2, 1), got (3,)" in message


# --- buffers ---------------------------------------------------------------------------


class Scaled(nn.Module):
    """A layer whose input is shifted by a saved, untrained offset."""

    def __init__(self, device="cpu", dtype="float64"):
        self.layer = nn.Linear(2, 1, device=device, dtype=dtype)
        self.offset = nn.Buffer(np.array([0.5, -1.5]), device=device, dtype=dtype)

    def forward(self, x):
        return self.layer(x - self.offset)


def test_buffers_are_saved_but_never_trained(device):
    outer = Block(device)
    outer.scaled = Scaled(device)
    assert [name for name, _ in outer.named_buffers()] == ["scaled.offset"]
    assert all(not isinstance(p, nn.Buffer) for p in outer.parameters())
    assert len(outer.parameters()) == 8
    assert list(outer.state_dict())[-1] == "scaled.offset"
    np.testing.assert_array_equal(outer.state_dict()["scaled.offset"], [0.5, -1.5])
    buffer = outer.scaled.offset
    assert isinstance(buffer, tg.Tensor) and not buffer.requires_grad
    out = outer.scaled(t(np.ones((3, 2)), device))
    out.sum().backward()
    assert buffer.grad is None and outer.scaled.layer.weight.grad is not None


def test_state_dict_with_buffers_round_trips_bit_for_bit(device, tmp_path):
    source, target = Scaled(device), Scaled(device)
    source.offset.data = source.offset.data * 0.1  # not exact in binary: any rounding shows
    np.savez(tmp_path / "scaled.npz", **source.state_dict())
    with np.load(tmp_path / "scaled.npz") as saved:
        target.load_state_dict(dict(saved))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value, err_msg=name)
    x = t(np.array([[0.3, 0.7]]), device)
    assert target(x).item() == source(x).item()


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("offset", None, r"missing keys \['offset'\]"),
        ("offset", np.zeros(3), r"'offset' has the wrong shape: expected \(2,\), got \(3,\)"),
        ("offset", np.array([np.nan, 0.0]), r"'offset' holds nan at index \(0,\)"),
        ("offset", np.array(["a", "b"]), r"'offset' has dtype <U1"),
    ],
)
def test_load_checks_buffers_like_parameters_and_changes_nothing(device, key, value, message):
    module = Scaled(device)
    original = module.state_dict()
    state = {name: array + 1.0 for name, array in original.items()}
    if value is None:
        del state[key]
    else:
        state[key] = value
    with pytest.raises(ValueError, match=message):
        module.load_state_dict(state)
    _assert_unchanged(module, original)


def test_state_problems_refuse_a_load_and_change_nothing():
    class Positive(Scaled):
        def state_problems(self, values):
            return [] if (values["offset"] > 0).all() else ["'offset' must be positive"]

    module = Positive()
    original = module.state_dict()
    with pytest.raises(ValueError, match="load_state_dict: 'offset' must be positive"):
        module.load_state_dict({name: value + 1.0 for name, value in original.items()})
    _assert_unchanged(module, original)
    module.load_state_dict({name: value + 2.0 for name, value in original.items()})
    np.testing.assert_array_equal(module.offset.numpy(), [2.5, 0.5])


def test_to_moves_buffers():
    module = Scaled("cpu")
    assert module.to("strict") is module
    assert module.offset.device == "strict"
    np.testing.assert_array_equal(module.offset.numpy(), [0.5, -1.5])
    module(tg.Tensor(np.ones((1, 2)), device="strict"))  # no mixed devices


# --- initialisers -------------------------------------------------------------------


def test_xavier_init_stays_inside_its_bound_and_fills_it(device):
    layer = nn.Linear(30, 50, device=device)
    bound = math.sqrt(6 / 80)
    assert nn.xavier_bound(30, 50) == pytest.approx(bound)
    for p in (layer.weight.numpy(), layer.bias.numpy()):
        assert np.abs(p).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.95 * bound  # 1500 draws reach the edges
    assert layer.weight.shape == (30, 50) and layer.bias.shape == (50,)
    assert "float32" in str(layer.weight.dtype)


def test_normal_init_has_the_requested_standard_deviation():
    weight = nn.Linear(400, 500, init="normal", std=0.01).weight.numpy()
    assert abs(weight.mean()) < 1e-4  # the standard error of the mean is 0.01 / sqrt(2e5)
    assert weight.std() == pytest.approx(0.01, rel=0.02)
    bias = nn.Linear(400, 2000, init="normal", std=0.5).bias.numpy()
    assert bias.std() == pytest.approx(0.5, rel=0.1)


def test_seeding_makes_initialisation_reproducible_and_device_independent(device):
    def draw(seed, on):
        nn.seed(seed, on)
        layer = nn.Linear(4, 3, device=on)
        embedding = nn.Embedding(5, 2, device=on)
        return [p.numpy() for p in (layer.weight, layer.bias, embedding.weight)]

    first, again, other = draw(7, device), draw(7, device), draw(8, device)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    for a, b in zip(first, draw(7, "cpu")):  # the same seed gives the same numbers everywhere
        np.testing.assert_array_equal(a, b)


def test_initialisers_draw_the_requested_shape_dtype_and_range(device):
    p = nn.uniform((3, 4), 0.5, device, "float64")
    assert isinstance(p, nn.Parameter) and p.shape == (3, 4) and "float64" in str(p.dtype)
    assert np.abs(p.numpy()).max() <= 0.5
    q = nn.normal((2,), 1.0, device)
    assert isinstance(q, nn.Parameter) and q.device == tg.get_backend(device).device
    assert "float32" in str(q.dtype)


@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (3, 7), (1, 4)])
def test_orthogonal_init_has_orthonormal_columns_or_rows(device, shape):
    nn.seed(2, device)
    w = nn.orthogonal(shape, device=device, dtype="float64")
    assert isinstance(w, nn.Parameter) and w.shape == shape and "float64" in str(w.dtype)
    w = w.numpy()
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(min(shape)), rtol=0, atol=1e-12)
    scaled = nn.orthogonal(shape, gain=2.5, device=device, dtype="float64").numpy()
    gram = scaled.T @ scaled if shape[0] >= shape[1] else scaled @ scaled.T
    np.testing.assert_allclose(gram, 6.25 * np.eye(min(shape)), rtol=0, atol=1e-12)


def test_orthogonal_init_is_seeded_and_device_independent(device):
    def draw(seed, on):
        nn.seed(seed, on)
        return nn.orthogonal((6, 6), device=on).numpy()

    first = draw(3, device)
    np.testing.assert_array_equal(first, draw(3, device))
    np.testing.assert_array_equal(first, draw(3, "cpu"))
    assert not np.array_equal(first, draw(4, device))
    assert "float32" in str(nn.orthogonal((2, 2), device=device).dtype)


def test_orthogonal_init_is_not_biased_towards_the_qr_routines_signs():
    """Without the sign correction, diag(R) > 0 conventions make the diagonal of Q
    lean one way; with it, each diagonal entry is positive half of the time."""
    nn.seed(0)
    diagonals = np.array(
        [np.diag(nn.orthogonal((3, 3), dtype="float64").numpy()) for _ in range(400)]
    )
    positive = (diagonals > 0).mean(axis=0)
    assert np.all(np.abs(positive - 0.5) < 0.1), positive


def test_orthogonal_init_checks_its_shape():
    with pytest.raises(
        ValueError, match=r"shape must be \(rows, cols\), both positive, got \(3,\)"
    ):
        nn.orthogonal((3,))
    with pytest.raises(ValueError, match="both positive"):
        nn.orthogonal((0, 3))


def test_unknown_init_is_an_error():
    with pytest.raises(ValueError, match="init must be 'xavier' or 'normal', got 'he'"):
        nn.Linear(2, 2, init="he")
    with pytest.raises(ValueError, match="init must be 'normal' or 'xavier', got 'zeros'"):
        nn.Embedding(2, 2, init="zeros")


# --- layers -----------------------------------------------------------------------------


def _gradcheck_module(module, inputs, device):
    """Gradcheck ``module(*inputs)`` w.r.t. its inputs and every parameter, in float64."""
    parameters = [t(p.numpy(), device, requires_grad=True) for p in module.parameters()]
    names = [name for name, _ in module.named_parameters()]

    def run(*args):
        values, tensors = args[: len(inputs)], args[len(inputs) :]
        for name, tensor in zip(names, tensors):
            setattr(module, name, tensor)  # plain Tensors in place of the parameters
        return module(*values)

    return tg.gradcheck(run, *inputs, *parameters)


def test_linear_computes_x_weight_plus_bias_and_gradchecks(device):
    layer = nn.Linear(3, 2, device=device, dtype="float64")
    x = np.arange(12.0).reshape(2, 2, 3) / 10  # leading batch axes broadcast
    out = layer(t(x, device))
    expected = x @ layer.weight.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    assert _gradcheck_module(layer, [t(x, device, requires_grad=True)], device)


def test_linear_without_bias_gradchecks(device):
    layer = nn.Linear(3, 2, bias=False, device=device, dtype="float64")
    assert layer.bias is None and len(layer.parameters()) == 1
    assert _gradcheck_module(layer, [t(np.ones((4, 3)), device, requires_grad=True)], device)


def test_linear_rejects_inputs_of_the_wrong_width():
    with pytest.raises(ValueError, match=r"expected input of shape \(\.\.\., 3\), got \(2, 4\)"):
        nn.Linear(3, 2)(tg.Tensor(np.zeros((2, 4), dtype="float32")))


def test_embedding_looks_up_rows_and_gradchecks_with_repeated_indices(device):
    embedding = nn.Embedding(4, 3, std=1.0, device=device, dtype="float64")
    indices = tg.Tensor(np.array([[0, 2, 2], [3, 0, 2]]), device=device)
    out = embedding(indices)
    assert out.shape == (2, 3, 3)
    weight = embedding.weight.numpy()
    np.testing.assert_array_equal(out.numpy(), weight[indices.numpy()])
    assert _gradcheck_module(embedding, [indices], device)


def test_embedding_gradient_adds_up_over_repeated_indices(device):
    embedding = nn.Embedding(4, 2, device=device)
    embedding(tg.Tensor(np.array([1, 3, 1, 1]), device=device)).sum().backward()
    np.testing.assert_array_equal(embedding.weight.grad.numpy(), [[0, 0], [3, 3], [0, 0], [1, 1]])


def test_embedding_rejects_out_of_range_and_non_integer_indices(device):
    embedding = nn.Embedding(4, 2, device=device)
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 4\), got values from 1 to 4"):
        embedding(tg.Tensor(np.array([1, 4]), device=device))
    with pytest.raises(IndexError, match="got values from -1 to 0"):
        embedding(tg.Tensor(np.array([-1, 0]), device=device))
    with pytest.raises(TypeError, match="indices must be integers"):
        embedding(tg.Tensor(np.array([1.0]), device=device))


# --- losses -----------------------------------------------------------------------------


def _numpy_cross_entropy(logits, targets):
    top = logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return np.mean(log_norm - logits[np.arange(len(targets)), targets])


@given(data=st.data(), count=st.integers(1, 4), classes=st.integers(1, 5))
def test_cross_entropy_matches_numpy_and_gradchecks(device, data, count, classes):
    logits = data.draw(arrays((count, classes)), label="logits")
    targets = data.draw(arrays((count,), tg.domains.INDEX, high=classes), label="targets")
    x = t(logits, device, requires_grad=True)
    y = tg.Tensor(targets, device=device)
    loss = nn.cross_entropy(x, y)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.item(), _numpy_cross_entropy(logits, targets), rtol=1e-12)
    assert tg.gradcheck(nn.cross_entropy, x, y)


def test_cross_entropy_is_finite_for_huge_logits(device):
    x = t([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], device, requires_grad=True, dtype="float32")
    loss = nn.cross_entropy(x, tg.Tensor(np.array([1, 2], dtype=np.int32), device=device))
    loss.backward()
    np.testing.assert_allclose(loss.item(), (2e4 + math.log(3)) / 2, rtol=1e-6)
    assert np.all(np.isfinite(x.grad.numpy()))


def test_cross_entropy_validates_its_inputs(device):
    logits = t(np.zeros((3, 4)), device)
    with pytest.raises(ValueError, match=r"targets must be class indices of shape \(3,\)"):
        nn.cross_entropy(logits, tg.Tensor(np.zeros((3, 1), dtype=np.int64), device=device))
    with pytest.raises(ValueError, match=r"of shape \(3,\) to match logits \(3, 4\), got \(2,\)"):
        nn.cross_entropy(logits, tg.Tensor(np.zeros(2, dtype=np.int64), device=device))
    with pytest.raises(ValueError, match=r"logits must have shape \(N, K\)"):
        nn.cross_entropy(t(np.zeros(4), device), tg.Tensor(np.zeros(4, dtype=np.int64)))
    with pytest.raises(IndexError, match=r"indices must lie in \[0, 4\)"):
        nn.cross_entropy(logits, tg.Tensor(np.array([0, 4, 1]), device=device))
    with pytest.raises(TypeError, match="indices must be integers"):
        nn.cross_entropy(logits, t([0.0, 1.0, 2.0], device))


def test_mse_is_the_mean_squared_difference_and_gradchecks(device):
    prediction = np.array([[0.5, -1.0], [2.0, 0.0]])
    target = np.array([[1.0, 1.0], [0.0, 0.5]])
    loss = nn.mse(t(prediction, device), t(target, device))
    assert loss.item() == pytest.approx((0.25 + 4 + 4 + 0.25) / 4)
    assert tg.gradcheck(nn.mse, t(prediction, device, True), t(target, device, True))
    with pytest.raises(ValueError, match=r"prediction \(2, 2\) and target \(2, 1\) differ"):
        nn.mse(t(prediction, device), t(np.zeros((2, 1)), device))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bernoulli_kl_is_finite_at_zero_and_one(device, dtype):
    rho_hat = t([0.0, 1.0, 0.025, 0.5], device, requires_grad=True, dtype=dtype)
    kl = nn.bernoulli_kl(0.025, rho_hat)
    kl.sum().backward()
    values = kl.numpy()
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(rho_hat.grad.numpy()))
    assert values[2] == pytest.approx(0.0, abs=1e-6)  # no divergence from itself
    eps, rho = 1e-6, 0.025  # 0 and 1 count as eps and 1 - eps
    at_zero = rho * math.log(rho / eps) + (1 - rho) * math.log((1 - rho) / (1 - eps))
    at_one = rho * math.log(rho / (1 - eps)) + (1 - rho) * math.log((1 - rho) / eps)
    np.testing.assert_allclose(values[:2], [at_zero, at_one], rtol=1e-3)
    assert kl.shape == (4,)


def _exact_kl(rho: float, q: float) -> float:
    """rho log(rho / q) + (1 - rho) log((1 - rho) / (1 - q)) in 40 decimal digits: in
    float64 the two terms cancel near q = rho, leaving an absolute error of ~1e-16."""
    with decimal.localcontext(decimal.Context(prec=40)):
        r, q = decimal.Decimal(rho), decimal.Decimal(q)
        return float(r * (r / q).ln() + (1 - r) * ((1 - r) / (1 - q)).ln())


@given(rho=st.floats(0.01, 0.99), values=arrays((5,), tg.domains.Domain("rate", 0.02, 0.98)))
def test_bernoulli_kl_matches_its_formula_and_gradchecks(device, rho, values):
    rho_hat = t(values, device, requires_grad=True)
    expected = [_exact_kl(rho, q) for q in values]
    np.testing.assert_allclose(
        nn.bernoulli_kl(rho, rho_hat).numpy(), expected, rtol=1e-10, atol=1e-15
    )
    assert tg.gradcheck(lambda q: nn.bernoulli_kl(rho, q), rho_hat)


@pytest.mark.parametrize(
    ("q", "rho"), [(0.2109375, 0.212890625), (0.25, 0.24951171875), (0.7, 0.69921875)]
)
def test_bernoulli_kl_near_its_minimum_keeps_float32_precision(device, q, rho):
    """q and rho exact in float32, 5e-4 to 2e-3 apart: the KL is O((q - rho)^2), and
    log(rho / q) rounds to one float32 ulp of 1, up to 5 % of it."""
    kl = nn.bernoulli_kl(rho, tg.Tensor([q], dtype="float32", device=device))
    assert kl.numpy()[0] == pytest.approx(_exact_kl(rho, q), rel=1e-4)


def test_bernoulli_kl_validates_rho():
    with pytest.raises(ValueError, match=r"rho must lie in \(0, 1\), got 1.0"):
        nn.bernoulli_kl(1.0, tg.Tensor([0.5]))
