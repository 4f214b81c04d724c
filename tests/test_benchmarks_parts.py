"""The pieces of the benchmarks that decide what a figure means: the timing rule and its
device synchronisation, the memory probe, the linear fit. No test here asserts a time."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest
from tinygrad_ee.benchmarks import scaling, timing
from tinygrad_ee.benchmarks.timing import Plan, measure, no_sync, synchronizer

import tinygrad_ee as tg


def test_measure_synchronises_before_and_after_every_timed_call():
    events = []
    timing = measure(
        lambda: events.append("call"), Plan(warmup=1, repeats=3), lambda: events.append("sync")
    )
    assert events == ["sync", "call", "sync"] * 4  # one warm-up call, three timed
    assert timing.repeats == 3
    assert timing.min_ms <= timing.median_ms <= timing.max_ms


def test_plan_fits_the_repeats_into_the_budget_within_bounds():
    plan = Plan(min_repeats=5, max_repeats=50, budget_s=1.0)
    assert plan.count(0.1) == 10
    assert plan.count(10.0) == 5  # slow: still the minimum
    assert plan.count(1e-6) == 50  # fast: capped
    assert Plan(repeats=7).count(10.0) == 7


def test_cpu_needs_no_synchronisation():
    assert synchronizer("cpu") is no_sync
    assert synchronizer("cpu", "torch") is no_sync
    with pytest.raises(ValueError, match="library"):
        synchronizer("cuda", "jax")


def test_step_memory_sees_temporaries_and_leaks():
    kept = []
    one_mib = 2**20 // 8  # float64 elements

    def clean_step():
        return np.ones(one_mib).sum()  # 1 MiB held during the call, none after

    def leaking_step():
        kept.append(np.ones(one_mib))

    clean = scaling.step_memory(clean_step, "cpu", steps=3)
    assert clean["peak_mb"] >= 1.0
    assert max(abs(mb) for mb in clean["retained_mb"]) < 0.01
    leaking = scaling.step_memory(leaking_step, "cpu", steps=3)
    assert np.diff(leaking["retained_mb"]) == pytest.approx([1.0, 1.0], abs=0.01)


def test_linear_fit_recovers_a_line():
    fit = scaling.linear_fit([25, 50, 100], [1.0 + 2.0 * t for t in (25, 50, 100)])
    assert fit["slope"] == pytest.approx(2.0)
    assert fit["intercept"] == pytest.approx(1.0)
    assert fit["r_squared"] == pytest.approx(1.0)
    assert fit["max_relative_residual"] < 1e-9


class _FakeCupy:
    """Just enough of CuPy for the CUDA paths: a memory pool and devices that count
    synchronisations. (No GPU here: this checks the bookkeeping, not CUDA.)"""

    def __init__(self):
        self.synchronized = []
        self.pool = self.Pool()
        fake = self

        class Device:
            def __init__(self, index):
                self.index = index

            def synchronize(self):
                fake.synchronized.append(self.index)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        self.cuda = SimpleNamespace(Device=Device)

    class Pool:
        def __init__(self):
            self.used = self.total = 0

        def used_bytes(self):
            return self.used

        def total_bytes(self):
            return self.total

        def free_all_blocks(self):
            self.total = self.used

        def allocate(self, nbytes):
            self.used += nbytes
            self.total = max(self.total, self.used)

    def get_default_memory_pool(self):
        return self.pool


@pytest.fixture
def fake_cupy(monkeypatch):
    """CuPy faked, and the engine's backend of cuda:3, which synchronises its device."""
    cupy = _FakeCupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setattr(scaling, "cuda_index", lambda device: 3)
    backend = SimpleNamespace(synchronize=cupy.cuda.Device(3).synchronize)
    monkeypatch.setattr(tg, "get_backend", lambda device: backend)
    return cupy


def test_engine_cuda_synchronisation_waits_for_the_cupy_device(fake_cupy):
    sync = synchronizer("cuda:3")
    measure(lambda: None, Plan(warmup=0, repeats=2), sync)
    assert fake_cupy.synchronized == [3, 3, 3, 3]


def test_cuda_step_memory_reads_the_memory_pool(fake_cupy):
    pool = fake_cupy.pool
    mib = 2**20

    def step():  # 8 MiB of temporaries, 1 MiB kept for good
        pool.allocate(8 * mib)
        pool.used -= 8 * mib
        pool.allocate(mib)

    memory = scaling.step_memory(step, "cuda:3", steps=3)
    assert memory["method"] == "cupy memory pool"
    assert memory["retained_mb"] == [1.0, 2.0, 3.0]
    assert memory["peak_mb"] == 10.0  # 2 MiB kept by the first two steps + 8 MiB of temporaries
    assert fake_cupy.synchronized == [3] * 4  # after the priming step and each measured one


def test_interleaved_timing_calls_every_side_in_turns():
    calls = []
    sides = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    timings = timing.measure_interleaved(sides, timing.Plan(warmup=1, repeats=3))
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each round starts elsewhere
    assert {name: t.repeats for name, t in timings.items()} == {"a": 3, "b": 3, "c": 3}
