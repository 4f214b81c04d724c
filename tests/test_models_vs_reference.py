"""The engine's model gradients equal the hand-derived NumPy ones in benchmarks/reference.py
(whose own gradients are checked against finite differences in test_reference.py)."""

import numpy as np
import pytest
from tinygrad_ee.benchmarks import reference
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

import tinygrad_ee as tg


def assert_same_gradients(model, loss, expected_loss, expected_grads):
    loss.backward()
    np.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), expected_grads[name], rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_autoencoder_matches_hand_derived():
    rng = np.random.default_rng(0)
    params = reference.init_autoencoder(8, rng, np.float64, input_size=20)
    x = rng.uniform(0.1, 0.9, (6, 20))
    model = SparseAutoencoder(20, 8, dtype="float64")
    model.load_state_dict(params)
    expected = reference.autoencoder_loss_and_grads(params, x, 5e-4, 2.0, 0.025)
    assert_same_gradients(model, model.loss(tg.Tensor(x), 5e-4, 2.0, 0.025), *expected)


def test_language_model_matches_hand_derived():
    rng = np.random.default_rng(1)
    params = reference.init_language_model(11, 4, 6, rng, np.float64)
    for value in params.values():
        value *= 50  # away from the near-zero start, so every gradient is sizeable
    context = rng.integers(0, 11, (9, 3))
    context[0] = [2, 2, 2]  # repeated indices must add up
    targets = rng.integers(0, 11, 9)
    model = FourGramLanguageModel(11, 4, 6, dtype="float64")
    model.load_state_dict(params)
    expected = reference.language_model_loss_and_grads(params, context, targets)
    loss = model.loss(tg.Tensor(context), tg.Tensor(targets))
    assert_same_gradients(model, loss, *expected)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_classifier_matches_hand_derived(cell):
    rng = np.random.default_rng(2)
    params = reference.init_recurrent(cell, 3, 7, 4, rng, np.float64)
    params["cell.bias"] = rng.normal(size=params["cell.bias"].shape)
    x = rng.normal(size=(5, 11, 3))
    targets = rng.integers(0, 4, 5)
    model = SequenceClassifier(cell, 3, 4, hidden_size=7, dtype="float64")
    model.load_state_dict(params)
    expected = reference.recurrent_loss_and_grads(cell, params, x, targets)
    assert_same_gradients(model, model.loss(tg.Tensor(x), tg.Tensor(targets)), *expected)
