"""The recipes of the command line: --recipe original trains exactly as the original
experiments did, the modern recipe standardises with training statistics only, and
best-epoch selection and patience do what they say."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from tasks_cli import run_cli
from tinygrad_ee.models import SequenceClassifier, SparseAutoencoder
from tinygrad_ee.tasks.cli import EXPERIMENTS, _settings, build_parser
from tinygrad_ee.tasks.data import default_activity, quick_subset
from tinygrad_ee.tasks.data.preprocessing import split_validation
from tinygrad_ee.tasks.files import export_defaults, read_arrays
from tinygrad_ee.tasks.training import TrainingConfig, fit

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

# Every setting of the original experiments, as the command line had them before the
# recipes (written out here, not read from the code under test).
SGD = {"optimizer": "sgd", "weight_decay": 0.0, "schedule": "constant", "warmup": 0}
LAST_EPOCH = {"patience": 0, "best_epoch": False, "progress": True, "compile": True}
NO_SIZE_RULES = {"updates": None, "min_validation": 0}  # the epochs and batch size as given
ORIGINAL = {
    "autoencoder": (
        {"epochs": 200, "batch_size": 32, "lr": 0.01, "momentum": 0.85, "clip": None},
        {"hidden_size": 64, "lam": 5e-4, "beta": 2.0, "rho": 0.025, "sweep": True},
    ),
    "language-model": (
        {"epochs": 50, "batch_size": 200, "lr": 0.15, "momentum": 0.85, "clip": None},
        {"configs": ((32, 256), (16, 128), (8, 64)), "dropout": 0.0},
    ),
    "activity": (
        {"epochs": 50, "batch_size": 32, "lr": 0.1, "momentum": 0.85, "clip": 5.0},
        {
            "cell": "all",
            "recurrent_size": 128,
            "init": "xavier",
            "standardize": False,
            "rnn_lr_scale": 1.0,
        },
    ),
}


@pytest.mark.parametrize("experiment", sorted(ORIGINAL))
def test_recipe_original_sets_every_value_of_the_original_experiment(experiment):
    training, options = ORIGINAL[experiment]
    args = build_parser().parse_args([experiment, "--recipe", "original", "--out", "unused"])
    settings = _settings(EXPERIMENTS[experiment], args)
    assert vars(settings.training) == {**training, **SGD, **LAST_EPOCH, **NO_SIZE_RULES}
    chosen = vars(settings.options)
    assert {key: chosen[key] for key in options} == options
    if experiment == "activity":
        assert chosen["validation_fraction"] == 0.1


def test_an_option_given_overrides_the_recipe():
    args = ["activity", "--recipe", "original", "--optimizer", "adam", "--no-standardize"]
    settings = _settings(EXPERIMENTS["activity"], build_parser().parse_args(args))
    assert (settings.training.optimizer, settings.training.lr) == ("adam", 0.1)
    assert settings.options.standardize is False
    modern = ["activity", "--init", "xavier", "--out", "unused"]
    settings = _settings(EXPERIMENTS["activity"], build_parser().parse_args(modern))
    assert settings.options.init == "xavier" and settings.options.standardize is True


def test_recipe_original_trains_as_the_original_loop_bit_for_bit(tmp_path):
    """The original training, written out with the engine alone: Xavier LSTM on raw
    inputs, SGD with momentum 0.85 at lr 0.1, clipping at 5, the seeded batch order."""
    seed, command = 5, ["activity", "--recipe", "original", "--quick", "--cell", "lstm"]
    command += ["--recurrent-size", "8", "--epochs", "2", "--seed", str(seed), "--no-compile"]
    result = run_cli(*command, "--no-progress", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]

    data = default_activity(seed=seed)
    keep = quick_subset(len(data.train_y), 320, seed)
    train, _ = split_validation(len(keep), 0.1, seed=seed)
    x = tg.Tensor(data.train_x[keep][train], dtype="float32")
    y = tg.Tensor(data.train_y[keep][train])
    nn.seed(seed, "cpu")
    model = SequenceClassifier("lstm", 3, 6, 8, init="xavier")
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.85)
    order = np.random.default_rng(seed)
    for _ in range(2):
        shuffled = order.permutation(len(train))
        for start in range(0, len(train), 32):
            batch = tg.Tensor(shuffled[start : start + 32])
            loss = model.loss(x[batch], y[batch])
            optimizer.zero_grad()
            loss.backward()
            optim.clip_grad_norm(model.parameters(), 5.0)
            optimizer.step()
    saved = read_arrays(tmp_path / "activity_lstm.npz")
    expected = model.state_dict()
    assert saved.keys() == expected.keys()  # no standardisation buffers
    for name in expected:
        assert np.array_equal(saved[name], expected[name]), name


def _poisoned_copy(source, target, split: str) -> None:
    """``source``'s data3.h5 with the series of ``split`` ("test": tstX, or "validation":
    the rows of trX held out) made huge and shifted."""
    with h5py.File(source) as file:
        arrays = {name: file[name][()] for name in file}
    if split == "test":
        arrays["tstX"] = arrays["tstX"] * 1000 + 50
    else:
        _, validation = split_validation(len(arrays["trX"]), 0.25, seed=2)
        arrays["trX"][validation] = arrays["trX"][validation] * 1000 + 50
    with h5py.File(target, "w") as file:
        for name, array in arrays.items():
            file[name] = array


@pytest.fixture(scope="module")
def small_activity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    export_defaults(folder, patch_count=10, activity_train=60, activity_test=30, activity_steps=40)
    return folder / "data3.h5"


def _standardised_run(data, out):
    command = ["activity", "--cell", "rnn", "--recurrent-size", "6", "--epochs", "3"]
    command += ["--seed", "2", "--validation-fraction", "0.25", "--no-progress"]
    result = run_cli(*command, "--data", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return read_arrays(out / "activity_rnn.npz"), json.loads((out / "metrics.json").read_text())


def test_standardisation_statistics_come_from_the_training_split_only(tmp_path, small_activity):
    model, metrics = _standardised_run(small_activity, tmp_path / "clean")
    with h5py.File(small_activity) as file:
        train_x = file["trX"][()]
    train, _ = split_validation(len(train_x), 0.25, seed=2)
    inputs = train_x[train].astype(np.float64)
    np.testing.assert_array_equal(model["input_mean"], inputs.mean(axis=(0, 1)).astype(np.float32))
    np.testing.assert_array_equal(model["input_std"], inputs.std(axis=(0, 1)).astype(np.float32))
    assert metrics["samples"]["validation"] == 15

    # A poisoned test split changes nothing that was trained or selected.
    poisoned = tmp_path / "poisoned_test.h5"
    _poisoned_copy(small_activity, poisoned, "test")
    model_then, metrics_then = _standardised_run(poisoned, tmp_path / "poisoned_test")
    for name in model:
        assert np.array_equal(model[name], model_then[name]), name
    (cell,), (cell_then,) = metrics["cells"], metrics_then["cells"]
    for key in ("validation_loss_per_epoch", "train_loss_per_epoch", "selected_epoch"):
        assert cell[key] == cell_then[key], key
    # A poisoned validation split does not move the statistics either.
    poisoned = tmp_path / "poisoned_validation.h5"
    _poisoned_copy(small_activity, poisoned, "validation")
    model_then, _ = _standardised_run(poisoned, tmp_path / "poisoned_validation")
    for name in ("input_mean", "input_std"):
        assert np.array_equal(model[name], model_then[name]), name


def test_the_report_says_when_the_validation_split_is_small(tmp_path, small_activity):
    """15 validation series: too few to choose an epoch on, so the modern recipe's size
    rule keeps the last epoch and stops nothing early, and the report says why."""
    _, metrics = _standardised_run(small_activity, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "**Only 15 validation series**" in report and "--validation-fraction" in report
    assert metrics["recipe"]["name"] == "modern"
    assert "`--recipe modern --epochs 3 " in report
    for part in ("--optimizer adam", "--init orthogonal", "--standardize", "--no-best-epoch"):
        assert part in report and part in metrics["recipe"]["description"], part
    assert "15 validation samples, fewer than 50" in report
    (cell,) = metrics["cells"]
    assert cell["selected_epoch"] == cell["epochs_run"] == 3
    assert cell["validation_loss"] == cell["validation_loss_per_epoch"][-1]


# --- best-epoch selection and patience, in `fit` itself -------------------------------------


def _scripted_fit(validation_losses, best_epoch, patience=0, epochs=None):
    """A tiny autoencoder trained with `fit`, its validation losses the given ones:
    (history, the parameters after each epoch, the parameters it ends with)."""
    nn.seed(0)
    model = SparseAutoencoder(8, 3)
    x = tg.Tensor(np.random.default_rng(1).uniform(0.1, 0.9, (40, 8)).astype(np.float32))
    snapshots = []

    def validation_loss():
        snapshots.append(model.state_dict())
        return validation_losses[len(snapshots) - 1]

    config = TrainingConfig(
        epochs=epochs or len(validation_losses), batch_size=16, lr=0.05, momentum=0.5,
        optimizer="adam", schedule="cosine", patience=patience, best_epoch=best_epoch,
        progress=False,
    )  # fmt: skip
    history = fit(
        model,
        lambda indices, key: model.loss(x[indices], 1e-4, 0.5, 0.1),
        40,
        config,
        np.random.default_rng(0),
        "scripted",
        validation_loss,
    )
    return history, snapshots, model.state_dict()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_best_epoch_selection_returns_the_parameters_of_that_epoch():
    history, snapshots, final = _scripted_fit([3.0, 1.0, 2.0, 1.0, 1.5], best_epoch=True)
    assert len(snapshots) == 5 and not history.stopped_early
    assert _same(final, snapshots[1]), "the first of the tied lowest losses is epoch 2"
    assert not _same(final, snapshots[3]) and not _same(final, snapshots[4])
    _, snapshots, final = _scripted_fit([3.0, 1.0, 2.0, 1.0, 1.5], best_epoch=False)
    assert _same(final, snapshots[4])


def test_patience_stops_after_that_many_epochs_without_a_lower_validation_loss():
    losses = [3.0, 2.0, 2.5, 2.0, 1.9, 2.2, 2.3, 2.4, 0.1, 0.1]
    history, snapshots, final = _scripted_fit(losses, best_epoch=True, patience=3)
    assert len(history.train_loss) == 8 and history.stopped_early  # epochs 6, 7, 8 no lower
    assert _same(final, snapshots[4])
    history, _, _ = _scripted_fit(losses, best_epoch=True, patience=0)
    assert len(history.train_loss) == 10 and not history.stopped_early
