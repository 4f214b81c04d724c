"""The command line, run as a user runs it: in a subprocess, on the embedded data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from tasks_cli import ROOT, run_cli

import tinygrad_ee as tg
from models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder
from tasks.checkpoint import load_model
from tasks.data import preprocess_patches
from tasks.default_data import default_activity, default_ngrams, default_patches
from tasks.training import quick_subset

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
    """One quick run of each experiment (smaller options where they exist) and of `all`."""
    base = tmp_path_factory.mktemp("runs")
    commands = {
        "autoencoder": ["autoencoder", "--quick", "--no-sweep"],
        "language-model": ["language-model", "--quick", "--config", "8,16"],
        "activity": ["activity", "--quick", "--cell", "gru"],
        "all": ["all", "--quick"],
    }
    # Started together: on two cores the four runs take about the time of the longest.
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "tasks", *args, "--no-progress", "--out", str(base / name)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in commands.items()
    }
    try:
        for process in processes.values():
            _, stderr = process.communicate(timeout=600)
            assert process.returncode == 0, stderr[-3000:]
    finally:  # after a failure, stop the others
        for process in processes.values():
            process.kill()
            process.wait()
    return {name: base / name for name in commands}


def _check_run(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    assert COMMON_KEYS <= set(metrics), COMMON_KEYS - set(metrics)
    for name in metrics["figures"] + metrics["checkpoints"] + ["report.md"]:
        assert (out / name).is_file(), f"{name} missing from {out}"
    for figure in metrics["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({figure})" in (out / "report.md").read_text()
    assert metrics["versions"]["numpy"] == np.__version__
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
        SequenceClassifier("gru", data.train_x.shape[2], classes),
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
    ):
        assert option in completed.stdout, option
    assert "(default: 200)" in completed.stdout  # epochs


def test_early_stopping_waits_for_the_loss_to_start_falling():
    from tasks.language_model import _converged

    plateau = [4.781, 4.783, 4.772]
    assert not _converged(plateau), "the initial plateau must not stop training"
    assert not _converged([4.834, 4.808, 4.808]), "a 0.5 % dip on the plateau is not a start"
    assert not _converged(plateau + [4.750, 4.588, 4.431])
    assert _converged(plateau + [4.750, 4.588, 4.431, 4.420])
    assert not _converged([4.0])


def test_batches_cover_every_sample_once_per_epoch():
    from tasks.training import batches

    parts = batches(103, 32, np.random.default_rng(0))
    assert [len(p) for p in parts] == [32, 32, 32, 7]
    assert sorted(np.concatenate(parts).tolist()) == list(range(103))


def test_data_export_writes_the_three_layouts_the_loaders_read(tmp_path):
    from tasks.data import load_activity, load_ngrams, load_patches

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
    ],
)
def test_out_of_range_options_are_usage_errors(args, capsys):
    from tasks.__main__ import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_all_checks_its_data_folder_before_training(tmp_path):
    completed = run_cli("all", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "o"))
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert "missing data1.h5, data2.h5, data3.h5" in completed.stderr
    assert not (tmp_path / "o").exists(), "nothing may be trained or written"
