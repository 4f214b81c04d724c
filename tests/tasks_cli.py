"""Running the command line (``python -m tinygrad_ee.tasks``, the same as ``tinygrad-ee``)
in a subprocess, as a user would (shared by the CLI tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
