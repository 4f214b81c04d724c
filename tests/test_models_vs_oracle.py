"""The engine's model gradients equal the hand-derived ones of tests/oracle.py (whose
own gradients are checked against finite differences in test_oracle.py)."""

import numpy as np
import oracle
import pytest
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

import tinygrad_ee as tg


def drawn_parameters(model, rng, scale: float) -> dict[str, np.ndarray]:
    """New values N(0, scale^2) for every parameter, loaded into ``model`` too."""
    params = {k: rng.normal(0, scale, v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(params)
    return params


def assert_same_gradients(model, loss, expected_loss, expected_grads):
    loss.backward()
    np.testing.assert_allclose(loss.item(), expected_loss, rtol=1e-12)
    assert {name for name, _ in model.named_parameters()} == set(expected_grads)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), expected_grads[name], rtol=1e-9, atol=1e-12, err_msg=name
        )


def test_autoencoder_matches_the_oracle():
    rng = np.random.default_rng(0)
    model = SparseAutoencoder(20, 8, dtype="float64")
    params = drawn_parameters(model, rng, 0.5)
    x = rng.uniform(0.1, 0.9, (6, 20))
    expected = oracle.autoencoder(params, x, 5e-4, 2.0, 0.025)
    assert_same_gradients(model, model.loss(tg.Tensor(x), 5e-4, 2.0, 0.025), *expected)


def test_language_model_matches_the_oracle():
    rng = np.random.default_rng(1)
    model = FourGramLanguageModel(11, 4, 6, dtype="float64")
    params = drawn_parameters(model, rng, 0.5)
    context = rng.integers(0, 11, (9, 3))
    context[0] = [2, 2, 2]  # repeated indices must add up
    targets = rng.integers(0, 11, 9)
    expected = oracle.language_model(params, context, targets)
    loss = model.loss(tg.Tensor(context), tg.Tensor(targets))
    assert_same_gradients(model, loss, *expected)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_classifier_matches_the_oracle(cell):
    rng = np.random.default_rng(2)
    model = SequenceClassifier(cell, 3, 4, hidden_size=7, dtype="float64")
    params = drawn_parameters(model, rng, 0.5)
    x = rng.normal(size=(5, 11, 3))
    targets = rng.integers(0, 4, 5)
    expected = oracle.sequence_classifier(cell, params, x, targets)
    assert_same_gradients(model, model.loss(tg.Tensor(x), tg.Tensor(targets)), *expected)
