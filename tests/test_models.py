"""The three models: gradients against finite differences and against independent
derivations, recurrent cells against plain NumPy (and PyTorch when installed), and a
training sanity check for each."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

import tinygrad_ee as tg
from tinygrad_ee import nn, optim


# --- helpers -------------------------------------------------------------------------
def _set_parameter(model: nn.Module, dotted: str, value: tg.Tensor) -> None:
    *path, last = dotted.split(".")
    owner = model
    for part in path:
        owner = owner[int(part)] if part.isdigit() else getattr(owner, part)
    setattr(owner, last, value)


def gradcheck_model(model: nn.Module, loss_of_model, *inputs: tg.Tensor) -> None:
    """gradcheck of ``loss_of_model(model, *inputs)`` w.r.t. every parameter and input."""
    names = [name for name, _ in model.named_parameters()]
    parameters = [p.detach().requires_grad_() for _, p in model.named_parameters()]

    def loss(*tensors):
        for name, value in zip(names, tensors[: len(names)]):
            _set_parameter(model, name, value)
        return loss_of_model(model, *tensors[len(names) :])

    tg.gradcheck(loss, *parameters, *inputs, atol=1e-7, rtol=1e-5)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# --- gradients against finite differences (hypothesis, float64) ---------------------
@given(
    hidden=st.integers(3, 6),
    inputs=st.integers(2, 6),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_autoencoder_loss_gradients(device, hidden, inputs, batch, seed):
    nn.seed(seed, device)
    model = SparseAutoencoder(inputs, hidden, device=device, dtype="float64")
    x = tg.Tensor(
        np.random.default_rng(seed).uniform(0.1, 0.9, (batch, inputs)),
        requires_grad=True,
        device=device,
    )
    gradcheck_model(model, lambda m, x: m.loss(x, lam=1e-3, beta=2.0, rho=0.1), x)


@given(
    vocab=st.integers(3, 8),
    dim=st.integers(1, 3),
    hidden=st.integers(3, 6),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_language_model_loss_gradients(device, vocab, dim, hidden, batch, seed):
    nn.seed(seed, device)
    model = FourGramLanguageModel(vocab, dim, hidden, device=device, dtype="float64")
    # A larger init than N(0, 0.01^2) so that the gradients are not all tiny.
    for p in model.parameters():
        p.data = p.data * 30
    rng = np.random.default_rng(seed)
    context = tg.Tensor(rng.integers(0, vocab, (batch, 3)), device=device)
    targets = tg.Tensor(rng.integers(0, vocab, batch), device=device)
    gradcheck_model(model, lambda m: m.loss(context, targets))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@settings(max_examples=12)  # each example gradchecks ~200 entries through T steps
@given(
    hidden=st.integers(3, 6),
    steps=st.integers(2, 6),
    batch=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_sequence_classifier_loss_gradients(device, cell, hidden, steps, batch, seed):
    nn.seed(seed, device)
    model = SequenceClassifier(
        cell,
        input_size=2,
        classes=3,
        hidden_size=hidden,
        head_sizes=(4, 3),
        device=device,
        dtype="float64",
    )
    rng = np.random.default_rng(seed)
    x = tg.Tensor(rng.normal(size=(batch, steps, 2)), requires_grad=True, device=device)
    targets = tg.Tensor(rng.integers(0, 3, batch), device=device)
    gradcheck_model(model, lambda m, x: m.loss(x, targets), x)


# --- the autoencoder against a closed-form derivation of dJ --------------------------
def test_autoencoder_matches_closed_form_gradient():
    rng = np.random.default_rng(3)
    n, d, h_size, lam, beta, rho = 7, 10, 4, 1e-3, 2.0, 0.05
    model = SparseAutoencoder(d, h_size, dtype="float64")
    x_host = rng.uniform(0.1, 0.9, (n, d))
    x = tg.Tensor(x_host, requires_grad=True)
    loss = model.loss(x, lam, beta, rho)
    loss.backward()

    w1, b1 = model.encoder.weight.numpy(), model.encoder.bias.numpy()
    w2, b2 = model.decoder.weight.numpy(), model.decoder.bias.numpy()
    h = sigmoid(x_host @ w1 + b1)
    o = sigmoid(h @ w2 + b2)
    rho_hat = h.mean(axis=0)
    kl = rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))
    j = ((x_host - o) ** 2).sum() / (2 * n) + lam / 2 * ((w1**2).sum() + (w2**2).sum())
    j += beta * kl.sum()
    # dJ/dz2 = (o - x)/N * o(1 - o); dJ/dh adds the sparsity term beta/N dKL/drho_hat.
    delta2 = (o - x_host) / n * o * (1 - o)
    d_kl = -rho / rho_hat + (1 - rho) / (1 - rho_hat)
    delta1 = (delta2 @ w2.T + beta / n * d_kl) * h * (1 - h)
    expected = {
        "encoder.weight": x_host.T @ delta1 + lam * w1,
        "encoder.bias": delta1.sum(axis=0),
        "decoder.weight": h.T @ delta2 + lam * w2,
        "decoder.bias": delta2.sum(axis=0),
    }
    np.testing.assert_allclose(loss.item(), j, rtol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), expected[name], rtol=1e-10, atol=1e-13)
    # x appears directly in the reconstruction term and through the encoder.
    np.testing.assert_allclose(
        x.grad.numpy(), (x_host - o) / n + delta1 @ w1.T, rtol=1e-10, atol=1e-13
    )


# --- recurrent cells against plain NumPy -------------------------------------------------
def numpy_last_hidden(cell: str, wx, wh, b, x):
    """A plain NumPy forward of the cells of docs/experiments.md: x (B, T, C) -> h_T (B, H)."""
    batch, steps, _ = x.shape
    hidden = wh.shape[0]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    for t in range(steps):
        a = x[:, t] @ wx + b
        if cell == "rnn":
            h = np.tanh(a + h @ wh)
        elif cell == "lstm":
            a = a + h @ wh
            i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
        else:
            u = h @ wh
            z = sigmoid(a[:, :hidden] + u[:, :hidden])
            r = sigmoid(a[:, hidden : 2 * hidden] + u[:, hidden : 2 * hidden])
            n = np.tanh(a[:, 2 * hidden :] + r * u[:, 2 * hidden :])
            h = (1 - z) * h + z * n
    return h


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_cells_match_a_plain_numpy_forward(device, cell):
    rng = np.random.default_rng(5)
    model = SequenceClassifier(
        cell, input_size=3, classes=4, hidden_size=6, device=device, dtype="float64"
    )
    model.cell.bias.data = (
        model.cell.bias.data + tg.Tensor(rng.normal(size=model.cell.bias.shape), device=device).data
    )
    x = rng.normal(size=(4, 9, 3))
    ours = model.last_hidden(tg.Tensor(x, device=device)).numpy()
    wx, wh, b = (p.numpy() for p in model.cell.parameters())
    np.testing.assert_allclose(ours, numpy_last_hidden(cell, wx, wh, b, x), rtol=1e-12, atol=1e-14)


# --- recurrent cells against PyTorch (optional) -------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cells_match_pytorch(cell):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    hidden, channels, steps, batch = 5, 3, 7, 4
    model = SequenceClassifier(cell, channels, 2, hidden_size=hidden, dtype="float64")
    model.cell.bias.data = rng.normal(size=model.cell.bias.shape)
    wx, wh, b = (p.numpy() for p in model.cell.parameters())
    x = rng.normal(size=(batch, steps, channels))
    cotangent = rng.normal(size=(batch, hidden))

    # Mapping: torch stores (gates*H, in) matrices. LSTM gate order is the same [i, f, g, o].
    # torch GRU orders [r, z, n] and uses z' = 1 - z (so z's weights and bias are negated),
    # with b_hn (inside r * (...)) zero.
    def blocks(m):  # split the last axis into gate blocks
        return [m[..., k * hidden : (k + 1) * hidden] for k in range(m.shape[-1] // hidden)]

    if cell == "lstm":
        torch_cell = torch.nn.LSTMCell(channels, hidden, dtype=torch.float64)
        to_torch = lambda m: m  # noqa: E731
    else:
        torch_cell = torch.nn.GRUCell(channels, hidden, dtype=torch.float64)

        def to_torch(m):
            z, r, n = blocks(m)
            return np.concatenate([r, -z, n], axis=-1)

    with torch.no_grad():
        torch_cell.weight_ih.copy_(torch.from_numpy(to_torch(wx).T))
        torch_cell.weight_hh.copy_(torch.from_numpy(to_torch(wh).T))
        torch_cell.bias_ih.copy_(torch.from_numpy(to_torch(b)))
        torch_cell.bias_hh.zero_()
    h = torch.zeros(batch, hidden, dtype=torch.float64)
    c = torch.zeros(batch, hidden, dtype=torch.float64)
    xt = torch.from_numpy(x)
    for t in range(steps):
        if cell == "lstm":
            h, c = torch_cell(xt[:, t], (h, c))
        else:
            h = torch_cell(xt[:, t], h)
    (h * torch.from_numpy(cotangent)).sum().backward()

    ours = model.last_hidden(tg.Tensor(x))
    np.testing.assert_allclose(ours.numpy(), h.detach().numpy(), rtol=1e-10, atol=1e-12)
    ours.backward(tg.Tensor(cotangent))
    got = {
        "input_weight": model.cell.input_weight.grad.numpy(),
        "hidden_weight": model.cell.hidden_weight.grad.numpy(),
        "bias": model.cell.bias.grad.numpy(),
    }
    want = {
        "input_weight": to_torch(torch_cell.weight_ih.grad.numpy().T),
        "hidden_weight": to_torch(torch_cell.weight_hh.grad.numpy().T),
        "bias": to_torch(torch_cell.bias_ih.grad.numpy()),
    }
    if cell == "gru":  # to_torch reorders [z, r, n] -> [r, -z, n]; map torch's back

        def from_torch(m):
            r, z, n = blocks(m)
            return np.concatenate([-z, r, n], axis=-1)

        want = {
            k: from_torch(to_torch_grad)
            for k, to_torch_grad in (
                ("input_weight", torch_cell.weight_ih.grad.numpy().T),
                ("hidden_weight", torch_cell.weight_hh.grad.numpy().T),
                ("bias", torch_cell.bias_ih.grad.numpy()),
            )
        }
    for name in got:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12, err_msg=name)


# --- training sanity ---------------------------------------------------------------------
def train(model, loss_fn, steps, lr, momentum=0.85):
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_autoencoder_training_reduces_the_loss():
    nn.seed(0)
    model = SparseAutoencoder(64, 16)
    x = tg.Tensor(np.random.default_rng(0).uniform(0.1, 0.9, (32, 64)), dtype="float32")
    losses = train(model, lambda: model.loss(x, lam=5e-4, beta=2.0, rho=0.025), 40, lr=0.5)
    assert losses[-1] < 0.5 * losses[0], losses


def test_language_model_training_reduces_the_loss():
    nn.seed(0)
    rng = np.random.default_rng(0)
    model = FourGramLanguageModel(vocab_size=20, embedding_dim=8, hidden_size=32)
    context = tg.Tensor(rng.integers(0, 20, (64, 3)))
    targets = tg.Tensor(context.numpy()[:, 0].copy())  # "the next word repeats the first"
    # N(0, 0.01^2) weights start with almost no signal: a plateau at the unigram
    # entropy comes first, hence the many steps and the large learning rate.
    losses = train(model, lambda: model.loss(context, targets), 150, lr=2.0)
    assert losses[0] == pytest.approx(np.log(20), rel=0.01)
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_classifier_training_reduces_the_loss(cell):
    nn.seed(0)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 48)
    # Class k: a sine of frequency k + 1 plus noise.
    t = np.arange(12)
    x = np.sin(np.outer(labels + 1, t) * 0.5)[:, :, None] + rng.normal(0, 0.1, (48, 12, 1))
    model = SequenceClassifier(cell, input_size=1, classes=3, hidden_size=16)
    xs, ys = tg.Tensor(x, dtype="float32"), tg.Tensor(labels)
    losses = train(model, lambda: model.loss(xs, ys), 40, lr=0.1)
    assert losses[-1] < 0.6 * losses[0], losses


# --- initialisation ------------------------------------------------------------------------
@pytest.mark.parametrize("cell, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_xavier_start_is_uniform_per_gate_block_from_the_seed(cell, gates):
    """The default start, drawn again here from the documented distribution."""
    nn.seed(11)
    model = SequenceClassifier(cell, input_size=3, classes=2, hidden_size=5, init="xavier")
    assert (
        model.state_dict().keys()
        == SequenceClassifier(cell, 3, 2, hidden_size=5).state_dict().keys()
    )
    rng = np.random.default_rng(11)  # the initialisers' generator, seeded alike
    input_bound, hidden_bound = np.sqrt(6 / (3 + 5)), np.sqrt(6 / (5 + 5))
    expected_input = rng.uniform(-input_bound, input_bound, (3, gates * 5)).astype("float32")
    expected_hidden = rng.uniform(-hidden_bound, hidden_bound, (5, gates * 5)).astype("float32")
    np.testing.assert_array_equal(model.cell.input_weight.numpy(), expected_input)
    np.testing.assert_array_equal(model.cell.hidden_weight.numpy(), expected_hidden)
    np.testing.assert_array_equal(model.cell.bias.numpy(), np.zeros(gates * 5))


@pytest.mark.parametrize("cell, gates", [("rnn", 1), ("lstm", 4), ("gru", 3)])
def test_orthogonal_start_per_gate_block_and_the_forget_bias(device, cell, gates):
    nn.seed(4, device)
    hidden = 7
    model = SequenceClassifier(
        cell, 3, 2, hidden_size=hidden, init="orthogonal", device=device, dtype="float64"
    )
    weight = model.cell.hidden_weight.numpy()
    assert weight.shape == (hidden, gates * hidden)
    blocks = [weight[:, k * hidden : (k + 1) * hidden] for k in range(gates)]
    for k, block in enumerate(blocks):
        np.testing.assert_allclose(block.T @ block, np.eye(hidden), rtol=0, atol=1e-6, err_msg=k)
    for a in range(gates):  # drawn independently: not the same matrix again
        for b in range(a):
            assert not np.allclose(blocks[a], blocks[b])
    expected_bias = np.zeros(gates * hidden)
    if cell == "lstm":  # blocks [i, f, g, o]: the forget gate's bias is 1
        expected_bias[hidden : 2 * hidden] = 1.0
    np.testing.assert_array_equal(model.cell.bias.numpy(), expected_bias)
    bound = np.sqrt(6 / (3 + hidden))  # the input weights stay Xavier-uniform
    assert np.abs(model.cell.input_weight.numpy()).max() <= bound
    nn.seed(4, "cpu")
    on_cpu = SequenceClassifier(cell, 3, 2, hidden_size=hidden, init="orthogonal", dtype="float64")
    for name, value in on_cpu.state_dict().items():  # the same start on every device
        np.testing.assert_array_equal(model.state_dict()[name], value, err_msg=name)


def test_orthogonal_float32_blocks_are_orthogonal_to_float32_rounding():
    nn.seed(0)
    model = SequenceClassifier("lstm", 3, 2, hidden_size=64, init="orthogonal")
    weight = model.cell.hidden_weight.numpy().astype(np.float64)
    for k in range(4):
        block = weight[:, k * 64 : (k + 1) * 64]
        np.testing.assert_allclose(block.T @ block, np.eye(64), rtol=0, atol=1e-6)


def test_unknown_init_names_the_choices():
    with pytest.raises(
        ValueError, match=r"unknown init 'he': expected one of \['xavier', 'orthogonal'\]"
    ):
        SequenceClassifier("gru", 3, 2, init="he")


# --- input standardisation ---------------------------------------------------------------------
def standardized_model(cell="gru", device="cpu", dtype="float64", **options):
    nn.seed(0, device)
    return SequenceClassifier(
        cell, 2, 3, hidden_size=4, head_sizes=(5,), device=device, dtype=dtype, **options
    )


def test_fit_standardization_takes_per_channel_statistics_of_the_training_inputs():
    model = standardized_model(standardize=True)
    # channel 0 holds 1, 3, 1, 3: mean 2, deviation 1; channel 1 is constant 5
    x = np.array([[[1.0, 5.0], [3.0, 5.0]], [[1.0, 5.0], [3.0, 5.0]]])
    model.fit_standardization(x)
    np.testing.assert_array_equal(model.input_mean.numpy(), [2.0, 5.0])
    np.testing.assert_array_equal(model.input_std.numpy(), [1.0, 1.0])  # constant: std 1
    rng = np.random.default_rng(0)
    x = rng.normal([3.0, -2.0], [0.5, 4.0], size=(6, 9, 2))
    model.fit_standardization(tg.Tensor(x))  # a Tensor too
    pooled = x.reshape(-1, 2)  # every batch and time step together
    np.testing.assert_allclose(model.input_mean.numpy(), pooled.mean(axis=0), rtol=1e-14)
    deviation = np.sqrt(((pooled - pooled.mean(axis=0)) ** 2).mean(axis=0))  # population
    np.testing.assert_allclose(model.input_std.numpy(), deviation, rtol=1e-14)


def test_standardised_logits_are_the_logits_of_standardised_inputs(device):
    plain = standardized_model(device=device)
    model = standardized_model(device=device, standardize=True)
    x = np.random.default_rng(1).normal(10.0, 3.0, size=(4, 6, 2))
    model.fit_standardization(x)
    mean, std = model.input_mean.numpy(), model.input_std.numpy()
    ours = model.logits(tg.Tensor(x, device=device)).numpy()
    expected = plain.logits(tg.Tensor((x - mean) / std, device=device)).numpy()
    np.testing.assert_array_equal(ours, expected)


def test_without_standardisation_the_model_is_as_before():
    model = standardized_model()
    assert not model.named_buffers()
    assert list(model.state_dict()) == [
        "cell.input_weight",
        "cell.hidden_weight",
        "cell.bias",
        "head.0.weight",
        "head.0.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    with pytest.raises(ValueError, match="built with standardize=False"):
        model.fit_standardization(np.zeros((2, 3, 2)))


def _train_and_evaluate(x_train, y_train, x_other):
    """Fit the statistics, train 5 Adam steps with weight decay, evaluate on other data."""
    model = standardized_model("lstm", standardize=True)
    model.fit_standardization(x_train)
    optimizer = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        model.loss(tg.Tensor(x_train), tg.Tensor(y_train)).backward()
        optimizer.step()
    with tg.no_grad():
        model.logits(tg.Tensor(x_other))
    return model


def test_standardisation_statistics_come_from_the_training_inputs_only():
    rng = np.random.default_rng(2)
    x_train, y_train = rng.normal(4.0, 2.0, (8, 5, 2)), rng.integers(0, 3, 8)
    x_test = rng.normal(4.0, 2.0, (8, 5, 2))
    clean = _train_and_evaluate(x_train, y_train, x_test)
    poisoned = _train_and_evaluate(x_train, y_train, x_test * 1e6 - 3e5)
    for name, value in clean.state_dict().items():
        np.testing.assert_array_equal(poisoned.state_dict()[name], value, err_msg=name)
    # training changed no statistic (the optimiser, with its weight decay, never saw them)
    np.testing.assert_array_equal(clean.input_mean.numpy(), x_train.mean(axis=(0, 1)))
    np.testing.assert_array_equal(clean.input_std.numpy(), x_train.std(axis=(0, 1)))
    assert not any(p is clean.input_mean or p is clean.input_std for p in clean.parameters())


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_standardised_model_gradients_and_no_gradient_for_the_statistics(device, cell):
    model = standardized_model(cell, device=device, standardize=True, init="orthogonal")
    rng = np.random.default_rng(3)
    model.fit_standardization(rng.normal([5.0, -1.0], [3.0, 0.2], (10, 4, 2)))
    x = tg.Tensor(rng.normal([5.0, -1.0], [3.0, 0.2], (3, 4, 2)), requires_grad=True, device=device)
    targets = tg.Tensor(rng.integers(0, 3, 3), device=device)
    gradcheck_model(model, lambda m, x: m.loss(x, targets), x)
    model.loss(x, targets).backward()
    assert model.input_mean.grad is None and model.input_std.grad is None


def test_state_dict_round_trip_carries_the_statistics(device, tmp_path):
    source = standardized_model(device=device, dtype="float32", standardize=True)
    x = np.random.default_rng(4).normal(0.3, 7.0, (5, 6, 2)).astype("float32")
    source.fit_standardization(x)
    np.savez(tmp_path / "model.npz", **source.state_dict())
    target = standardized_model(device=device, dtype="float32", standardize=True)
    with np.load(tmp_path / "model.npz") as saved:
        target.load_state_dict(dict(saved))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value, err_msg=name)
    x = tg.Tensor(x, device=device)
    np.testing.assert_array_equal(target.logits(x).numpy(), source.logits(x).numpy())


@pytest.mark.parametrize("bad, shown", [(0.0, "0.0"), (-2.0, "-2.0")])
def test_load_refuses_a_standard_deviation_that_is_not_positive(bad, shown):
    model = standardized_model(standardize=True)
    before = model.state_dict()
    state = dict(before, input_std=np.array([1.0, bad]))
    with pytest.raises(
        ValueError, match=rf"'input_std' must be positive, got {shown} \(channel 1\)"
    ):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 3, 3)), r"must have shape \(B, T, 2\) with B, T > 0, got \(2, 3, 3\)"),
        (np.zeros((0, 3, 2)), r"got \(0, 3, 2\)"),
        (np.zeros((6, 2)), r"got \(6, 2\)"),
        (np.full((2, 3, 2), np.nan), "training inputs hold NaN or infinity"),
        (np.full((2, 3, 2), "a"), "training inputs must be numbers, got <U1"),
        (np.full((2, 3, 2), 1e300), "beyond the range of float32"),
        # each value and the mean (1e38) fit in float32; -3e38 - 1e38 does not
        (
            np.array([[[0, 3e38]], [[0, 3e38]], [[0, -3e38]]]),
            r"channel 1 spans -3e\+38 to 3e\+38: x - mean reaches 4e\+38, beyond the range of "
            "float32",
        ),
    ],
)
def test_fit_standardization_checks_its_inputs_and_changes_nothing(x, message):
    model = standardized_model(dtype="float32", standardize=True)
    with pytest.raises(ValueError, match=message):
        model.fit_standardization(x)
    np.testing.assert_array_equal(model.input_mean.numpy(), [0.0, 0.0])
    np.testing.assert_array_equal(model.input_std.numpy(), [1.0, 1.0])
