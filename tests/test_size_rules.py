"""The size rules of the modern recipe (`TrainingConfig.for_data`, docs/experiments.md):
training length in updates, the batch size from the number of training samples, and no
selection on a validation split too small to choose on; each rule overridden by its
option, and a run trained under them resumed bit for bit."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
from tasks_cli import assert_resumes_bit_for_bit, run_cli
from tinygrad_ee.tasks import activity
from tinygrad_ee.tasks.training import TrainingConfig

MODERN = activity.RECIPES["modern"][0]


def updates_of(config: TrainingConfig, count: int) -> int:
    return config.epochs * math.ceil(count / config.batch_size)


@pytest.mark.parametrize("count", [36, 40, 243, 2700, 3000])
def test_every_training_set_gets_the_updates_whatever_its_size(count):
    config, rules = MODERN.for_data(count, validation=300)
    batches = math.ceil(count / config.batch_size)
    assert MODERN.updates <= updates_of(config, count) < MODERN.updates + batches
    assert 8 <= config.batch_size <= 32
    assert any("updates" in rule for rule in rules)


def test_a_40_series_set_and_a_3000_series_set():
    small, _ = MODERN.for_data(36, validation=4)  # 40 series, 4 held out
    large, _ = MODERN.for_data(2700, validation=300)
    # 36 series: batches of 8, 5 an epoch; 2,700: batches of 32, 85 an epoch.
    assert (small.batch_size, small.epochs) == (8, math.ceil(2500 / 5))
    assert (large.batch_size, large.epochs) == (32, math.ceil(2500 / 85))
    assert large.epochs == 30  # the embedded data's run is the one the recipe had before


def test_a_validation_split_too_small_to_choose_on_turns_selection_off():
    few, rules = MODERN.for_data(36, validation=4)
    assert (few.patience, few.best_epoch) == (0, False)
    assert "4 validation samples, fewer than 50" in rules[-1]
    enough, rules = MODERN.for_data(2700, validation=300)
    assert (enough.patience, enough.best_epoch) == (MODERN.patience, True)
    assert not any("validation" in rule for rule in rules)


def test_what_the_recipe_or_the_command_line_gives_is_kept():
    given = TrainingConfig(epochs=7, batch_size=5, lr=0.1, momentum=0.5, patience=3)
    same, rules = given.for_data(1000, validation=0)
    assert same == given and rules == []
    with pytest.raises(ValueError, match="give epochs or updates"):
        TrainingConfig(lr=0.1, momentum=0.5).for_data(100, 10)


def test_original_recipes_are_fixed_values():
    for module in ("activity", "language_model", "autoencoder"):
        experiment = __import__(f"tinygrad_ee.tasks.{module}", fromlist=["RECIPES"])
        original = experiment.RECIPES["original"][0]
        assert original.epochs and original.batch_size and original.updates is None
        assert original.for_data(10_000, validation=0) == (original, [])


# --- through the command line --------------------------------------------------------------


def small_activity_file(path, series: int = 22) -> str:
    """``series`` training series (2 held out for validation by default) of 12 steps, 2
    channels, 3 classes: tiny, so that the rules give many small epochs."""
    rng = np.random.default_rng(5)
    labels = np.arange(series) % 3
    x = rng.normal(size=(series, 12, 2)) + labels[:, None, None]
    with h5py.File(path, "w") as handle:
        handle["trX"], handle["trY"] = x, np.eye(3)[labels]
        handle["tstX"], handle["tstY"] = x[:6], np.eye(3)[labels[:6]]
    return str(path)


COMMAND = ["activity", "--cell", "gru", "--recurrent-size", "4", "--updates", "30"]
COMMAND += ["--no-progress", "--seed", "2"]


def configuration(out) -> dict:
    return json.loads((out / "metrics.json").read_text())["configuration"]


def test_the_command_line_reports_what_the_rules_set(tmp_path):
    data = small_activity_file(tmp_path / "small.h5")
    result = run_cli(*COMMAND, "--data", data, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = configuration(tmp_path / "run")
    # 20 training series: batches of 8 (at least 8 whatever 20 // 8 says), 3 an epoch.
    assert (chosen["batch_size"], chosen["epochs"]) == (8, 10)
    assert (chosen["patience"], chosen["best_epoch"]) == (0, False)  # 2 validation series
    report = (tmp_path / "run" / "report.md").read_text()
    assert "- 10 epochs: 30 updates of 3 batches an epoch" in report
    assert "- no early stopping, the last epoch kept: 2 validation samples" in report
    (cell,) = json.loads((tmp_path / "run" / "metrics.json").read_text())["cells"]
    assert cell["epochs_run"] == cell["selected_epoch"] == 10


def test_each_rule_gives_way_to_its_option(tmp_path):
    data = small_activity_file(tmp_path / "small.h5")
    options = ["--epochs", "4", "--batch-size", "5", "--min-validation", "0"]
    result = run_cli(*COMMAND, "--data", data, *options, "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = configuration(tmp_path / "run")
    assert (chosen["epochs"], chosen["batch_size"]) == (4, 5)
    assert (chosen["patience"], chosen["best_epoch"]) == (10, True)  # the recipe's
    assert "Set from the data's size" not in (tmp_path / "run" / "report.md").read_text()


def test_a_run_under_the_rules_resumes_bit_for_bit(tmp_path):
    data = small_activity_file(tmp_path / "small.h5")
    command = [*COMMAND, "--data", data]
    assert_resumes_bit_for_bit(command, tmp_path, "6:2", "activity_gru.npz")


def test_patience_or_best_epoch_given_on_the_command_line_is_applied(tmp_path):
    data = small_activity_file(tmp_path / "small.h5")
    result = run_cli(*COMMAND, "--data", data, "--patience", "3", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr[-3000:]
    chosen = configuration(tmp_path / "r")
    assert (chosen["patience"], chosen["best_epoch"], chosen["min_validation"]) == (3, True, 0)
