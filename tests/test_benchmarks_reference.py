"""The speed floor of the benchmarks, the tuned hand-derived NumPy step
(benchmarks/reference.py), against finite differences, formulas written out
independently, and the plain oracle of the tests (tests/oracle.py).

Each model's gradients are checked in float64 by central differences on a random subset
of entries of every parameter; the parameters are redrawn at a scale (about 0.5) where
every term of the loss has a gradient well above the finite-difference noise.
"""

import decimal
import math
from decimal import Decimal

import numpy as np
import oracle
import pytest
from tinygrad_ee.benchmarks import reference as ref

import tinygrad_ee as tg

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-9  # for entries whose true gradient is ~0 (e.g. behind a dead ReLU)
ENTRIES = 20  # checked per parameter


def rescaled(params, rng, scale=0.5):
    """Same keys, shapes and dtypes as ``params``, values N(0, scale^2)."""
    return {k: rng.normal(0.0, scale, size=v.shape).astype(v.dtype) for k, v in params.items()}


def check_gradients(loss_fn, params, grads, rng, entries=ENTRIES):
    """Central differences of ``loss_fn(params)`` at ``entries`` random indices per param."""
    assert grads.keys() == params.keys()
    for name, p in params.items():
        assert grads[name].shape == p.shape and grads[name].dtype == p.dtype, name
        flat = p.reshape(-1)  # a view: perturbing it perturbs params[name]
        picks = rng.choice(flat.size, size=min(entries, flat.size), replace=False)
        for k in picks:
            saved = flat[k]
            flat[k] = saved + EPS
            up = loss_fn(params)
            flat[k] = saved - EPS
            down = loss_fn(params)
            flat[k] = saved
            numeric = (up - down) / (2 * EPS)
            analytic = grads[name].reshape(-1)[k]
            index = np.unravel_index(k, p.shape)
            assert abs(analytic - numeric) <= RTOL * max(abs(numeric), abs(analytic)) + ATOL, (
                f"{name}{index}: analytic {analytic:.10g}, numeric {numeric:.10g}"
            )


# --------------------------------------------------------------------------- sigmoid


def sigmoid_by_cases(z):
    """The stable formulation written out with np.where, as the engine states it."""
    e = np.exp(-np.abs(z))
    r = 1 / (1 + e)
    out = np.where(z >= 0, r, e * r)
    return out, out * np.where(z >= 0, e * r, r)  # sigmoid'(z) = sigmoid(z) sigmoid(-z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_slope_equal_the_stated_formulation_bit_for_bit(dtype):
    rng = np.random.default_rng(11)
    specials = [0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 1e4, -1e4, np.inf, -np.inf]
    z = np.concatenate([rng.normal(0.0, 20.0, 2790), specials]).astype(dtype)
    expected, expected_slope = sigmoid_by_cases(z)
    slope = np.empty_like(z)
    out = ref.sigmoid(z, slope=slope)
    assert out.dtype == dtype and slope.dtype == dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(slope, expected_slope)
    np.testing.assert_array_equal(ref.sigmoid(z), expected)  # without a slope
    in_place = z.reshape(70, -1).copy()  # 2-d, written over its own input
    ref.sigmoid(in_place, out=in_place, work=np.empty_like(in_place))
    np.testing.assert_array_equal(in_place.ravel(), expected)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-15)])
def test_sigmoid_keeps_its_relative_precision_in_both_tails(dtype, rtol):
    """sigmoid(-z) = e^-z / (1 + e^-z) and sigmoid'(+-z) = e^-z / (1 + e^-z)^2 for z > 0,
    evaluated in Python floats: 0.5 tanh(z / 2) + 0.5 rounds the left tail to 0 and
    out (1 - out) the slope of both tails."""
    z = np.array([5.0, 17.0, 30.0, 60.0], dtype)
    tail = [math.exp(-v) / (1 + math.exp(-v)) for v in z.tolist()]
    slope_tail = [math.exp(-v) / (1 + math.exp(-v)) ** 2 for v in z.tolist()]
    for sign in (1, -1):
        slope = np.empty_like(z)
        out = ref.sigmoid(sign * z, slope=slope)
        np.testing.assert_allclose(slope, slope_tail, rtol=4 * rtol)
        if sign == -1:
            np.testing.assert_allclose(out, tail, rtol=2 * rtol)


# --------------------------------------------------------------------------- tanh'


def engine_gradient(name, z):
    """d name(z) / dz from the engine, seeded with ones: the local derivative itself."""
    x = tg.Tensor(z, requires_grad=True)
    getattr(x, name)().backward(np.ones_like(z))
    return x.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_local_derivatives_equal_the_engines_bit_for_bit(dtype):
    """The reference pays for the engine's precision, no more, no less."""
    rng = np.random.default_rng(14)
    specials = [0.0, -0.0, 1e-30, -1e-30, 9.0, -9.0, 30.0, -30.0, 1e4, -1e4, np.inf, -np.inf]
    z = np.concatenate([rng.normal(0.0, 20.0, 2788), specials]).astype(dtype)
    tanh_slope = ref.tanh_slope(z)
    assert tanh_slope.dtype == dtype
    np.testing.assert_array_equal(tanh_slope, engine_gradient("tanh", z))
    sigmoid_slope = np.empty_like(z)
    ref.sigmoid(z, slope=sigmoid_slope)
    np.testing.assert_array_equal(sigmoid_slope, engine_gradient("sigmoid", z))
    in_place = z.reshape(70, -1).copy()  # 2-d, written over its own input
    ref.tanh_slope(in_place, out=in_place, work=np.empty_like(in_place))
    np.testing.assert_array_equal(in_place.ravel(), tanh_slope)


def exact_tanh_slope(z: float) -> float:
    """sech(z)^2 = (2 / (e^z + e^-z))^2 in 50-digit decimal arithmetic, rounded once."""
    with decimal.localcontext(decimal.Context(prec=50)):
        x = Decimal(z)
        return float((2 / (x.exp() + (-x).exp())) ** 2)


@pytest.mark.parametrize(
    "dtype, largest", [(np.float32, 40.0), (np.float64, 300.0)]
)  # sech(z)^2 stays a normal number
def test_tanh_slope_keeps_its_relative_precision_in_both_tails(dtype, largest):
    """Where tanh(z) rounds to +-1 (float32: |z| >= 9), 1 - tanh(z)^2 is 0; well before,
    it has lost most of its digits (float32, z = 5: ~1e-3 relative error)."""
    magnitudes = [0.1, 1.0, 5.0, 9.0, 12.0, 20.0, largest / 2, largest]
    z = np.array(magnitudes + [-m for m in magnitudes], dtype)
    expected = [exact_tanh_slope(v) for v in z.tolist()]
    np.testing.assert_allclose(ref.tanh_slope(z), expected, rtol=6 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("cell", ref.RECURRENT_CELLS)
def test_saturated_tanh_units_keep_their_gradients_in_float32(cell):
    """Every tanh of a cell saturated (|pre-activation| 10-12): the float32 gradients of
    the tanh block's weights, ~1e-9 and below, agree with float64's; with 1 - tanh^2 they
    are 0. (float64 is exact enough here with either formula.)

    Wh = 0 and the same input at every step, so that no entry is a sum of terms of both
    signs (float32 would then lose relative precision by cancellation alone), and only
    the tanh block is compared (the GRU's z block gets n - h_{t-1}, a cancellation). The
    LSTM's g block gets dc through tanh'(c_t) too: its forget gate near 1 lets c grow to
    ~11 over the 12 steps."""
    hid, bias = (
        3,
        {"rnn": [[0.0]], "lstm": [[5.0], [5.0], [0.0], [3.0]], "gru": [[2.0], [1.0], [0.0]]},
    )
    params = ref.init_recurrent(cell, 2, hid, K, np.random.default_rng(15), np.float64)
    params["cell.hidden_weight"][:] = 0
    params["cell.input_weight"] *= 0.1
    blocks = params["cell.bias"].reshape(-1, hid)  # [i, f, g, o] or [z, r, n]: a view
    blocks[:] = bias[cell]
    tanh_block = {"rnn": 0, "lstm": 2, "gru": 2}[cell]
    blocks[tanh_block] = [11.0, -10.5, 10.0]
    columns = slice(tanh_block * hid, (tanh_block + 1) * hid)
    x, targets = np.ones((1, 12, 2)), np.array([1])
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    p64 = {k: v.astype(np.float64) for k, v in p32.items()}  # the same values
    _, g32 = ref.recurrent_loss_and_grads(cell, p32, x.astype(np.float32), targets)
    _, g64 = ref.recurrent_loss_and_grads(cell, p64, x, targets)
    expected_bias = g64["cell.bias"][columns]
    assert np.count_nonzero(expected_bias) >= 2 and np.all(np.abs(expected_bias) < 1e-7)
    for name in ("cell.input_weight", "cell.bias", "cell.hidden_weight"):
        np.testing.assert_allclose(
            g32[name][..., columns], g64[name][..., columns], rtol=1e-3, atol=0, err_msg=name
        )


# --------------------------------------------------------------------------- autoencoder


def autoencoder_case(rng, input_size=6, hidden=4, n=5, dtype=np.float64):
    params = rescaled(ref.init_autoencoder(hidden, rng, dtype, input_size=input_size), rng)
    x = rng.uniform(0.1, 0.9, size=(n, input_size)).astype(dtype)
    return params, x


@pytest.mark.parametrize("lam, beta, rho", [(5e-4, 2.0, 0.025), (0.3, 0.7, 0.4), (0.0, 0.0, 0.1)])
def test_autoencoder_gradients(lam, beta, rho):
    rng = np.random.default_rng(0)
    params, x = autoencoder_case(rng)
    loss, grads = ref.autoencoder_loss_and_grads(params, x, lam, beta, rho)
    assert isinstance(loss, float) and np.isfinite(loss)
    check_gradients(
        lambda p: ref.autoencoder_loss_and_grads(p, x, lam, beta, rho)[0], params, grads, rng
    )


def test_autoencoder_loss_matches_the_formula_at_the_real_input_size():
    rng = np.random.default_rng(1)
    params = ref.init_autoencoder(3, rng, np.float64)
    assert params["encoder.weight"].shape == (256, 3)
    assert params["decoder.weight"].shape == (3, 256)
    x = rng.uniform(0.1, 0.9, size=(4, 256))
    lam, beta, rho = 1e-3, 2.0, 0.025
    w1, b1, w2, b2 = params.values()
    h = 1 / (1 + np.exp(-(x @ w1 + b1)))
    o = 1 / (1 + np.exp(-(h @ w2 + b2)))
    q = h.mean(axis=0)
    expected = (
        ((x - o) ** 2).sum() / (2 * len(x))
        + lam / 2 * ((w1**2).sum() + (w2**2).sum())
        + beta * (rho * np.log(rho / q) + (1 - rho) * np.log((1 - rho) / (1 - q))).sum()
    )
    loss, grads = ref.autoencoder_loss_and_grads(params, x, lam, beta, rho)
    assert loss == pytest.approx(expected, rel=1e-12)
    check_gradients(
        lambda p: ref.autoencoder_loss_and_grads(p, x, lam, beta, rho)[0], params, grads, rng, 5
    )


# --------------------------------------------------------------------------- language model

V, D, P = 7, 2, 4


def language_model_case(rng, n=6, dtype=np.float64):
    params = rescaled(ref.init_language_model(V, D, P, rng, dtype), rng, scale=0.8)
    context = rng.integers(0, V, size=(n, 3))
    targets = rng.integers(0, V, size=n)
    return params, context, targets


def test_language_model_gradients():
    rng = np.random.default_rng(2)
    params, context, targets = language_model_case(rng)
    loss, grads = ref.language_model_loss_and_grads(params, context, targets)
    check_gradients(
        lambda p: ref.language_model_loss_and_grads(p, context, targets)[0], params, grads, rng
    )


def test_language_model_with_repeated_indices():
    """A word repeated within a row and across rows: its embedding gradients add up."""
    rng = np.random.default_rng(3)
    params, _, _ = language_model_case(rng)
    context = np.array([[1, 1, 1], [1, 4, 1], [4, 1, 0], [6, 6, 1]])
    targets = np.array([1, 4, 0, 1])
    loss, grads = ref.language_model_loss_and_grads(params, context, targets)
    # every entry of the (7, 2) embedding, used or not (unused rows must get exactly 0)
    check_gradients(
        lambda p: ref.language_model_loss_and_grads(p, context, targets)[0],
        params,
        grads,
        rng,
        entries=V * D,
    )
    unused = [w for w in range(V) if w not in context]
    assert np.all(grads["embedding.weight"][unused] == 0)


def test_scatter_add_rows_matches_add_at():
    rng = np.random.default_rng(4)
    idx = rng.integers(0, 5, size=40)
    for dtype in (np.float32, np.float64):
        values = rng.normal(size=(40, 3)).astype(dtype)
        expected = np.zeros((5, 3), dtype)
        np.add.at(expected, idx, values)
        out = ref.scatter_add_rows(idx, values, 5)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- recurrent

K = 3


def recurrent_case(cell, rng, batch=3, steps=4, channels=2, hidden=3, dtype=np.float64):
    params = rescaled(ref.init_recurrent(cell, channels, hidden, K, rng, dtype), rng)
    x = rng.normal(size=(batch, steps, channels)).astype(dtype)
    targets = rng.integers(0, K, size=batch)
    return params, x, targets


@pytest.mark.parametrize("cell", ref.RECURRENT_CELLS)
@pytest.mark.parametrize("batch, steps", [(2, 2), (4, 5), (1, 3)])
def test_recurrent_gradients(cell, batch, steps):
    rng = np.random.default_rng(5)
    params, x, targets = recurrent_case(cell, rng, batch=batch, steps=steps)
    loss, grads = ref.recurrent_loss_and_grads(cell, params, x, targets)
    check_gradients(
        lambda p: ref.recurrent_loss_and_grads(cell, p, x, targets)[0], params, grads, rng
    )


@pytest.mark.parametrize("cell", ref.RECURRENT_CELLS)
def test_recurrent_param_layout(cell):
    params = ref.init_recurrent(cell, 3, 5, 6, np.random.default_rng(6), np.float32)
    g = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    assert {k: v.shape for k, v in params.items()} == {
        "cell.input_weight": (3, g * 5),
        "cell.hidden_weight": (5, g * 5),
        "cell.bias": (g * 5,),
        "head.0.weight": (5, 70),
        "head.0.bias": (70,),
        "head.1.weight": (70, 30),
        "head.1.bias": (30,),
        "head.2.weight": (30, 6),
        "head.2.bias": (6,),
    }


def naive_recurrent_logits(cell, params, x):
    """The model equations step by step, gate blocks sliced by name, for the forward check."""
    wx, wh, b = params["cell.input_weight"], params["cell.hidden_weight"], params["cell.bias"]
    hid = wh.shape[0]
    sig = lambda z: 1 / (1 + np.exp(-z))
    block = lambda a, k: a[..., k * hid : (k + 1) * hid]
    h = c = np.zeros((x.shape[0], hid))
    for t in range(x.shape[1]):
        xt = x[:, t]
        if cell == "rnn":
            h = np.tanh(xt @ wx + h @ wh + b)
        elif cell == "lstm":
            a = xt @ wx + h @ wh + b
            i, f, g, o = sig(block(a, 0)), sig(block(a, 1)), np.tanh(block(a, 2)), sig(block(a, 3))
            c = f * c + i * g
            h = o * np.tanh(c)
        else:
            ax, ah = xt @ wx + b, h @ wh
            z = sig(block(ax, 0) + block(ah, 0))
            r = sig(block(ax, 1) + block(ah, 1))
            n = np.tanh(block(ax, 2) + r * block(ah, 2))
            h = (1 - z) * h + z * n
    a = np.maximum(h @ params["head.0.weight"] + params["head.0.bias"], 0)
    a = np.maximum(a @ params["head.1.weight"] + params["head.1.bias"], 0)
    return a @ params["head.2.weight"] + params["head.2.bias"]


def naive_cross_entropy(logits, targets):
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(targets)), targets].mean()


@pytest.mark.parametrize("cell", ref.RECURRENT_CELLS)
def test_recurrent_forward_matches_the_model_equations(cell):
    """Finite differences cannot see the gate order (any consistent order has correct
    gradients); this pins [i, f, g, o] and [z, r, n] and where the GRU's r multiplies,
    in the training pass and in the inference pass (which skips the local derivatives)."""
    rng = np.random.default_rng(8)
    params, x, targets = recurrent_case(cell, rng, batch=3, steps=4, hidden=3)
    params = {k: 3 * v for k, v in params.items()}  # saturate some gates: order matters more
    logits = naive_recurrent_logits(cell, params, x)
    loss, _ = ref.recurrent_loss_and_grads(cell, params, x, targets)
    assert loss == pytest.approx(naive_cross_entropy(logits, targets), rel=1e-12)
    np.testing.assert_allclose(ref.recurrent_logits(cell, params, x), logits, rtol=1e-12)


def test_inference_passes_match_the_model_equations():
    rng = np.random.default_rng(12)
    sig = lambda z: 1 / (1 + np.exp(-z))
    ae, x = autoencoder_case(rng)
    w1, b1, w2, b2 = ae.values()
    expected = sig(sig(x @ w1 + b1) @ w2 + b2)
    np.testing.assert_allclose(ref.autoencoder_forward(ae, x), expected, rtol=1e-12)
    lm, context, _ = language_model_case(rng)
    emb, wh, bh, wo, bo = lm.values()
    e = np.concatenate([emb[context[:, k]] for k in range(3)], axis=1)
    expected = sig(e @ wh + bh) @ wo + bo
    np.testing.assert_allclose(ref.language_model_logits(lm, context), expected, rtol=1e-12)


def test_results_do_not_depend_on_earlier_calls_and_are_not_overwritten_by_later_ones():
    """The recurrent and language-model passes keep scratch arrays between calls (remade
    when a shape or dtype changes); what they return must be the caller's alone."""
    rng = np.random.default_rng(13)

    def snapshot(result):
        loss, grads = result
        return loss, {k: v.copy() for k, v in grads.items()}

    def assert_same(a, b):
        assert a[0] == b[0]
        for k in a[1]:
            np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=k)

    for cell in ref.RECURRENT_CELLS:
        small = recurrent_case(cell, rng, batch=2, steps=3)
        large = recurrent_case(cell, rng, batch=4, steps=6)
        first = ref.recurrent_loss_and_grads(cell, *small)
        kept = snapshot(first)
        ref.recurrent_loss_and_grads(cell, *large)  # other shapes: scratch remade
        ref.recurrent_logits(cell, large[0], large[1])
        assert_same(first, kept)  # the first call's arrays were not reused
        more = recurrent_case(cell, rng, batch=2, steps=3)  # same shapes: scratch reused
        ref.recurrent_loss_and_grads(cell, *more)
        assert_same(first, kept)
        assert_same(ref.recurrent_loss_and_grads(cell, *small), kept)  # same inputs, same results
        p32 = {k: v.astype(np.float32) for k, v in small[0].items()}
        result32 = ref.recurrent_loss_and_grads(cell, p32, small[1].astype(np.float32), small[2])
        assert all(g.dtype == np.float32 for g in result32[1].values())
        assert result32[0] == pytest.approx(kept[0], rel=1e-5)
        assert_same(first, kept)

    lm, context, targets = language_model_case(rng)
    first = ref.language_model_loss_and_grads(lm, context, targets)
    kept = snapshot(first)
    for n in (9, 6):  # other shapes, then the same ones
        ref.language_model_loss_and_grads(*language_model_case(rng, n=n))
        assert_same(first, kept)
    assert_same(ref.language_model_loss_and_grads(lm, context, targets), kept)


def test_unknown_cell_is_an_error():
    with pytest.raises(ValueError, match="cell must be one of"):
        ref.init_recurrent("transformer", 3, 4, 2, np.random.default_rng(0))


# --------------------------------------------------------------------------- all models


def all_cases(dtype):
    """(name, loss_and_grads(params), params) for the five models at small sizes."""
    rng = np.random.default_rng(9)
    ae, x = autoencoder_case(rng, dtype=dtype)
    lm, context, targets = language_model_case(rng, dtype=dtype)
    cases = [
        ("autoencoder", lambda p: ref.autoencoder_loss_and_grads(p, x, 1e-3, 2.0, 0.1), ae),
        ("lm", lambda p: ref.language_model_loss_and_grads(p, context, targets), lm),
    ]
    for cell in ref.RECURRENT_CELLS:
        params, xs, ys = recurrent_case(cell, rng, dtype=dtype)
        cases.append(
            (
                cell,
                lambda p, c=cell, xs=xs, ys=ys: ref.recurrent_loss_and_grads(c, p, xs, ys),
                params,
            )
        )
    return cases


def test_float32_in_float32_out_and_close_to_float64():
    for (name, fn32, p32), (_, fn64, p64) in zip(all_cases(np.float32), all_cases(np.float64)):
        loss32, g32 = fn32(p32)
        loss64, g64 = fn64(p64)
        assert loss32 == pytest.approx(loss64, rel=1e-5), name
        for key in p32:
            assert g32[key].dtype == np.float32, (name, key)
            np.testing.assert_allclose(g32[key], g64[key], rtol=1e-3, atol=1e-5, err_msg=name)


def test_extreme_inputs_stay_finite_without_warnings():
    """Huge pre-activations: stable sigmoid and max-shifted softmax (warnings are errors)."""
    for dtype in (np.float32, np.float64):
        for name, fn, params in all_cases(dtype):
            big = {k: v * 1e4 for k, v in params.items()}
            loss, grads = fn(big)
            assert np.isfinite(loss), name
            assert all(np.all(np.isfinite(g)) for g in grads.values()), name


def test_sgd_momentum_update():
    p = {"w": np.array([1.0, 2.0])}
    opt = ref.SGDMomentum(lr=0.1, momentum=0.5)
    grads = {"w": np.array([1.0, -1.0])}
    opt.step(p, grads)  # v = -0.1 g
    np.testing.assert_allclose(p["w"], [0.9, 2.1])
    opt.step(p, grads)  # v = 0.5 v - 0.1 g
    np.testing.assert_allclose(p["w"], [0.9 - 0.15, 2.1 + 0.15])
    np.testing.assert_array_equal(grads["w"], [1.0, -1.0])  # the gradients are left as they were


def test_sgd_momentum_clips_the_global_norm():
    p = {"a": np.zeros(1), "b": np.zeros(1)}
    ref.SGDMomentum(lr=1.0, momentum=0.0, clip_norm=1.0).step(
        p, {"a": np.array([3.0]), "b": np.array([4.0])}
    )
    np.testing.assert_allclose([p["a"][0], p["b"][0]], [-0.6, -0.8])


def test_training_steps_reduce_the_loss():
    rng = np.random.default_rng(10)
    ae, x = autoencoder_case(rng, dtype=np.float32)
    opt = ref.SGDMomentum(0.5, 0.5)
    losses = [ref.autoencoder_step(ae, opt, x, 1e-4, 0.1, 0.3) for _ in range(30)]
    assert losses[-1] < losses[0]

    lm, context, targets = language_model_case(rng, dtype=np.float32)
    opt = ref.SGDMomentum(0.2, 0.5)
    losses = [ref.language_model_step(lm, opt, context, targets) for _ in range(30)]
    assert losses[-1] < losses[0]

    for cell in ref.RECURRENT_CELLS:
        params = ref.init_recurrent(cell, 2, 4, K, rng, np.float32)
        xs = rng.normal(size=(4, 5, 2)).astype(np.float32)
        ys = rng.integers(0, K, size=4)
        opt = ref.SGDMomentum(0.05, 0.5, clip_norm=5.0)
        losses = [ref.recurrent_step(cell, params, opt, xs, ys) for _ in range(30)]
        assert losses[-1] < losses[0], cell


def test_the_speed_floor_computes_what_the_oracle_does():
    """The tuned step (scratch arrays, tanh' in chunks of steps) against the plain one,
    over more steps than a chunk."""
    rng = np.random.default_rng(16)
    ae, x = autoencoder_case(rng)
    lm, context, targets = language_model_case(rng)
    pairs = [
        (
            ref.autoencoder_loss_and_grads(ae, x, 1e-3, 2.0, 0.1),
            oracle.autoencoder(ae, x, 1e-3, 2.0, 0.1),
        ),
        (
            ref.language_model_loss_and_grads(lm, context, targets),
            oracle.language_model(lm, context, targets),
        ),
    ]
    for cell in ref.RECURRENT_CELLS:
        params, xs, ys = recurrent_case(cell, rng, steps=ref.SLOPE_CHUNK + 3)
        ours, plain = (
            ref.recurrent_loss_and_grads(cell, params, xs, ys),
            oracle.sequence_classifier(cell, params, xs, ys),
        )
        pairs.append((ours, plain))
    for (loss, grads), (expected_loss, expected) in pairs:
        assert loss == pytest.approx(expected_loss, rel=1e-12)
        assert grads.keys() == expected.keys()
        for key in expected:
            np.testing.assert_allclose(
                grads[key], expected[key], rtol=1e-9, atol=1e-12, err_msg=key
            )
