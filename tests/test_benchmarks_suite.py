"""``python -m benchmarks``: a quick run writes every promised figure, in JSON, markdown and
a plot; unavailable devices are skipped, unknown ones refused. No test here asserts a time.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tinygrad_ee.benchmarks import models, op_overhead, scaling, suite, torch_reference
from tinygrad_ee.benchmarks.timing import Plan

import tinygrad_ee as tg

REPO = Path(__file__).resolve().parents[1]
TORCH_INSTALLED = importlib.util.find_spec("torch") is not None
TIMING_FIELDS = {"median_ms", "min_ms", "max_ms", "repeats"}
REFERENCE_FIELDS = {
    "step",
    "inference",
    "step_ratio",
    "inference_ratio",
    "compiled_step_ratio",
    "compiled_inference_ratio",
    "reason",
}
MODEL_NAMES = ["autoencoder", "language_model", "rnn", "lstm", "gru"]


def _cuda_missing() -> str | None:
    try:
        tg.get_backend("cuda")
    except tg.DeviceError as error:
        return str(error)
    return None


CUDA_MISSING = _cuda_missing()
needs_no_gpu = pytest.mark.skipif(CUDA_MISSING is None, reason="a CUDA GPU is present")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One in-process quick run on cpu and cuda (skipped without a GPU), both dtypes."""
    folder = tmp_path_factory.mktemp("bench")
    status = suite.main(
        ["--quick", "--device", "cpu", "--device", "cuda"]
        + ["--json", str(folder / "results.json"), "--markdown", str(folder / "results.md")]
    )
    results = json.loads((folder / "results.json").read_text("utf-8"))
    return status, folder, results


def _check_timing(timing: dict) -> None:
    assert set(timing) == TIMING_FIELDS
    assert timing["repeats"] >= 1
    assert 0 < timing["min_ms"] <= timing["median_ms"] <= timing["max_ms"]


def _check_reference(entry: dict, expected_reason: str | None) -> None:
    assert set(entry) == REFERENCE_FIELDS
    if expected_reason is None:
        assert entry["reason"] is None
        _check_timing(entry["step"])
        _check_timing(entry["inference"])
        ratios = [
            entry[f"{side}{phase}_ratio"]
            for side in ("", "compiled_")
            for phase in ("step", "inference")
        ]
        assert all(ratio > 0 for ratio in ratios)
    else:
        assert expected_reason in entry["reason"]
        assert entry["step"] is entry["inference"] is None
        assert entry["step_ratio"] is entry["inference_ratio"] is None
        assert entry["compiled_step_ratio"] is entry["compiled_inference_ratio"] is None


def test_quick_run_writes_json_markdown_and_plot(quick_run):
    status, folder, results = quick_run
    assert status == 0
    assert (folder / "results.md").read_text("utf-8").startswith("# tinygrad-ee benchmarks")
    assert (folder / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["plot"] == str(folder / "scaling.png")


def test_json_describes_the_machine(quick_run):
    machine = quick_run[2]["machine"]
    for key in ("platform", "cpu_count", "python", "numpy", "blas", "thread_pools", "load_average"):
        assert machine[key], key
    assert machine["blas_threads"] == 1
    assert all(library["num_threads"] == 1 for library in machine["blas"])
    if TORCH_INSTALLED:
        assert machine["torch"] and machine["torch_threads"] == 1
    else:
        assert machine["torch"] is None and machine["torch_threads"] is None


def test_every_model_row_has_every_field(quick_run):
    rows = quick_run[2]["models"]
    cpu_rows = [row for row in rows if row["device"] == "cpu"]
    assert [(row["dtype"], row["model"]) for row in cpu_rows] == [
        (dtype, name) for dtype in ("float32", "float64") for name in MODEL_NAMES
    ]
    torch_reason = None if TORCH_INSTALLED else torch_reference.TORCH_MISSING
    for row in cpu_rows:
        assert row["label"] and row["sizes"]
        for side in ("engine", "compiled"):
            _check_timing(row[side]["step"])
            _check_timing(row[side]["inference"])
        compiled = row["compiled"]
        for phase in ("step", "inference"):  # eager / compiled, not the other way
            expected = row["engine"][phase]["median_ms"] / compiled[phase]["median_ms"]
            assert compiled[f"{phase}_speedup"] == pytest.approx(expected)
        program = compiled["program"]
        assert 0 < program["buffers"] < program["instructions"] and program["held_mb"] > 0
        assert program["graphs"] == "not used"  # the CPU has no device graphs
        _check_reference(row["hand"], None)
        _check_reference(row["torch"], torch_reason)
        recurrent = row["model"] in models.RECURRENT_CELLS
        _check_reference(row["torch_nn"], torch_reason if recurrent else "recurrent")
        for name in ("hand", "torch", "torch_nn"):  # engine / reference, not the other way
            if row[name]["step"] is not None:
                reference = row[name]["step"]["median_ms"]
                expected = row["engine"]["step"]["median_ms"] / reference
                assert row[name]["step_ratio"] == pytest.approx(expected)
                expected = row["compiled"]["step"]["median_ms"] / reference
                assert row[name]["compiled_step_ratio"] == pytest.approx(expected)


def test_unavailable_cuda_is_listed_as_skipped_with_the_reason(quick_run):
    results = quick_run[2]
    cuda = next(d for d in results["devices"] if d["device"] == "cuda")
    if CUDA_MISSING is None:
        assert cuda["available"] and any(row["device"] == "cuda" for row in results["models"])
        return
    assert not cuda["available"] and cuda["reason"] == CUDA_MISSING
    assert results["skipped_devices"] == [{"device": "cuda", "reason": CUDA_MISSING}]
    assert all(row["device"] == "cpu" for row in results["models"])
    assert [sweep["device"] for sweep in results["scaling"]] == ["cpu"]


def test_scaling_rows_report_time_peak_and_retained_memory(quick_run):
    sweep = next(s for s in quick_run[2]["scaling"] if s["device"] == "cpu")
    assert [row["T"] for row in sweep["time_steps"]] == list(scaling.QUICK["lengths"])
    assert [row["B"] for row in sweep["batch"]] == list(scaling.QUICK["batches"])
    for row in sweep["time_steps"] + sweep["batch"]:
        _check_timing(row["step"])
        _check_timing(row["compiled_step"])
        assert row["peak_mb"] > 0 and row["memory_method"] == "tracemalloc"
        assert row["compiled_peak_mb"] >= row["compiled_held_mb"] > 0
        assert len(row["retained_mb"]) == 2 and isinstance(row["released"], bool)
        for key in ("ms_per_time_step", "peak_mb_per_time_step", "peak_mb_per_sample"):
            assert row[key] > 0
    # memory is not timing: a longer sequence must hold more
    peaks = [row["peak_mb"] for row in sweep["time_steps"]]
    assert peaks == sorted(peaks) and peaks[0] < peaks[-1]
    assert set(sweep["fits"]) == {"peak_mb_vs_T", "step_ms_vs_T", "peak_mb_vs_B", "step_ms_vs_B"}
    for fit in sweep["fits"].values():
        assert set(fit) == {"slope", "intercept", "r_squared", "max_relative_residual"}
        assert all(math.isfinite(value) for value in fit.values())


def test_op_overhead_rows_cover_every_figure(quick_run):
    rows = [row for row in quick_run[2]["op_overhead"] if row["device"] == "cpu"]
    assert {row["name"] for row in rows} == set(op_overhead.DESCRIPTIONS)
    assert all(row["what"] and math.isfinite(row["us"]) for row in rows)


def test_markdown_has_every_table(quick_run):
    text = (quick_run[1] / "results.md").read_text("utf-8")
    for heading in (
        "## Machine",
        "## Devices",
        "## Engine: one training step and one inference pass",
        "### Training step",
        "### Inference pass",
        "## Scaling: LSTM classifier",
        "### Against sequence length T",
        "### Against batch size B",
        "## Per-op overhead",
    ):
        assert heading in text, heading
    assert "](scaling.png)" in text
    assert "| cpu | float64 | gru H=16 T=8 B=4 |" in text
    if CUDA_MISSING is not None:
        assert f"| cuda | skipped: {CUDA_MISSING} |" in text


def test_command_line_quick_run(tmp_path):
    """The real command, in a fresh interpreter. One dtype and no torch to keep it short
    (importing torch takes seconds; the in-process run above covers the torch rows)."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--dtype", "float32", "--no-torch"]
    command += ["--json", str(out / "results.json"), "--markdown", str(out / "results.md")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    results = json.loads((out / "results.json").read_text("utf-8"))
    assert {"machine", "devices", "skipped_devices", "models", "scaling", "op_overhead"} <= set(
        results
    )
    cpu_rows = [row for row in results["models"] if row["device"] == "cpu"]
    assert [row["model"] for row in cpu_rows] == MODEL_NAMES
    assert all(row["torch"]["reason"] == suite.NO_TORCH_OPTION for row in cpu_rows)
    assert results["machine"]["torch"] == suite.NO_TORCH_OPTION  # left out, not missing
    assert (out / "scaling.png").exists() and (out / "results.md").exists()
    assert done.stdout == (out / "results.md").read_text("utf-8") + "\n"  # print() adds one


@needs_no_gpu
def test_only_an_unavailable_device_is_not_an_error(tmp_path, capsys):
    status = suite.main(["--quick", "--device", "cuda", "--json", str(tmp_path / "r.json")])
    assert status == 0
    results = json.loads((tmp_path / "r.json").read_text("utf-8"))
    assert results["skipped_devices"] == [{"device": "cuda", "reason": CUDA_MISSING}]
    assert results["models"] == [] and results["scaling"] == [] and results["plot"] is None
    assert "No device was measured." in capsys.readouterr().out


def test_unknown_device_is_a_clear_error():
    command = [sys.executable, "-m", "benchmarks", "--quick", "--device", "tpu"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error: argument --device: unknown device 'tpu'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_output_path_that_is_a_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--quick", "--device", "cpu", "--json", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "is a folder" in capsys.readouterr().err


def test_without_torch_the_rows_say_so(monkeypatch, tmp_path):
    """The path CI takes (no torch): every torch entry is None with the reason."""
    monkeypatch.setattr(torch_reference, "load_torch", lambda: None)
    with pytest.raises(torch_reference.TorchUnavailable, match="torch not installed"):
        case = models.make_case(models.recurrent_spec("gru", steps=3, batch=2, hidden=4), "float32")
        torch_reference.callables(case)
    row = suite.model_row(
        models.recurrent_spec("gru", steps=3, batch=2, hidden=4),
        "float32",
        "cpu",
        Plan(warmup=0, repeats=1),
    )
    _check_reference(row["hand"], None)
    _check_reference(row["torch"], "torch not installed")
    _check_reference(row["torch_nn"], "torch not installed")
    assert suite.machine_info(1, None)["torch"] is None


def test_an_unwritable_output_fails_before_measuring(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", "utf-8")
    monkeypatch.setattr(suite, "run", lambda *a: pytest.fail("measured before checking"))
    status = suite.main(["--quick", "--json", str(blocker / "results.json")])
    assert status == 1
    assert "error: cannot write the results there" in capsys.readouterr().err


def test_a_failed_write_after_the_run_still_prints_and_writes_the_rest(tmp_path, monkeypatch):
    def broken_plot(*args):
        raise OSError("disk full")

    monkeypatch.setattr(suite.report, "plot_scaling", broken_plot)
    status = suite.main(
        ["--quick", "--no-torch", "--dtype", "float32", "--device", "cpu"]
        + ["--json", str(tmp_path / "results.json")]
    )
    assert status == 1
    results = json.loads((tmp_path / "results.json").read_text("utf-8"))
    assert results["models"] and results["plot"] is None  # the figures were kept


def test_a_device_that_fails_midway_is_skipped_and_the_others_kept(monkeypatch):
    def failing_rows(args, device, dtype):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(suite, "_model_rows", failing_rows)
    args = suite.build_parser().parse_args(["--quick", "--no-torch", "--device", "cpu"])
    results = suite.run(args, [])
    assert results["models"] == [] and results["devices"][0]["available"] is False
    assert "RuntimeError: out of memory" in results["skipped_devices"][0]["reason"]


def test_every_side_makes_as_many_calls_as_the_engine():
    """Each side trains its own copy: equal call counts keep them at the same stage of
    training. With a time budget the faster side would otherwise make more calls."""
    spec = models.recurrent_spec("gru", **suite.QUICK_RECURRENT)
    plan = Plan(warmup=1, min_repeats=2, max_repeats=200, budget_s=0.05)
    row = suite.model_row(spec, "float64", "cpu", plan, torch_skipped="not here")
    for name in ("step", "inference"):
        assert row["hand"][name]["repeats"] == row["engine"][name]["repeats"]
        assert row["compiled"][name]["repeats"] == row["engine"][name]["repeats"]
