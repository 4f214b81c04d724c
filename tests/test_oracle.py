"""tests/oracle.py, the hand-derived models the engine is tested against, against
central finite differences of its own losses (float64, every entry of small models)."""

import numpy as np
import oracle
import pytest
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

EPS, RTOL, ATOL = 1e-6, 1e-6, 1e-9


def parameters(model, rng) -> dict[str, np.ndarray]:
    """The model's parameter names and shapes, values N(0, 0.5^2): every term sizeable."""
    return {k: rng.normal(0, 0.5, v.shape) for k, v in model.state_dict().items()}


def assert_finite_differences_agree(loss_and_grads, params):
    _, grads = loss_and_grads(params)
    assert grads.keys() == params.keys()
    for name, value in params.items():
        flat = value.reshape(-1)  # a view: changing it changes params[name]
        for k in range(flat.size):
            saved = flat[k]
            flat[k] = saved + EPS
            up = loss_and_grads(params)[0]
            flat[k] = saved - EPS
            down = loss_and_grads(params)[0]
            flat[k] = saved
            numeric, analytic = (up - down) / (2 * EPS), grads[name].reshape(-1)[k]
            where = f"{name}{np.unravel_index(k, value.shape)}"
            assert abs(analytic - numeric) <= RTOL * abs(numeric) + ATOL, (where, analytic, numeric)


def test_autoencoder_gradients():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 0.9, (5, 6))
    params = parameters(SparseAutoencoder(6, 4), rng)
    assert_finite_differences_agree(lambda p: oracle.autoencoder(p, x, 0.3, 0.7, 0.4), params)


def test_language_model_gradients_add_up_over_repeated_words():
    rng = np.random.default_rng(1)
    context = np.array([[1, 1, 1], [1, 4, 1], [4, 1, 0], [6, 6, 1]])
    targets = np.array([1, 4, 0, 1])
    params = parameters(FourGramLanguageModel(7, 2, 4), rng)
    loss_and_grads = lambda p: oracle.language_model(p, context, targets)
    assert_finite_differences_agree(loss_and_grads, params)
    unused = [w for w in range(7) if w not in context]
    assert np.all(loss_and_grads(params)[1]["embedding.weight"][unused] == 0)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_sequence_classifier_gradients(cell):
    rng = np.random.default_rng(2)
    x, targets = rng.normal(size=(3, 4, 2)), rng.integers(0, 3, 3)
    params = parameters(SequenceClassifier(cell, 2, 3, hidden_size=3, head_sizes=(5, 4)), rng)
    loss_and_grads = lambda p: oracle.sequence_classifier(cell, p, x, targets)
    assert_finite_differences_agree(loss_and_grads, params)
