"""The command line, run as a user runs it: in a subprocess, on the embedded data."""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import CUDA_MISSING
from tasks_cli import ROOT, run_cli
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder
from tinygrad_ee.tasks.data import (
    default_activity,
    default_ngrams,
    default_patches,
    preprocess_patches,
    quick_subset,
)
from tinygrad_ee.tasks.files import load_model
from tinygrad_ee.tasks.options import MAX_SEED

import tinygrad_ee as tg

COMMON_KEYS = {
    "experiment",
    "seconds",
    "configuration",
    "device",
    "dtype",
    "seed",
    "versions",
    "figures",
    "checkpoints",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One quick run of each experiment (smaller options where they exist) and of `all`,
    their output (stdout and stderr, pipes: not a terminal) in OUT.log next to each OUT.
    `all` shows its progress, as in a log; the others run with --no-progress."""
    base = tmp_path_factory.mktemp("runs")
    commands = {
        "autoencoder": ["autoencoder", "--quick", "--no-sweep", "--no-progress"],
        "language-model": ["language-model", "--quick", "--config", "8,16", "--no-progress"],
        "activity": ["activity", "--quick", "--cell", "gru", "--no-progress"],
        "all": ["all", "--quick"],
    }
    # Started together: on two cores the four runs take about the time of the longest.
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tinygrad_ee.tasks", *args, "--out", str(base / name)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, args in commands.items()
    }
    try:
        for name, process in processes.items():
            output, _ = process.communicate(timeout=600)
            assert process.returncode == 0, output[-3000:]
            (base / f"{name}.log").write_text(output)
    finally:  # after a failure, stop the others
        for process in processes.values():
            process.kill()
            process.wait()
    return {name: base / name for name in commands}


def test_a_log_gets_one_line_per_epoch_and_nothing_per_batch(runs):
    log = (runs["all"].parent / "all.log").read_text()
    assert len(log.encode()) < 10_000, log[-3000:]  # 139 KB before: a bar redraw per batch
    assert "\r" not in log and "it/s" not in log
    epochs = [line for line in log.splitlines() if ": epoch " in line]
    assert len(epochs) == 2 * (1 + 9 + 3 + 3), epochs  # autoencoder and sweep, LM, activity
    assert "autoencoder: epoch 2/2: loss " in log
    assert "activity gru: epoch 2/2: loss " in log and ", validation " in epochs[-1]
    # --no-progress: nothing but the result
    for name in ("autoencoder", "language-model", "activity"):
        lines = (runs[name].parent / f"{name}.log").read_text().splitlines()
        assert len(lines) == 2 and lines[1].startswith("results in "), lines


def _check_run(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert COMMON_KEYS <= set(metrics), COMMON_KEYS - set(metrics)
    for name in metrics["figures"] + metrics["checkpoints"] + ["report.md"]:
        assert (out / name).is_file(), f"{name} missing from {out}"
    for figure in metrics["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figure})" in (out / "report.md").read_text()
    assert metrics["versions"]["numpy"] == np.__version__
    # every setting once, by its option's name: no nested copies of the groups
    configuration = metrics["configuration"]
    assert not {"training", "options"} & set(configuration), sorted(configuration)
    assert {"epochs", "lr", "optimizer", "recipe"} <= set(configuration)
    return metrics


def test_autoencoder_run_writes_everything_and_its_checkpoint_reloads(runs):
    metrics = _check_run(runs["autoencoder"])
    assert len(metrics["train_loss_per_epoch"]) == 2
    model = load_model(runs["autoencoder"] / "autoencoder.npz", SparseAutoencoder(256, 64))
    # The run's final loss, recomputed by the reloaded model on the same (quick) data.
    rgb = default_patches(seed=0)
    x = tg.Tensor(preprocess_patches(rgb[quick_subset(len(rgb), 2048, seed=0)]))
    loss = model.loss(x, metrics["configuration"]["lam"], 2.0, 0.025).item()
    assert loss == pytest.approx(metrics["final_loss"], rel=1e-5)


def test_language_model_run_reports_top_words_most_probable_first(runs):
    metrics = _check_run(runs["language-model"])
    (config,) = metrics["configurations"]
    assert config["test_perplexity"] == pytest.approx(np.exp(config["test_cross_entropy"]))
    assert len(config["predictions"]) == 5
    for prediction in config["predictions"]:
        probabilities = [p for _, p in prediction["top10"]]
        assert len(probabilities) == 10 and probabilities == sorted(probabilities, reverse=True)
    data = default_ngrams()
    model = load_model(
        runs["language-model"] / config["checkpoint"], FourGramLanguageModel(len(data.words), 8, 16)
    )
    predicted = model.log_probs(tg.Tensor(data.test_context)).numpy().argmax(axis=1)
    assert (predicted == data.test_target).mean() == pytest.approx(config["test_accuracy"])


def test_activity_run_writes_confusion_matrices_and_a_reloadable_checkpoint(runs):
    metrics = _check_run(runs["activity"])
    (cell,) = metrics["cells"]
    classes = len(metrics["class_names"])
    for split in ("train", "test"):
        matrix = np.array(cell[f"{split}_confusion"])
        assert matrix.shape == (classes, classes)
        assert matrix.sum() == metrics["samples"][split]
        assert np.trace(matrix) / matrix.sum() == pytest.approx(cell[f"{split}_accuracy"])
    data = default_activity(seed=0)
    model = load_model(
        runs["activity"] / "activity_gru.npz",
        SequenceClassifier("gru", data.train_x.shape[2], classes, standardize=True),
    )
    keep = quick_subset(len(data.test_y), 160, seed=0)  # what --quick uses
    test_x, test_y = data.test_x[keep], data.test_y[keep]
    predicted = model.logits(tg.Tensor(test_x)).numpy().argmax(axis=1)
    assert (predicted == test_y).mean() == pytest.approx(cell["test_accuracy"])


def test_all_links_the_three_reports(runs):
    report = (runs["all"] / "report.md").read_text()
    for name in ("autoencoder", "language-model", "activity"):
        assert f"]({name}/report.md)" in report
        _check_run(runs["all"] / name)


@pytest.mark.skipif(
    CUDA_MISSING is None, reason="CuPy and a GPU are present: the command would train on it"
)
def test_cuda_without_cupy_or_gpu_is_a_clear_error(tmp_path):
    completed = run_cli("activity", "--quick", "--device", "cuda", "--out", str(tmp_path))
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "error: " in completed.stderr and (
        "CuPy" in completed.stderr or "GPU" in completed.stderr
    )


def test_a_bad_data_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "data3.h5"
    with h5py.File(bad, "w") as file:
        file["trX"] = np.zeros((4, 5))  # rank 2: (N, T, C) expected
    completed = run_cli("activity", "--quick", "--data", str(bad), "--out", str(tmp_path / "o"))
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert "data3.h5" in completed.stderr and "trX" in completed.stderr


def test_help_documents_every_option_with_its_default():
    completed = run_cli("autoencoder", "--help")
    assert completed.returncode == 0
    for option in (
        "--device",
        "--data",
        "--epochs",
        "--batch-size",
        "--lr",
        "--momentum",
        "--dtype",
        "--seed",
        "--out",
        "--quick",
        "--no-progress",
        "--hidden-size",
        "--lam",
        "--beta",
        "--rho",
        "--no-sweep",
        "--recipe",
        "--optimizer",
        "--weight-decay",
        "--schedule",
        "--warmup",
        "--patience",
        "--best-epoch",
    ):
        assert option in completed.stdout, option
    assert "(default: 200)" in completed.stdout  # epochs
    text = " ".join(run_cli("activity", "--help").stdout.split())
    for option in ("--init", "--standardize", "--no-standardize", "--validation-fraction"):
        assert option in text, option
    assert "(default: 0.001; --recipe original: 0.1)" in text  # --lr
    assert "(default: orthogonal; --recipe original: xavier)" in text


def test_batches_cover_every_sample_once_per_epoch():
    from tinygrad_ee.tasks.training import batches

    parts = batches(103, 32, np.random.default_rng(0))
    assert [len(p) for p in parts] == [32, 32, 32, 7]
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))


def test_data_export_writes_the_three_layouts_the_loaders_read(tmp_path):
    from tinygrad_ee.tasks.data import load_activity, load_ngrams, load_patches

    completed = run_cli("data", "export", "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert load_patches(tmp_path / "data1.h5").shape == (10240, 3, 16, 16)
    assert len(load_ngrams(tmp_path / "data2.h5").words) == 250
    assert load_activity(tmp_path / "data3.h5").train_x.shape == (3000, 150, 3)


@pytest.mark.parametrize(
    "args",
    [
        ["autoencoder", "--epochs", "0"],
        ["autoencoder", "--batch-size", "-5"],
        ["autoencoder", "--rho", "1.5"],
        ["language-model", "--config", "0,5"],
        ["activity", "--clip", "-1"],
        ["activity", "--seed", "-1"],
        ["activity", "--lr", "0"],
        ["activity", "--lr", "inf"],
        ["activity", "--clip", "inf"],
        ["autoencoder", "--lam", "nan"],
        ["autoencoder", "--momentum", "1"],
        ["activity", "--optimizer", "rmsprop"],
        ["activity", "--schedule", "linear"],
        ["activity", "--warmup", "-1"],
        ["activity", "--patience", "1.5"],
        ["activity", "--weight-decay", "-0.1"],
        ["activity", "--validation-fraction", "1"],
        ["activity", "--init", "zeros"],
        ["activity", "--recipe", "new"],
    ],
)
def test_out_of_range_options_are_usage_errors(args, capsys):
    from tinygrad_ee.tasks.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_all_checks_its_data_folder_before_training(tmp_path):
    completed = run_cli("all", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert "missing data1.h5, data2.h5, data3.h5" in completed.stderr
    assert not (tmp_path / "o").exists(), "nothing may be trained or written"


# --- bad input, each a clear error with exit status 2 -------------------------------------------


def _write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as handle:
        for name, array in arrays.items():
            handle[name] = array
    return path


def _ngrams(test_rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"words": np.array([f"w{i}".encode() for i in range(12)])}
    for context, target, rows in (("trainx", "traind", 20), ("valx", "vald", 3)) + (
        ("testx", "testd", test_rows),
    ):
        arrays[context], arrays[target] = rng.integers(1, 13, (rows, 3)), rng.integers(1, 13, rows)
    return arrays


def _activity(train_rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "trX": rng.normal(size=(train_rows, 6, 2)),
        "trY": np.eye(3)[rng.integers(0, 3, train_rows)],
        "tstX": rng.normal(size=(2, 6, 2)),
        "tstY": np.eye(3)[[0, 2]],
    }


def test_data_standardisation_cannot_hold_is_refused_naming_the_file_and_channel(tmp_path):
    arrays = _activity(train_rows=6)  # float64, as the file keeps it
    arrays["trX"][:, :, 1] = 3e38
    arrays["trX"][::3, :, 1] = -3e38  # the mean, 1e38, minus -3e38 overflows float32
    wide = _write_h5(tmp_path / "wide.h5", arrays)
    command = ["activity", "--cell", "rnn", "--standardize", "--no-progress", "--data", str(wide)]
    result = run_cli(*command, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr[-3000:]  # it was 3, blaming --clip and --lr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    stderr = result.stderr
    assert f"error: {wide}: dataset 'trX' channel 1 spans -3e+38 to 3e+38: x - mean" in stderr
    assert "beyond the range of float32" in stderr
    assert not (tmp_path / "out").exists()


SMALLEST = {  # experiment: (its options, the smallest data file it takes, one row too few)
    "autoencoder": (
        ["--no-sweep", "--hidden-size", "4"],
        {"data": np.random.default_rng(0).uniform(size=(1, 3, 4, 4))},
        ("data", {"data": np.zeros((0, 3, 4, 4))}, "must not be empty"),
    ),
    "language-model": (
        ["--config", "2,4"],
        _ngrams(test_rows=5),
        ("testx", _ngrams(test_rows=4), "has 4 rows, fewer than the 5 that the report needs"),
    ),
    "activity": (
        ["--cell", "rnn", "--recurrent-size", "2"],
        _activity(train_rows=2),
        ("trX", _activity(train_rows=1), "has 1 row, fewer than the 2 that training needs"),
    ),
}


@pytest.mark.parametrize("experiment", sorted(SMALLEST))
def test_each_experiment_trains_on_its_minimum_data_and_names_it_below(tmp_path, experiment):
    options, smallest, (dataset, too_few, problem) = SMALLEST[experiment]
    command = [experiment, "--quick", "--epochs", "1", "--no-progress", *options]
    small = _write_h5(tmp_path / "small.h5", smallest)
    result = run_cli(*command, "--data", str(small), "--out", str(tmp_path / "small"))
    assert result.returncode == 0, result.stderr[-3000:]
    bad = _write_h5(tmp_path / "too_few.h5", too_few)
    result = run_cli(*command, "--data", str(bad), "--out", str(tmp_path / "too_few"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"error: {bad}: dataset '{dataset}' {problem}" in result.stderr


@pytest.mark.parametrize(
    "args, setting",
    [
        (["autoencoder", "--no-sweep", "--hidden-size", "1000000000"], "--hidden-size 1000000000"),
        (["language-model", "--config", "100000,100000"], "--config 100000,100000"),
        (["activity", "--cell", "lstm", "--recurrent-size", "1000000"], "--recurrent-size 1000000"),
    ],
)
def test_sizes_that_cannot_fit_in_memory_are_refused_before_allocating(tmp_path, args, setting):
    result = run_cli(*args, "--quick", "--no-progress", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"error: {setting}" in result.stderr
    assert "need at least" in result.stderr and "iB" in result.stderr


def test_a_seed_out_of_range_is_a_usage_error_giving_the_range():
    for seed in (str(MAX_SEED + 1), "9" * 400):
        result = run_cli("activity", "--seed", seed)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "argument --seed: must be an integer from 0 to 2**64 - 1" in result.stderr


@pytest.mark.parametrize(
    "option, value, problem",
    [
        ("--rho", "1e-320", "rounds to 0 in float32"),
        ("--lr", "1e-50", "rounds to 0 in float32"),
        ("--lam", "1e-46", "rounds to 0 in float32"),
        ("--lr", "1e39", "overflows to inf in float32"),
        ("--beta", "1e300", "overflows to inf in float32"),
    ],
)
def test_options_the_runs_dtype_cannot_hold_are_usage_errors(tmp_path, option, value, problem):
    result = run_cli("autoencoder", "--quick", option, value, "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"argument {option}: {float(value)!r} {problem}" in result.stderr
    assert "--dtype float32" in result.stderr
    assert not any(tmp_path.iterdir()), "nothing may be written"


def test_an_option_float64_holds_is_accepted_with_dtype_float64(monkeypatch, tmp_path):
    from tinygrad_ee.tasks import cli

    ran = []
    monkeypatch.setattr(cli, "_run", lambda args: ran.append(args) or 0)
    command = ["autoencoder", "--rho", "1e-320", "--dtype", "float64", "--out", str(tmp_path)]
    assert cli.main(command) == 0
    assert ran[0].rho == 1e-320


def test_running_out_of_memory_beyond_the_estimate_is_a_one_line_error(
    monkeypatch, tmp_path, capsys
):
    from tinygrad_ee.tasks import autoencoder, cli

    def allocate(*args):
        raise MemoryError("Unable to allocate 1.86 TiB for an array with shape (10**6, 5 * 10**5)")

    experiment = dataclasses.replace(autoencoder.EXPERIMENT, run=allocate)
    monkeypatch.setitem(cli.EXPERIMENTS, "autoencoder", experiment)
    assert cli.main(["autoencoder", "--out", str(tmp_path / "out")]) == 2
    assert "error: not enough memory: Unable to allocate 1.86 TiB" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_metrics_json_is_strict_with_null_for_numbers_that_are_not_finite(tmp_path):
    # One batch per epoch at --lr 1e10: finite losses, but a test perplexity beyond float.
    result = run_cli(
        *["language-model", "--quick", "--config", "8,16", "--epochs", "1"],
        *["--batch-size", "4000", "--lr", "1e10", "--no-progress", "--out", str(tmp_path)],
    )
    assert result.returncode == 0, result.stderr[-3000:]

    def refuse(constant):
        raise AssertionError(f"metrics.json holds {constant}")

    metrics = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    (config,) = metrics["configurations"]
    assert config["test_cross_entropy"] > 700  # exp() of it is beyond any float
    assert config["test_perplexity"] is None


def test_a_data_name_too_long_to_read_is_a_read_error(tmp_path):
    name = tmp_path / ("d" * 300 + ".h5")
    for command in (["activity", "--data", str(name)], ["all", "--data", str(name)]):
        result = run_cli(*command, "--quick", "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"error: {name}: cannot be read: File name too long" in result.stderr
        assert "cannot write" not in result.stderr


def test_a_write_that_fails_for_lack_of_space_names_the_file(tmp_path):
    # A file size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC).
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = run_cli(
        *["activity", "--quick", "--cell", "rnn", "--recurrent-size", "4", "--epochs", "1"],
        *["--no-progress", "--out", str(tmp_path)],
        preexec_fn=small_files,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    assert f"error: cannot write {checkpoint}: File too large" in result.stderr
    assert not list(checkpoint.parent.iterdir()), "a temporary file was left"


# --- options that would do nothing, or not what they say ------------------------------------


def _settings_of(experiment: str, command: list[str]):
    from tinygrad_ee.tasks.cli import EXPERIMENTS, _settings, build_parser

    return _settings(EXPERIMENTS[experiment], build_parser().parse_args([*command, "--out", "o"]))


@pytest.mark.parametrize("options", [["--best-epoch"], ["--patience", "2"]])
def test_options_the_autoencoder_would_ignore_are_refused_naming_it(options, capsys):
    from tinygrad_ee.tasks.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["autoencoder", *options])
    assert exit_info.value.code == 2
    refused = f"{options[0]}: not for the autoencoder, which has no validation split"
    assert refused in capsys.readouterr().err
    settings = _settings_of("autoencoder", ["autoencoder", "--no-best-epoch", "--patience", "0"])
    assert not settings.training.best_epoch and settings.training.patience == 0  # off: taken


def test_under_all_they_are_left_out_of_the_autoencoder_with_a_warning(capsys):
    command = ["all", "--patience", "2", "--best-epoch"]
    autoencoder = _settings_of("autoencoder", command).training
    warning = capsys.readouterr().err
    assert "warning: the autoencoder has no validation split: --patience, --best-epoch" in warning
    assert (autoencoder.patience, autoencoder.best_epoch) == (0, False)
    activity = _settings_of("activity", command).training
    assert (activity.patience, activity.best_epoch) == (2, True)
    assert capsys.readouterr().err == ""


def test_fit_refuses_what_needs_a_validation_loss_without_one():
    from tinygrad_ee.tasks.training import TrainingConfig, fit

    config = TrainingConfig(epochs=1, batch_size=1, lr=0.1, momentum=0.0, patience=2)
    with pytest.raises(
        ValueError, match=r"fit: without a validation loss, patience would do nothing \(run\)"
    ):
        fit(None, None, 1, config, np.random.default_rng(0), "run")


@pytest.mark.parametrize(
    "command, warning",
    [
        (
            ["activity", "--warmup", "10", "--epochs", "3"],
            "warning: activity: --warmup 10 is not shorter than --epochs 3: the learning rate "
            "never reaches --lr (at most 3/11 of it)\n",
        ),
        (["activity", "--epochs", "2"], "--warmup 2 is not shorter than --epochs 2"),  # recipe's
        (["activity", "--warmup", "2", "--epochs", "3"], ""),
        (["activity", "--quick"], ""),  # the recipe's warm-up and a smoke run's 2 epochs
    ],
)
def test_a_warm_up_as_long_as_the_training_is_a_warning(command, warning, capsys):
    _settings_of("activity", command)
    written = capsys.readouterr().err
    assert warning in written if warning else written == ""
