"""`tg.dropout`: the mask a function of the key alone (the same on every backend, in a
compiled step and eager), each unit dropped with probability p, the rest scaled to keep
the mean; its gradient is checked by `check_op` with the registry (test_registry.py).
The language model drops hidden units only while training, and a run with dropout
resumes bit for bit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tasks_cli import assert_resumes_bit_for_bit, losses, run_cli
from tinygrad_ee.models import FourGramLanguageModel
from tinygrad_ee.tasks.language_model import dropout_for, parameter_count, weight_decay_for

import tinygrad_ee as tg


def dropped(device: str, shape, key: int, p: float) -> np.ndarray:
    x = tg.Tensor(np.ones(shape), device=device)
    return tg.dropout(x, tg.Tensor(np.int64(key), device=device), p=p).numpy()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_unit_is_dropped_with_probability_p_and_the_rest_scaled(device, p):
    out = dropped(device, (200, 500), key=3, p=p)
    zero = out == 0
    n = out.size
    # The count of dropped units is Binomial(n, p): within 5 standard deviations.
    assert abs(zero.sum() - n * p) < 5 * math.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(out[~zero], 1 / (1 - p))
    # Rows and columns alike: no index pattern (a mask repeating along an axis).
    per_column = zero.mean(axis=0)
    assert abs(per_column.mean() - p) < 0.01 and per_column.std() < 5 * math.sqrt(p * (1 - p) / 200)


def test_the_mask_is_a_function_of_the_key_alone(device):
    first = dropped(device, (40, 60), key=11, p=0.5)
    assert np.array_equal(first, dropped(device, (40, 60), key=11, p=0.5))
    assert np.array_equal(first, dropped("cpu", (40, 60), key=11, p=0.5))  # every backend
    other = dropped(device, (40, 60), key=12, p=0.5)
    # Masks of neighbouring keys agree on about half the units, as independent ones do.
    assert abs((first == other).mean() - 0.5) < 0.05


def test_the_gradient_is_the_mask_scaled():
    x = tg.Tensor(np.random.default_rng(0).normal(size=(30, 40)), requires_grad=True)
    key = tg.Tensor(np.int64(5))
    out = tg.dropout(x, key, p=0.25)
    cotangent = np.random.default_rng(1).normal(size=(30, 40))
    (out * tg.Tensor(cotangent)).sum().backward()
    kept = out.numpy() != 0
    np.testing.assert_allclose(x.grad.numpy(), np.where(kept, cotangent / 0.75, 0.0))


def test_p_zero_is_the_identity_and_bad_arguments_are_refused():
    x = tg.Tensor(np.arange(6.0))
    assert np.array_equal(tg.dropout(x, tg.Tensor(np.int64(1)), p=0.0).numpy(), x.numpy())
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\), got 1"):
        tg.dropout(x, tg.Tensor(np.int64(1)), p=1)
    with pytest.raises(ValueError, match="key must hold one integer"):
        tg.dropout(x, tg.Tensor(np.arange(2)), p=0.5)


def test_the_mask_in_a_compiled_step_follows_the_key():
    def step(x, key):
        return tg.dropout(x, key, p=0.5) * 2.0

    compiled = tg.compile(step)
    x = tg.Tensor(np.ones((8, 9)))
    for key in (1, 2, 3, 2):
        k = tg.Tensor(np.int64(key))
        assert np.array_equal(compiled(x, k).numpy(), step(x, k).numpy())
    assert compiled.traces == 1


def test_the_language_model_drops_units_only_when_given_a_key():
    model = FourGramLanguageModel(20, 4, 16, dtype="float64", dropout=0.5)
    context = tg.Tensor(np.random.default_rng(0).integers(0, 20, (10, 3)))
    plain = model.logits(context).numpy()
    assert np.array_equal(plain, model.logits(context).numpy())
    assert not np.allclose(model.logits(context, tg.Tensor(np.int64(4))).numpy(), plain)
    no_dropout = FourGramLanguageModel(20, 4, 16, dtype="float64")
    no_dropout.load_state_dict(model.state_dict())
    assert np.array_equal(no_dropout.logits(context, tg.Tensor(np.int64(4))).numpy(), plain)
    with pytest.raises(ValueError, match="dropout must lie in"):
        FourGramLanguageModel(20, 4, 16, dropout=1.0)


def test_the_capacity_rules():
    # Dropout: none up to one parameter per training 4-gram, 0.25 at two, 0.5 from four.
    assert [dropout_for(p, 1000) for p in (500, 1000, 2000, 4000, 9000)] == [0, 0, 0.25, 0.5, 0.5]
    # Weight decay: 0.06 at one parameter per training 4-gram; half that at a quarter.
    assert weight_decay_for(1000, 1000) == 0.06
    assert weight_decay_for(1000, 4000) == 0.03
    assert weight_decay_for(97_082, 372_550) == pytest.approx(0.0306, abs=1e-4)


def test_the_language_model_reports_the_capacity_it_chose(tmp_path):
    out = tmp_path / "run"
    command = ["language-model", "--quick", "--epochs", "1", "--config", "8,16", "--no-progress"]
    result = run_cli(*command, "--config", "4,8", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    count = metrics["samples"]["train"]
    for run in metrics["configurations"]:
        parameters = parameter_count(
            metrics["vocabulary"], run["embedding_dim"], run["hidden_size"]
        )
        assert run["dropout"] == dropout_for(parameters, count)
        assert run["weight_decay"] == weight_decay_for(parameters, count)
    assert (
        f"D=8, P=16: dropout {metrics['configurations'][0]['dropout']:g}"
        in (out / "report.md").read_text()
    )
    chosen = run_cli(
        *command, "--dropout", "0.1", "--weight-decay", "0.2", "--out", str(tmp_path / "b")
    )
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    (run,) = json.loads((tmp_path / "b" / "metrics.json").read_text())["configurations"]
    assert (run["dropout"], run["weight_decay"]) == (0.1, 0.2)


def test_a_language_model_run_with_dropout_resumes_bit_for_bit(tmp_path):
    command = ["language-model", "--quick", "--epochs", "3", "--config", "8,16", "--no-progress"]
    command += ["--dropout", "0.5", "--seed", "1"]
    assert_resumes_bit_for_bit(command, tmp_path, "2:7", "language_model_D8_P16.npz")
    without = tmp_path / "without"
    assert run_cli(*command, "--dropout", "0", "--out", str(without)).returncode == 0
    assert losses(without) != losses(tmp_path / "baseline")  # the dropout did something
