"""Optimisers and gradient clipping: hand-computed updates, clipping, saving and resuming."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_ee as tg
from tinygrad_ee import nn
from tinygrad_ee.optim import SGD, Adam, clip_grad_norm
from tinygrad_ee.strategies import arrays


def param(values, device, dtype="float64"):
    return nn.Parameter(np.asarray(values, dtype=dtype), device=device)


def set_grad(p, values):
    p.grad = tg.Tensor(np.asarray(values, dtype=p.numpy().dtype), device=p.device)


# --- SGD --------------------------------------------------------------------------------


def test_sgd_with_momentum_matches_two_steps_computed_by_hand(device):
    # loss = sum(p^2) / 2, so grad = p; lr = 1/4, momentum = 1/2 (exact in float32)
    p = param([1.0, -2.0], device, dtype="float32")
    opt = SGD([p], lr=0.25, momentum=0.5)
    for _ in range(2):
        opt.zero_grad()
        ((p * p).sum() / 2).backward()
        opt.step()
    # step 1: g = [1, -2]:       v = -0.25 g = [-0.25, 0.5];  p = [0.75, -1.5]
    # step 2: g = [0.75, -1.5]:   v = 0.5 v - 0.25 g = [-0.125 - 0.1875, 0.25 + 0.375]
    #                               = [-0.3125, 0.625];          p = [0.4375, -0.875]
    np.testing.assert_array_equal(p.numpy(), [0.4375, -0.875])
    np.testing.assert_array_equal(opt.state_dict()["velocity.0"], [-0.3125, 0.625])


def test_sgd_without_momentum_is_gradient_descent_and_skips_parameters_without_grad(device):
    moving, idle = param([1.0, 2.0], device), param([[3.0]], device)
    opt = SGD([moving, idle], lr=0.5)
    set_grad(moving, [4.0, -2.0])
    opt.step()
    np.testing.assert_array_equal(moving.numpy(), [1.0 - 2.0, 2.0 + 1.0])
    np.testing.assert_array_equal(idle.numpy(), [[3.0]])
    np.testing.assert_array_equal(opt.state_dict()["velocity.1"], [[0.0]])


def test_step_leaves_gradient_arrays_alone():
    p = param([1.0, 2.0], "cpu")
    set_grad(p, [0.5, 0.5])
    shared = p.grad.data  # e.g. the same array may be another tensor's gradient too
    for opt in (SGD([p], lr=0.1, momentum=0.9), Adam([p])):
        opt.step()
        np.testing.assert_array_equal(shared, [0.5, 0.5])
        assert p.grad.data is shared


# --- Adam -------------------------------------------------------------------------------


def test_adam_matches_two_steps_computed_by_hand(device):
    p = param([1.0, -2.0], device)
    opt = Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    for gradient in ([0.5, -2.0], [-0.25, -2.0]):
        set_grad(p, gradient)
        opt.step()
    # First element, gradients 0.5 then -0.25:
    #   m1 = 0.1 * 0.5 = 0.05          v1 = 0.001 * 0.25 = 0.00025
    #   m_hat = 0.05 / 0.1 = 0.5       v_hat = 0.00025 / 0.001 = 0.25
    first = 1.0 - 0.1 * 0.5 / (math.sqrt(0.25) + 1e-8)
    #   m2 = 0.9 * 0.05 + 0.1 * -0.25 = 0.02
    #   v2 = 0.999 * 0.00025 + 0.001 * 0.0625 = 0.00031225
    #   m_hat = 0.02 / (1 - 0.9^2)     v_hat = 0.00031225 / (1 - 0.999^2)
    first -= 0.1 * (0.02 / 0.19) / (math.sqrt(0.00031225 / 0.001999) + 1e-8)
    # Second element, constant gradient -2: m_hat = -2 and v_hat = 4 at every step,
    # so each step adds lr * 2 / (2 + eps).
    second = -2.0 + 2 * (0.1 * 2.0 / (2.0 + 1e-8))
    np.testing.assert_allclose(p.numpy(), [first, second], rtol=1e-12)
    state = opt.state_dict()
    assert state["step.0"] == 2
    np.testing.assert_allclose(state["first_moment.0"], [0.02, -0.38], rtol=1e-12)
    np.testing.assert_allclose(state["second_moment.0"], [0.00031225, 0.007996], rtol=1e-12)


def test_adam_bias_correction_counts_each_parameters_own_steps(device):
    early, late = param([0.0], device), param([0.0], device)
    opt = Adam([early, late], lr=0.1)
    for _ in range(3):
        set_grad(early, [1.0])
        opt.step()
    set_grad(late, [-3.0])
    opt.step()
    # the late parameter's first update is a full first step: -lr * g / (|g| + eps)
    np.testing.assert_allclose(late.numpy(), [0.1 * 3.0 / (3.0 + 1e-8)], rtol=1e-12)
    assert opt.state_dict()["step.1"] == 1 and opt.state_dict()["step.0"] == 4


# --- weight decay (decoupled) -------------------------------------------------------------


def test_sgd_weight_decay_matches_two_steps_computed_by_hand(device):
    p = param([1.0, -2.0], device, dtype="float32")
    opt = SGD([p], lr=0.25, momentum=0.5, weight_decay=0.5)  # lr * wd = 1/8: exact
    for gradient in ([1.0, -2.0], [0.5, 0.5]):
        set_grad(p, gradient)
        opt.step()
    # step 1: p = 7/8 p = [0.875, -1.75];  v = -0.25 g = [-0.25, 0.5];  p + v = [0.625, -1.25]
    # step 2: p = 7/8 p = [0.546875, -1.09375];  v = 0.5 v - 0.25 g = [-0.25, 0.125]
    #         p + v = [0.296875, -0.96875]
    np.testing.assert_array_equal(p.numpy(), [0.296875, -0.96875])
    # the decay never enters the velocity: it holds the gradients alone
    np.testing.assert_array_equal(opt.state_dict()["velocity.0"], [-0.25, 0.125])


def test_sgd_weight_decay_without_momentum_is_an_l2_penalty(device):
    values, wd, lr = np.array([0.3, -1.7, 2.5]), 0.01, 0.2
    p = param(values, device)
    opt = SGD([p], lr=lr, weight_decay=wd)
    opt.zero_grad()
    (p.tanh().sum()).backward()  # g = 1 - tanh(p)^2
    opt.step()
    l2_gradient = (1 - np.tanh(values) ** 2) + wd * values  # of sum tanh(p) + wd/2 |p|^2
    np.testing.assert_allclose(p.numpy(), values - lr * l2_gradient, rtol=1e-15, atol=1e-15)


def test_adam_weight_decay_is_decoupled_and_matches_a_step_computed_by_hand(device):
    p = param([1.0, -2.0], device)
    opt = Adam([p], lr=0.1, weight_decay=0.5)
    set_grad(p, [0.5, -2.0])
    opt.step()
    # p <- (1 - 0.1 * 0.5) p = [0.95, -1.9]; first step: m_hat = g, v_hat = g^2
    expected = [0.95 - 0.1 * 0.5 / (0.5 + 1e-8), -1.9 + 0.1 * 2.0 / (2.0 + 1e-8)]
    np.testing.assert_allclose(p.numpy(), expected, rtol=1e-15)
    # the moments hold the gradient alone (L2 in Adam would add wd * p to it)
    np.testing.assert_allclose(opt.state_dict()["first_moment.0"], [0.05, -0.2], rtol=1e-15)


@pytest.mark.parametrize("make", [SGD, Adam], ids=["sgd", "adam"])
def test_weight_decay_skips_parameters_without_a_gradient(make):
    moving, idle = param([1.0], "cpu"), param([4.0], "cpu")
    opt = make([moving, idle], lr=0.1, weight_decay=0.5)
    set_grad(moving, [0.0])
    opt.step()
    assert idle.numpy().tolist() == [4.0]
    assert moving.numpy().tolist() == [0.95]  # decayed; a zero gradient moves nothing


# --- both -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1), Adam], ids=["sgd", "adam"])
def test_zero_grad_forgets_every_gradient(make):
    ps = [param([1.0], "cpu"), param([2.0], "cpu")]
    for p in ps:
        set_grad(p, [1.0])
    make(ps).zero_grad()
    assert all(p.grad is None for p in ps)


def test_constructors_check_their_arguments():
    p = param([1.0], "cpu")
    with pytest.raises(ValueError, match="no parameters"):
        SGD([], lr=0.1)
    with pytest.raises(ValueError, match="parameter 1 appears twice"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="parameter 0 is a ndarray, not a Tensor"):
        Adam([np.zeros(2)])
    with pytest.raises(ValueError, match="lr must be positive"):
        SGD([p], lr=0.0)
    with pytest.raises(ValueError, match="momentum must lie in"):
        SGD([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="betas must lie in"):
        Adam([p], betas=(0.9, 1.0))
    for make in (SGD, Adam):
        for bad in (-0.1, math.inf, math.nan):
            with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
                make([p], lr=0.1, weight_decay=bad)


# --- clipping ---------------------------------------------------------------------------


def test_clip_grad_norm_scales_to_max_norm_over_all_parameters(device):
    a, b, no_grad = param([3.0, 0.0], device), param([[4.0]], device), param([7.0], device)
    set_grad(a, [3.0, 0.0])
    set_grad(b, [[4.0]])
    shared = a.grad.data
    assert clip_grad_norm([a, b, no_grad], max_norm=1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(a.grad.numpy(), [0.6, 0.0])
    np.testing.assert_allclose(b.grad.numpy(), [[0.8]])
    assert no_grad.grad is None
    assert a.grad.backend.to_host(shared).tolist() == [3.0, 0.0], "scaled in place"


@given(
    grads=st.lists(st.integers(1, 4), min_size=1, max_size=3).flatmap(
        lambda sizes: st.tuples(*[arrays((n,)) for n in sizes])
    ),
    max_norm=st.floats(0.1, 10.0),
)
def test_clipping_keeps_direction_and_caps_the_norm(device, grads, max_norm):
    ps = [param(np.zeros_like(g), device) for g in grads]
    for p, g in zip(ps, grads):
        set_grad(p, g)
    norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
    assert clip_grad_norm(ps, max_norm).item() == pytest.approx(norm, rel=1e-12)
    after = np.concatenate([p.grad.numpy() for p in ps])
    before = np.concatenate(grads)
    if norm <= max_norm:
        np.testing.assert_array_equal(after, before)  # below the cap: untouched
    else:
        assert np.linalg.norm(after) == pytest.approx(max_norm, rel=1e-12)
        np.testing.assert_allclose(after * norm / max_norm, before, rtol=1e-12, atol=1e-15)


def test_clipping_leaves_non_finite_gradients_alone_and_checks_max_norm():
    p = param([1.0, 2.0], "cpu")
    set_grad(p, [np.inf, 1.0])
    assert clip_grad_norm([p], 1.0).item() == math.inf
    np.testing.assert_array_equal(p.grad.numpy(), [np.inf, 1.0])
    with pytest.raises(ValueError, match="max_norm must be positive"):
        clip_grad_norm([p], 0.0)


# --- saving and resuming ----------------------------------------------------------------

MAKERS = {
    "sgd": lambda ps: SGD(ps, lr=0.1, momentum=0.85),
    "adam": lambda ps: Adam(ps, lr=0.01),
    "sgd-decay": lambda ps: SGD(ps, lr=0.1, momentum=0.85, weight_decay=0.01),
    "adam-decay": lambda ps: Adam(ps, lr=0.01, weight_decay=0.1),
}


def _train(model, opt, steps, device):
    rng = np.random.default_rng(1)
    x = tg.Tensor(rng.standard_normal((8, 3)).astype("float32"), device=device)
    y = tg.Tensor(rng.standard_normal((8, 2)).astype("float32"), device=device)
    for _ in range(steps):
        opt.zero_grad()
        nn.mse(model(x).tanh(), y).backward()
        opt.step()


def _fresh(kind, device, seed):
    nn.seed(seed, device)
    model = nn.Linear(3, 2, device=device)
    return model, MAKERS[kind](model.parameters())


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_is_flat_host_data_and_round_trips_bit_for_bit(device, kind, tmp_path):
    model, opt = _fresh(kind, device, seed=0)
    _train(model, opt, 3, device)
    state = opt.state_dict()
    assert all(isinstance(v, (int, float, np.ndarray)) for v in state.values())
    np.savez(tmp_path / "opt.npz", **state)
    with np.load(tmp_path / "opt.npz") as saved:
        from_disk = dict(saved)

    _, other = _fresh(kind, device, seed=1)
    other.load_state_dict(from_disk)
    again = other.state_dict()
    assert again.keys() == state.keys()
    for key, value in state.items():
        assert type(again[key]) is type(value), key
        np.testing.assert_array_equal(again[key], value, err_msg=key)
        assert np.asarray(again[key]).dtype == np.asarray(value).dtype, key


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_resumed_training_is_bit_identical_to_uninterrupted_training(device, kind, tmp_path):
    model, opt = _fresh(kind, device, seed=0)
    _train(model, opt, 6, device)

    first_half, first_opt = _fresh(kind, device, seed=0)
    _train(first_half, first_opt, 3, device)
    np.savez(tmp_path / "model.npz", **first_half.state_dict())
    np.savez(tmp_path / "opt.npz", **first_opt.state_dict())

    resumed, resumed_opt = _fresh(kind, device, seed=5)  # different initial values
    with np.load(tmp_path / "model.npz") as saved:
        resumed.load_state_dict(dict(saved))
    with np.load(tmp_path / "opt.npz") as saved:
        resumed_opt.load_state_dict(dict(saved))
    _train(resumed, resumed_opt, 3, device)

    for (name, expected), got in zip(model.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(got, expected, err_msg=name)


def _broken(state, key, value):
    broken = dict(state)
    if value is None:
        del broken[key]
    else:
        broken[key] = value
    return broken


@pytest.mark.parametrize(
    "kind, key, value, message",
    [
        ("sgd", "velocity.1", None, r"missing keys \['velocity.1'\]"),
        ("sgd", "velocity.2", np.zeros(2), r"unexpected keys \['velocity.2'\]"),
        ("sgd", "velocity.0", np.zeros((2, 3)), r"'velocity.0'.*expected \(3, 2\), got \(2, 3\)"),
        ("sgd", "velocity.0", np.array([["a"] * 2] * 3), r"'velocity.0' has dtype <U1"),
        ("sgd", "lr", "fast", r"'lr' must be a finite number, got 'fast'"),
        ("sgd", "momentum", np.nan, r"'momentum' must be a finite number"),
        ("adam", "weight_decay", None, r"missing keys \['weight_decay'\]"),
        ("sgd", "weight_decay", np.inf, r"'weight_decay' must be a finite number"),
        ("adam", "step.0", -1, r"'step.0' must be a non-negative integer, got -1"),
        ("adam", "step.1", 1.5, r"'step.1' must be a non-negative integer"),
        ("adam", "second_moment.1", np.zeros(3), r"'second_moment.1'.*expected \(2,\), got \(3,\)"),
        ("sgd", "velocity.1", np.array([1e300, 0.0]), r"'velocity.1' holds 1e\+300 at index"),
        ("adam", "first_moment.0", np.full((3, 2), np.nan), r"'first_moment.0' holds nan at"),
        ("adam", "second_moment.1", np.array([0.0, np.inf]), r"not a finite float32 value"),
    ],
)
def test_load_errors_name_the_key_and_change_nothing(device, kind, key, value, message):
    model, opt = _fresh(kind, device, seed=0)
    _train(model, opt, 2, device)
    before = opt.state_dict()
    _, source = _fresh(kind, device, seed=1)
    _train(model, source, 1, device)  # a different, valid state to load from
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(_broken(source.state_dict(), key, value))
    for k, v in opt.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} changed by a failed load")
