"""Running the command line (``python -m tinygrad_ee.tasks``, the same as ``tinygrad-ee``)
in a subprocess, as a user would (shared by the CLI tests)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
from tinygrad_ee.tasks.files import read_arrays

ROOT = Path(__file__).resolve().parents[1]


def default_sigint() -> None:
    """Run in the child before exec: SIGINT back to its default. A shell that ignores
    SIGINT (nohup, a background job) passes SIG_IGN on to every child, and the command
    line rightly keeps an ignored SIGINT ignored; a user's Ctrl-C reaches a child that
    a terminal started, so that is what the tests start."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(
    *args: str,
    env: dict | None = None,
    program: tuple[str, ...] = ("-m", "tinygrad_ee.tasks"),
    preexec_fn=None,
) -> subprocess.Popen:
    """``python -m tinygrad_ee.tasks *args`` started from the repository root, its output
    piped. ``env`` adds variables; ``program`` replaces ``-m tinygrad_ee.tasks`` (e.g.
    ``-c CODE``);
    ``preexec_fn`` also runs in the child before exec."""

    def prepare() -> None:
        default_sigint()
        if preexec_fn is not None:
            preexec_fn()

    return subprocess.Popen(
        [sys.executable, *program, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        preexec_fn=prepare,
    )


def run_cli(*args: str, timeout: float = 600, **options) -> subprocess.CompletedProcess:
    """The command line run to the end; ``options`` as for `start_cli`."""
    process = start_cli(*args, **options)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
        process.wait()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def killed_at(point: str, signal_name: str = "KILL") -> tuple[str, ...]:
    """A ``program`` for run_cli: the command line that sends itself SIG<signal_name> at
    "[RUN:]EPOCH:BATCH": once batch BATCH of epoch EPOCH (both from 1) of the training
    run described as RUN (any run if left out) is trained; BATCH 0: as epoch EPOCH
    starts, right after the previous epoch's checkpoint. The hook wraps the methods by
    which the training loop reports its progress."""
    *run, epoch, batch = point.split(":")
    code = f"""
import os, runpy, signal
from tinygrad_ee.tasks.progress import Progress

def stop_at(progress, epoch, batch):
    if {run!r} in ([], [progress.description]) and (epoch, batch) == ({epoch}, {batch}):
        os.kill(os.getpid(), signal.SIG{signal_name})

start_epoch, trained = Progress.start_epoch, Progress.batch

def started(progress, epoch, first, total):
    start_epoch(progress, epoch, first, total)
    stop_at(progress, epoch, first)

def batch(progress, epoch, number, loss):
    trained(progress, epoch, number, loss)
    stop_at(progress, epoch, number)

Progress.start_epoch, Progress.batch = started, batch
runpy.run_module("tinygrad_ee.tasks", run_name="__main__", alter_sys=True)
"""
    return ("-c", code)


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


def assert_resumes_bit_for_bit(command: list[str], folder: Path, point: str, model: str) -> None:
    """``command`` run whole, and run again killed (SIGKILL) at ``point`` (`killed_at`) and
    resumed: the same ``model`` file and per-epoch losses, bit for bit."""
    baseline, out = folder / "baseline", folder / "out"
    assert run_cli(*command, "--out", str(baseline)).returncode == 0
    killed = run_cli(*command, "--out", str(out), program=killed_at(point))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = run_cli(*command, "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert_identical(out, baseline, model)
    assert losses(out) == losses(baseline)
