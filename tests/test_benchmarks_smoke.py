"""The benchmark scripts still run (smoke tests: no test here asserts a time)."""

import math

import numpy as np
import pytest
from tinygrad_ee.benchmarks import op_overhead

import tinygrad_ee as tg

# Each overhead figure: (engine timing, raw timing, number of ops it is shared by).
OVERHEADS = {
    "forward_overhead_no_grad": ("engine_mul_no_grad", "raw_mul", 1),
    "forward_overhead_recorded": ("engine_mul_recorded", "raw_mul", 1),
    "forward_backward_overhead_one_op": (
        "engine_mul_forward_backward",
        "raw_mul_forward_backward",
        1,
    ),
    "forward_backward_overhead_per_chain_op": ("engine_chain_10_ops", "raw_chain_10_ops", 10),
}


def test_op_overhead_reports_every_figure():
    results = op_overhead.measure("cpu", repeat=3)
    assert set(results) == set(op_overhead.DESCRIPTIONS)  # every figure, each described
    timings = {name: value for name, value in results.items() if name not in OVERHEADS}
    assert len(timings) == 7
    for name, value in results.items():
        assert isinstance(value, float) and math.isfinite(value), (name, value)
    for name, value in timings.items():
        assert value > 0, f"{name}: a call takes some time, got {value} us"
    for name, (engine, raw, ops) in OVERHEADS.items():  # what the descriptions say they are
        assert results[name] == pytest.approx((results[engine] - results[raw]) / ops), name


def test_profile_sorts_every_engine_function_into_a_part():
    from tinygrad_ee.benchmarks import profile

    stats, parts = profile.profile("autoencoder", "float32", steps=1)
    assert {"op arithmetic, forward", "op arithmetic, backward", "recording"} <= set(parts)
    assert "backward walk" in parts and "optimiser" in parts
    ops_file = str(profile.ENGINE / "ops.py")
    tensor_file = str(profile.ENGINE / "tensor.py")
    assert profile.part_of(ops_file, "tensor_op") == "recording"
    assert profile.part_of(ops_file, "sigmoid") == "op arithmetic, forward"
    assert profile.part_of(ops_file, "backward") == "op arithmetic, backward"
    assert profile.part_of(tensor_file, "_propagate") == "backward walk"
    assert profile.part_of(tensor_file, "shape") == "engine, other"
    assert profile.part_of(str(profile.MODELS / "autoencoder.py"), "loss") == "model code"


def test_compile_modes_times_every_setting_and_the_hand_step():
    from tinygrad_ee.benchmarks import compile_modes
    from tinygrad_ee.benchmarks.timing import Plan

    found = list(
        compile_modes.rows("cpu", "float32", ["autoencoder"], Plan(1, repeats=1), hand=True)
    )
    settings = [row["setting"] for row in found]
    assert settings == ["eager", *compile_modes.SETTINGS, compile_modes.HAND]
    assert all(row["median_ms"] > 0 for row in found)
    assert found[-1]["graphs"] == "-"


def test_compile_modes_refuses_the_hand_step_off_the_cpu(capsys):
    from tinygrad_ee.benchmarks import compile_modes

    assert compile_modes.main(["--hand", "--device", "strict"]) == 2
    assert "--hand runs on the cpu only" in capsys.readouterr().err


def test_lstm_op_times_both_cells_and_their_ratio(capsys):
    from benchmarks import lstm_op

    tiny = ["--rounds", "2", "--repeat", "1", "--steps", "3", "--batch", "2", "--hidden", "4"]
    assert lstm_op.main(tiny) == 0
    out = capsys.readouterr().out
    assert "round 2: composed cell " in out and ", lstm_cell op " in out
    assert "speedup (composed / op): median " in out
    assert lstm_op.main(["--device", "cuda:99"]) == 2


def test_dropout_cost_times_steps_that_train():
    from tinygrad_ee.benchmarks.dropout_cost import compiled_step

    rng = np.random.default_rng(0)
    context, target = (
        tg.Tensor(rng.integers(0, 250, (400, 3))),
        tg.Tensor(rng.integers(0, 250, 400)),
    )
    indices, key = tg.Tensor(np.arange(200)), tg.Tensor(np.asarray(3))
    plain, dropped = compiled_step(0.0, context, target), compiled_step(0.5, context, target)
    first = [step(indices, key).item() for step in (plain, dropped)]
    assert first[0] != first[1]  # the same start: only dropout differs
    assert plain(indices, key).item() < first[0]  # and the step trains
