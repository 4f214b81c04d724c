"""The command line works from any folder, whatever it holds: everything installs under
the engine's name (``tinygrad_ee.models``, ``tinygrad_ee.tasks``, ...), so a user's
``data``, ``models`` or ``tasks`` can neither shadow nor be shadowed by ours."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

USERS_NAMES = ("data", "models", "tasks", "benchmarks")


def console_script() -> str:
    """The installed ``tinygrad-ee`` beside this Python (a venv's bin/), or on PATH."""
    beside = Path(sys.executable).with_name("tinygrad-ee")
    found = str(beside) if beside.is_file() else shutil.which("tinygrad-ee")
    if found is None:
        pytest.fail("no tinygrad-ee command: install the project (pip install -e .)")
    return found


def clutter(folder: Path, plain: bool = False) -> Path:
    """Put a user's own data/, models/, tasks/ and benchmarks/ packages and data.py,
    models.py, tasks.py, benchmarks.py modules in ``folder``, each failing loudly if
    imported; ``plain``: plain folders instead (no __init__.py, no modules), such as
    the ./data/ most people keep their files in."""
    for name in USERS_NAMES:
        (folder / name).mkdir()
        (folder / name / "series.h5").write_bytes(b"a user's file")
        if not plain:
            fail = f"raise ImportError('a user module {name}')\n"
            (folder / name / "__init__.py").write_text(fail)
            (folder / f"{name}.py").write_text(fail)
    return folder


@pytest.fixture
def cluttered(tmp_path: Path) -> Path:
    return clutter(tmp_path)


def run_in(folder: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


COMMANDS = {
    "console script": lambda: [console_script()],
    "python -m tinygrad_ee.tasks": lambda: [sys.executable, "-m", "tinygrad_ee.tasks"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_line_trains_from_a_folder_holding_data_models_and_tasks(cluttered, command):
    out = cluttered / "run"
    args = ["all", "--quick", "--epochs", "1", "--no-sweep", "--no-progress", "--out", str(out)]
    result = run_in(cluttered, *COMMANDS[command](), *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for experiment in ("autoencoder", "language-model", "activity"):
        assert (out / experiment / "metrics.json").is_file(), experiment
    assert (cluttered / "data" / "series.h5").read_bytes() == b"a user's file"


@pytest.mark.parametrize("plain", [False, True], ids=["packages", "plain-folders"])
@pytest.mark.parametrize("command", COMMANDS)
def test_help_and_demo_run_from_a_cluttered_folder(tmp_path, command, plain):
    cluttered = clutter(tmp_path, plain)
    helped = run_in(cluttered, *COMMANDS[command](), "--help")
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "usage: tinygrad-ee" in helped.stdout and "all" in helped.stdout
    demo = run_in(cluttered, *COMMANDS[command](), "demo", "--steps", "3")
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "two-ring MLP on cpu" in demo.stdout


def test_nothing_is_installed_under_a_users_names(tmp_path):
    """From an empty folder, none of the common names is importable: the project installs
    no top-level `data`, `models`, `tasks` or `benchmarks`."""
    code = "import importlib.util as u; print([n for n in {!r} if u.find_spec(n)])"
    result = run_in(tmp_path, sys.executable, "-c", code.format(USERS_NAMES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    code = "import tinygrad_ee.tasks.data, tinygrad_ee.models, tinygrad_ee.benchmarks"
    assert run_in(tmp_path, sys.executable, "-c", code).returncode == 0
