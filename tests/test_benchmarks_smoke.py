"""The benchmark scripts still run (smoke tests: no test here asserts a time)."""

from benchmarks import op_overhead


def test_op_overhead_reports_every_figure():
    results = op_overhead.measure("cpu", repeat=3)
    assert {"raw_mul", "engine_mul_recorded", "forward_backward_overhead_per_chain_op"} <= set(
        results
    )
    assert all(value == value for value in results.values())  # no NaN


def test_profile_sorts_every_engine_function_into_a_part():
    from benchmarks import profile

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
