"""benchmarks/gpu_check.sh, the script a machine with a GPU runs, works: here on the CPU,
at its smallest settings (CI has no GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ["compile_modes", "bench_cpu", "tests", "tasks"]


def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    environment = {**os.environ, "DEVICE": "cpu", "TINY": "1", "OUT": str(out)}
    environment["PYTHON"] = sys.executable
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = (out / "summary.txt").read_text("utf-8")
    assert done.returncode == 0, summary
    for step in STEPS:
        assert f"{step}: exit 0 after" in summary, step
        assert (out / f"{step}.txt").stat().st_size > 0, step
    results = json.loads((out / "cpu" / "results.json").read_text("utf-8"))
    assert {row["model"] for row in results["models"]} >= {"autoencoder", "lstm"}
    assert "N=32 | + buffers reused (out=) |" in (out / "compile_modes.txt").read_text()
    assert "| GRU |" in (out / "tasks.txt").read_text("utf-8")  # the full run's report
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8  # what a lent machine returns
