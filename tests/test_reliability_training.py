"""Training reliability, run as a user runs it (the CLI in a subprocess, on the CPU):
SIGKILL and resume, Ctrl-C, divergence, --detect-anomaly, hostile checkpoints.

"Identical" means bit for bit: np.array_equal on every parameter of the final model
files, and equal per-epoch losses.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from tasks_cli import assert_identical, killed_at, losses, run_cli, start_cli
from tinygrad_ee.tasks.checkpoint import read_training_checkpoint
from tinygrad_ee.tasks.cli import build_parser, main
from tinygrad_ee.tasks.files import read_arrays

# 288 training series in batches of 32: 9 batches per epoch, 3 epochs, about a second.
# Adam with weight decay, a learning rate that warms up to 0.3 (too large: epoch 1 is the
# best, so a resumed run must take its parameters from the checkpoint), best-epoch
# selection and standardised inputs: every part of the state a resumed run must restore.
ACTIVITY = [
    *["activity", "--quick", "--cell", "rnn", "--recurrent-size", "8", "--epochs", "3"],
    *["--optimizer", "adam", "--lr", "0.3", "--weight-decay", "0.01", "--warmup", "2"],
    *["--schedule", "constant", "--best-epoch", "--patience", "0", "--standardize"],
    *["--min-validation", "0", "--rnn-lr-scale", "1"],  # select on 32 series; lr 0.3 as given
    *["--seed", "3", "--no-progress"],
]
BATCHES = 9
AUTOENCODER = ["autoencoder", "--quick", "--no-sweep", "--no-progress"]


def clean(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("baseline")
    result = run_cli(*ACTIVITY, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# --- SIGKILL at a batch, then --resume ------------------------------------------------------

# Right after the first checkpoint, after the last batch of an epoch (before its checkpoint),
# before any checkpoint, and one mid-epoch point drawn at random (seeded).
_rng = random.Random(20240601)
KILL_POINTS = ["2:0", "3:9", "1:5", f"{_rng.randint(2, 3)}:{_rng.randint(1, BATCHES - 1)}"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_sigkill_then_resume_ends_with_identical_parameters(tmp_path, baseline, point):
    killed = run_cli(*ACTIVITY, "--out", str(tmp_path), program=killed_at(point))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "activity_rnn.npz").exists()
    leftover = tmp_path / "resume" / ".activity_rnn.npz.x1y2.tmp"  # a write killed mid-way
    leftover.parent.mkdir(exist_ok=True)
    leftover.write_bytes(b"half a checkpoint")

    resumed = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stderr = clean(resumed)
    if point == "1:5":  # killed before the first checkpoint: starts afresh, and says so
        assert "starting afresh" in stderr
    else:
        assert "resuming from" in stderr and "activity_rnn.npz" in stderr
    assert not leftover.exists()
    assert_identical(tmp_path, baseline, "activity_rnn.npz")
    assert losses(tmp_path) == losses(baseline)
    (cell,) = json.loads((tmp_path / "metrics.json").read_text())["cells"]
    assert cell["selected_epoch"] == 1


def test_resume_skips_finished_runs_and_restores_early_stopping(tmp_path):
    # Three language-model runs with patience 1; on this data D=8,P=16 stops after 6
    # epochs and D=4,P=8 after 7 (its best epoch is the 6th). Killed as D=4,P=8's sixth
    # epoch starts, the resumed run must stop after epoch 7 as well: the rule needs the
    # restored validation losses.
    command = ["language-model", "--quick", "--epochs", "8", "--no-progress", "--lr", "0.2"]
    command += ["--optimizer", "adam", "--weight-decay", "0", "--schedule", "constant"]
    command += ["--warmup", "0", "--patience", "1", "--best-epoch", "--dropout", "0"]
    for config in ("8,16", "4,8", "6,12"):
        command += ["--config", config]
    uninterrupted = tmp_path / "uninterrupted"
    assert run_cli(*command, "--out", str(uninterrupted)).returncode == 0
    out = tmp_path / "out"
    killed = run_cli(*command, "--out", str(out), program=killed_at("language model D=4, P=8:6:0"))
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (out / "resume").glob("*.npz")) == [
        "language_model_D4_P8.npz",
        "language_model_D8_P16.npz",
    ]
    resumed = run_cli(*command, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stderr = clean(resumed)
    assert "D=8, P=16: already trained (6 epochs, stopped early)" in stderr
    assert "D=4, P=8: resuming from" in stderr and "(end of epoch 5)" in stderr
    for config in ("D8_P16", "D4_P8", "D6_P12"):
        assert_identical(out, uninterrupted, f"language_model_{config}.npz")
    assert losses(out) == losses(uninterrupted)
    runs = json.loads((out / "metrics.json").read_text())["configurations"]
    assert [(r["epochs_run"], r["stopped_early"]) for r in runs][:2] == [(6, True), (7, True)]
    assert [r["selected_epoch"] for r in runs][:2] == [5, 6]


def test_all_resumes_each_experiment_in_its_own_folder(tmp_path):
    command = [
        "all",
        "--quick",
        "--no-sweep",
        "--config",
        "8,16",
        "--cell",
        "rnn",
        "--recurrent-size",
        "8",
        "--no-progress",
        "--out",
        str(tmp_path),
    ]
    killed = run_cli(*command, program=killed_at("language model D=8, P=16:2:3"))
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(*command, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stderr = clean(resumed)
    assert "autoencoder: already trained" in stderr
    assert "language model D=8, P=16: resuming from" in stderr
    assert (tmp_path / "report.md").is_file()
    for name in ("autoencoder", "language-model", "activity"):
        assert json.loads((tmp_path / name / "metrics.json").read_text())["resumed"] is True


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_ctrl_c_mid_epoch_saves_exits_130_and_resumes_bit_for_bit(tmp_path, baseline):
    stopped = run_cli(*ACTIVITY, "--out", str(tmp_path), program=killed_at("2:4", "INT"))
    assert stopped.returncode == 130
    stderr = clean(stopped)
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    assert "interrupted: activity rnn stopped at epoch 2, batch 4 of 9" in stderr
    assert str(checkpoint) in stderr and "--resume" in stderr
    meta, _ = read_training_checkpoint(checkpoint)
    assert (meta["epoch"], meta["batch"], meta["done"]) == (1, 4, False)

    # Without --resume, the unfinished run's checkpoint is not overwritten.
    fresh = run_cli(*ACTIVITY, "--out", str(tmp_path))
    assert fresh.returncode == 2 and "unfinished run" in clean(fresh)
    assert read_training_checkpoint(checkpoint)[0]["batch"] == 4
    # Another run's settings are refused, naming them.
    other = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume", "--seed", "4")
    assert other.returncode == 2
    assert "seed: 3 in the checkpoint, 4 now" in clean(other)
    # Its parameters are part-way through epoch 2: --epochs 1 cannot end there.
    shorter = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume", "--epochs", "1")
    assert shorter.returncode == 2
    assert "part-way through epoch 2, beyond --epochs 1" in clean(shorter)
    assert read_training_checkpoint(checkpoint)[0]["batch"] == 4

    resumed = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(epoch 2, after batch 4)" in clean(resumed)
    assert_identical(tmp_path, baseline, "activity_rnn.npz")
    assert losses(tmp_path) == losses(baseline)


def test_sigint_from_outside_stops_cleanly_and_the_run_resumes(tmp_path, baseline):
    process = start_cli(*ACTIVITY, "--epochs", "40", "--out", str(tmp_path))
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "interrupted: activity rnn stopped at" in stderr and str(checkpoint) in stderr
    assert "to continue: " in stderr and "--resume" in stderr
    meta, _ = read_training_checkpoint(checkpoint)
    assert not meta["done"]

    # Sent right after epoch 1's checkpoint, the signal stops it in epoch 2 at the latest.
    # Resumed with 3 epochs (epochs may change on resume), it ends as the 3-epoch baseline.
    assert (1, 0) <= (meta["epoch"], meta["batch"]) <= (2, 0), meta
    resumed = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(tmp_path, baseline, "activity_rnn.npz")


def interrupted_at_import(module: str) -> tuple[str, ...]:
    """A ``program`` for start_cli: the command line that gets Ctrl-C (SIGINT) the moment
    it first imports ``module``: during the libraries' import for h5py, and before the
    first epoch for matplotlib (imported for the first figure)."""
    code = f"""
import os, runpy, signal, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
runpy.run_module("tinygrad_ee.tasks", run_name="__main__", alter_sys=True)
"""
    return ("-c", code)


def test_ctrl_c_while_the_libraries_load_exits_130_without_a_traceback(tmp_path):
    result = run_cli(*ACTIVITY, "--out", str(tmp_path), program=interrupted_at_import("h5py"))
    assert result.returncode == 130, result.stderr[-3000:]
    assert "interrupted" in clean(result)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_ctrl_c_before_the_first_checkpoint_does_not_point_to_checkpoints(tmp_path):
    before_training = interrupted_at_import("matplotlib")  # the autoencoder's first figure
    result = run_cli(*AUTOENCODER, "--out", str(tmp_path), program=before_training)
    assert result.returncode == 130, result.stderr[-3000:]
    stderr = clean(result)
    assert "interrupted" in stderr
    assert "checkpoints are in" not in stderr and "--resume" not in stderr

    # With a checkpoint from an earlier run, the message says where it is.
    assert run_cli(*AUTOENCODER, "--epochs", "1", "--out", str(tmp_path)).returncode == 0
    again = run_cli(
        *AUTOENCODER, "--epochs", "2", "--resume", "--out", str(tmp_path), program=before_training
    )
    assert again.returncode == 130, again.stderr[-3000:]
    stderr = clean(again)
    assert f"the last checkpoints are in {tmp_path}" in stderr and "--resume" in stderr


# --- divergence -----------------------------------------------------------------------------


def test_divergence_in_the_first_epoch_exits_3_and_says_no_checkpoint_was_written(tmp_path):
    result = run_cli(*AUTOENCODER, "--lr", "1e6", "--out", str(tmp_path))
    assert result.returncode == 3
    stderr = clean(result)
    assert "error: autoencoder diverged" in stderr
    assert "at epoch 1, batch" in stderr and "--clip" in stderr and "--lr" in stderr
    assert "No checkpoint was written" in stderr
    assert not list(tmp_path.glob("resume/*.npz")) and not (tmp_path / "metrics.json").exists()


def test_divergence_after_a_checkpoint_keeps_it_intact(tmp_path):
    first = run_cli(*AUTOENCODER, "--epochs", "1", "--out", str(tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoint = tmp_path / "resume" / "autoencoder.npz"
    before = checkpoint.read_bytes()
    result = run_cli(
        *AUTOENCODER, "--epochs", "2", "--lr", "1e6", "--resume", "--out", str(tmp_path)
    )
    assert result.returncode == 3
    stderr = clean(result)
    assert "at epoch 2, batch" in stderr and "--clip" in stderr and "--lr" in stderr
    assert f"last good checkpoint (end of epoch 1) is kept in {checkpoint}" in stderr
    assert checkpoint.read_bytes() == before


# One batch per epoch (288 series): its loss is computed before the step that --lr 1e30
# turns into huge but finite parameters, so only the validation loss after it is NaN.
ONE_BATCH = [
    *["activity", "--quick", "--cell", "rnn", "--recurrent-size", "4", "--batch-size", "512"],
    *["--clip", "0", "--no-progress"],
]


def test_a_nan_validation_loss_is_a_divergence_that_keeps_the_last_checkpoint(tmp_path):
    first_epoch = run_cli(*ONE_BATCH, "--epochs", "1", "--lr", "1e30", "--out", str(tmp_path))
    assert first_epoch.returncode == 3, first_epoch.stderr[-3000:]
    stderr = clean(first_epoch)
    assert "error: activity rnn diverged: the validation loss became nan after epoch 1" in stderr
    assert "No checkpoint was written" in stderr
    assert not list(tmp_path.glob("resume/*.npz")) and not (tmp_path / "metrics.json").exists()

    assert run_cli(*ONE_BATCH, "--epochs", "1", "--out", str(tmp_path)).returncode == 0
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    before = checkpoint.read_bytes()
    later = run_cli(*ONE_BATCH, "--epochs", "2", "--lr", "1e30", "--resume", "--out", str(tmp_path))
    assert later.returncode == 3, later.stderr[-3000:]
    stderr = clean(later)
    assert "the validation loss became nan after epoch 2" in stderr
    assert f"last good checkpoint (end of epoch 1) is kept in {checkpoint}" in stderr
    assert checkpoint.read_bytes() == before


def test_detect_anomaly_reports_the_op_as_an_error_with_exit_3(tmp_path):
    result = run_cli(*AUTOENCODER, "--lr", "1e6", "--detect-anomaly", "--out", str(tmp_path))
    assert result.returncode == 3
    stderr = clean(result)
    assert "error: autoencoder diverged: at epoch 1, batch" in stderr
    assert "the training loss became" not in stderr, "anomaly mode should have stopped it first"


def test_detect_anomaly_does_not_change_a_healthy_run(tmp_path, baseline):
    result = run_cli(*ACTIVITY, "--detect-anomaly", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_identical(tmp_path, baseline, "activity_rnn.npz")


# --- hostile checkpoints, options -----------------------------------------------------------


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_resuming_from_a_pickle_bomb_refuses_it_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "out" / "resume").mkdir(parents=True)
    bomb = tmp_path / "out" / "resume" / "activity_rnn.npz"
    np.savez(bomb, meta=np.array([Payload(marker)], dtype=object))
    result = run_cli(*ACTIVITY, "--out", str(tmp_path / "out"), "--resume")
    assert result.returncode == 2
    stderr = clean(result)
    assert f"error: {bomb}: entry 'meta' holds Python objects" in stderr
    assert not marker.exists()


def test_an_unreadable_checkpoint_is_refused_saying_how_to_start_afresh(tmp_path):
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"PK\x03\x04 cut short")
    for resume in ([], ["--resume"]):
        result = run_cli(*ACTIVITY, "--out", str(tmp_path), *resume)
        assert result.returncode == 2
        stderr = clean(result)
        assert f"error: {checkpoint}: not a readable .npz checkpoint" in stderr
        assert "remove it" in stderr and "afresh" in stderr
    assert checkpoint.read_bytes() == b"PK\x03\x04 cut short", "never delete what is unreadable"


TINY = [*ACTIVITY, "--recurrent-size", "4"]  # checkpoints of a few KB


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> bytes:
    """The checkpoint of a finished one-epoch TINY run."""
    out = tmp_path_factory.mktemp("one_epoch")
    assert run_cli(*TINY, "--epochs", "1", "--out", str(out)).returncode == 0
    return (out / "resume" / "activity_rnn.npz").read_bytes()


def tiny_run_checkpoint(out: Path, content: bytes) -> Path:
    checkpoint = out / "resume" / "activity_rnn.npz"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(content)
    return checkpoint


def rewrite(path: Path, change) -> None:
    """Apply ``change`` to a checkpoint's arrays (meta as a dict) and write it back."""
    arrays = read_arrays(path)
    meta = json.loads(str(arrays["meta"]))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


def set_entry(name: str, value: float, dtype: str = "float32"):
    def change(arrays, meta):
        key = name if name in arrays else sorted(k for k in arrays if k.startswith(name))[0]
        arrays[key] = arrays[key].astype(dtype)
        arrays[key].flat[0] = value

    return change


@pytest.mark.parametrize(
    "change, epochs, entry, problem",
    [
        # finite in float64, infinite in the run's float32: it used to load as inf (exit 0)
        (
            set_entry("model/", 1e300, "float64"),
            "1",
            "model/",
            "holds 1e+300 at index (0,), beyond the range of the run's float32",
        ),
        # an optimiser moment: it used to be trained on and blamed on --lr (exit 3)
        (
            set_entry("optimizer/first_moment.0", np.nan),
            "2",
            "optimizer/first_moment.0",
            "holds a NaN or infinite value: nan at index (0, 0)",
        ),
        (
            set_entry("optimizer/second_moment.1", -np.inf),
            "2",
            "optimizer/second_moment.1",
            "holds a NaN or infinite value: -inf at index (0, 0)",
        ),
        # the parameters of the best epoch, which the run would end with
        (
            set_entry("best/", np.inf),
            "2",
            "best/",
            "holds a NaN or infinite value: inf at index (0,)",
        ),
    ],
    ids=["model-1e300", "moment-nan", "moment-inf", "best-inf"],
)
def test_a_checkpoint_value_the_runs_dtype_cannot_hold_is_refused_naming_the_entry(
    tmp_path, one_epoch, change, epochs, entry, problem
):
    checkpoint = tiny_run_checkpoint(tmp_path, one_epoch)
    rewrite(checkpoint, change)
    result = run_cli(*TINY, "--epochs", epochs, "--resume", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    stderr = clean(result)
    assert f"error: {checkpoint}: entry '{entry}" in stderr and problem in stderr


def _epochs_done(epochs: int, entries: int | None = None):
    """A change making a checkpoint say it trained ``epochs`` epochs, with ``entries``
    (default: as many) in each list of its history."""

    def change(arrays, meta):
        meta["epoch"] = epochs
        for name in ("train_loss", "validation_loss", "epoch_seconds"):
            meta["history"][name] = meta["history"][name][:1] * (entries or epochs)

    return change


@pytest.mark.parametrize(
    "change, problem",
    [
        # it used to say "already trained", keep epoch 1's parameters and report 1 epoch of 3
        (_epochs_done(5), "'epoch' 5: it has trained 5 epochs, beyond --epochs 3"),
        (_epochs_done(10**30, 1), f"history 'train_loss' has 1 entries for 'epoch' {10**30}"),
        # it used to report 4 epochs of a 3-epoch run, with the invented losses
        (_epochs_done(1, 2), "history 'train_loss' has 2 entries for 'epoch' 1"),
        # it used to train, exit 3 blaming --lr and --clip, and point to this very file
        (
            set_entry("model/", 2**62, "int64"),
            "does not fit the model: load_state_dict: 'cell.bias' holds the integer "
            f"{2**62} at index (0,), beyond the integers float32 holds exactly",
        ),
    ],
    ids=["epoch-5-of-3", "epoch-1e30", "history-longer", "int64-2**62"],
)
def test_a_checkpoint_at_odds_with_the_run_is_refused_naming_the_field(
    tmp_path, one_epoch, change, problem
):
    checkpoint = tiny_run_checkpoint(tmp_path, one_epoch)
    rewrite(checkpoint, change)
    before = checkpoint.read_bytes()
    result = run_cli(*TINY, "--epochs", "3", "--resume", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: {checkpoint}: {problem}" in clean(result)
    assert checkpoint.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["resume"]  # nothing written


def test_stopped_early_on_a_run_without_early_stopping_is_refused(tmp_path, one_epoch):
    checkpoint = tiny_run_checkpoint(tmp_path, one_epoch)
    rewrite(checkpoint, lambda arrays, meta: meta["history"].update(stopped_early=True))
    result = run_cli(*TINY, "--epochs", "3", "--resume", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]  # it used to skip training, exit 0
    stderr = clean(result)
    assert f"error: {checkpoint}: history 'stopped_early' is true" in stderr
    assert "no early stopping" in stderr


def _drop_best(arrays, meta):
    for name in [name for name in arrays if name.startswith("best/")]:
        del arrays[name]


@pytest.mark.parametrize(
    "change, problem",
    [
        # version 1 had no schedule, no best parameters and no weight decay key
        (lambda arrays, meta: meta.update(version=1), "a training checkpoint of version 1"),
        (_drop_best, "holds no parameters of its best epoch"),
    ],
    ids=["version-1", "no-best"],
)
def test_a_checkpoint_of_another_version_or_without_its_best_epoch_is_refused(
    tmp_path, one_epoch, change, problem
):
    checkpoint = tiny_run_checkpoint(tmp_path, one_epoch)
    rewrite(checkpoint, change)
    result = run_cli(*TINY, "--epochs", "2", "--resume", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: {checkpoint}: {problem}" in clean(result)


def test_a_resume_folder_linking_outside_out_is_refused_and_nothing_there_is_deleted(
    tmp_path, one_epoch
):
    # A finished run's checkpoint and a leftover temporary file: both are deleted when
    # they are in OUT/resume itself.
    elsewhere = tmp_path / "elsewhere"
    leftover = elsewhere / "resume" / ".activity_rnn.npz.x1y2.tmp"
    kept = {tiny_run_checkpoint(elsewhere, one_epoch): one_epoch, leftover: b"someone's file"}
    leftover.write_bytes(kept[leftover])
    out = tmp_path / "out"
    out.mkdir()
    (out / "resume").symlink_to(elsewhere / "resume")
    for resume in ([], ["--resume"]):
        result = run_cli(*TINY, "--epochs", "1", "--out", str(out), *resume)
        assert result.returncode == 2, result.stderr[-3000:]
        stderr = clean(result)
        assert f"error: {out / 'resume'} leads to {elsewhere / 'resume'}, outside --out" in stderr
        for path, content in kept.items():
            assert path.read_bytes() == content, f"{path} was changed or deleted"


def test_resume_needs_out(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["activity", "--resume"])
    assert exit_info.value.code == 2
    assert "--resume needs --out" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["autoencoder", "language-model", "activity", "all"])
def test_help_documents_resume_anomaly_clip_and_exit_codes(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--resume", "--detect-anomaly", "--clip", "--lr"):
        assert option in text
    for code in ("0 success", "2 usage error", "3 training diverged", "130 interrupted"):
        assert code in text
