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
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tasks_cli import ROOT, run_cli

from tasks.__main__ import build_parser, main
from tasks.checkpoint import read_arrays, read_training_checkpoint
from tasks.training import KILL_AT_VARIABLE, KILL_SIGNAL_VARIABLE

# 288 training series in batches of 32: 9 batches per epoch, 3 epochs, about a second.
ACTIVITY = [
    "activity",
    "--quick",
    "--cell",
    "rnn",
    "--recurrent-size",
    "8",
    "--epochs",
    "3",
    "--seed",
    "3",
    "--no-progress",
]
BATCHES = 9
AUTOENCODER = ["autoencoder", "--quick", "--no-sweep", "--no-progress"]


def killed_at(point: str, signal_name: str = "KILL") -> dict:
    return {KILL_AT_VARIABLE: point, KILL_SIGNAL_VARIABLE: signal_name}


def final_model(out: Path, name: str) -> dict[str, np.ndarray]:
    return read_arrays(out / name)


def assert_identical(out: Path, baseline: Path, name: str) -> None:
    ours, theirs = final_model(out, name), final_model(baseline, name)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype
        assert np.array_equal(ours[key], theirs[key]), f"{name}: {key} differs"


def losses(out: Path) -> list:
    metrics = json.loads((out / "metrics.json").read_text())
    runs = metrics.get("cells") or metrics.get("configurations") or [metrics]
    return [(run.get("train_loss_per_epoch"), run.get("validation_loss_per_epoch")) for run in runs]


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
    killed = run_cli(*ACTIVITY, "--out", str(tmp_path), env=killed_at(point))
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


def test_resume_skips_finished_runs_and_restores_early_stopping(tmp_path):
    # Three language-model runs; on this data D=8,P=16 stops early after 3 epochs and
    # D=4,P=8 after 4. Killed right after D=4,P=8's third checkpoint, the resumed run
    # must stop after epoch 4 as well: the rule needs the restored validation losses.
    command = ["language-model", "--quick", "--epochs", "6", "--no-progress"]
    for config in ("8,16", "4,8", "6,12"):
        command += ["--config", config]
    uninterrupted = tmp_path / "uninterrupted"
    assert run_cli(*command, "--out", str(uninterrupted)).returncode == 0
    out = tmp_path / "out"
    killed = run_cli(*command, "--out", str(out), env=killed_at("language_model_D4_P8:4:0"))
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (out / "resume").glob("*.npz")) == [
        "language_model_D4_P8.npz",
        "language_model_D8_P16.npz",
    ]
    resumed = run_cli(*command, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    stderr = clean(resumed)
    assert "D=8, P=16: already trained (3 epochs, stopped early)" in stderr
    assert "D=4, P=8: resuming from" in stderr and "(end of epoch 3)" in stderr
    for config in ("D8_P16", "D4_P8", "D6_P12"):
        assert_identical(out, uninterrupted, f"language_model_{config}.npz")
    assert losses(out) == losses(uninterrupted)
    runs = json.loads((out / "metrics.json").read_text())["configurations"]
    assert [(r["epochs_run"], r["stopped_early"]) for r in runs][:2] == [(3, True), (4, True)]


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
    killed = run_cli(*command, env=killed_at("language_model_D8_P16:2:3"))
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
    stopped = run_cli(*ACTIVITY, "--out", str(tmp_path), env=killed_at("2:4", "INT"))
    assert stopped.returncode == 130
    stderr = clean(stopped)
    checkpoint = tmp_path / "resume" / "activity_rnn.npz"
    assert "interrupted: activity rnn stopped at epoch 2, batch 4 of 9" in stderr
    assert str(checkpoint) in stderr and "--resume" in stderr
    meta, _, _ = read_training_checkpoint(checkpoint)
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
    command = [*ACTIVITY, "--epochs", "40", "--out", str(tmp_path)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tasks", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
    meta, _, _ = read_training_checkpoint(checkpoint)
    assert not meta["done"]

    # Sent right after epoch 1's checkpoint, the signal stops it in epoch 2 at the latest.
    # Resumed with 3 epochs (epochs may change on resume), it ends as the 3-epoch baseline.
    assert (1, 0) <= (meta["epoch"], meta["batch"]) <= (2, 0), meta
    resumed = run_cli(*ACTIVITY, "--out", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_identical(tmp_path, baseline, "activity_rnn.npz")


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
