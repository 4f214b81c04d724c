"""Shared fixtures: the backends every engine test runs on, and hypothesis profiles."""

import collections
import os

import pytest
from hypothesis import HealthCheck, settings

from tinygrad_ee import DeviceError, get_backend

# "ci": deterministic and modest, so CI is neither flaky nor slow. "dev": more examples.
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev", parent=settings.get_profile("ci"), max_examples=300, derandomize=False
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _cuda_unavailable() -> str | None:
    try:
        get_backend("cuda")
    except DeviceError as error:
        return str(error)
    return None


CUDA_MISSING = _cuda_unavailable()
DEVICES = [
    "cpu",
    "strict",
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(CUDA_MISSING is not None, reason=f"no CUDA: {CUDA_MISSING}"),
    ),
]


@pytest.fixture(params=DEVICES, scope="session")
def device(request) -> str:
    """Each engine test runs once per backend: NumPy, array-api-strict, and CuPy if present."""
    return request.param


def pytest_report_header(config):
    cuda = "cuda: yes" if CUDA_MISSING is None else f"cuda: skipped ({CUDA_MISSING})"
    return f"tinygrad-ee backends under test: cpu (NumPy), strict (array-api-strict); {cuda}"


def pytest_terminal_summary(terminalreporter):
    """One line per backend: how many backend-parametrised tests passed, failed, skipped."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            params = getattr(report, "nodeid", "")
            for name in ("cpu", "strict", "cuda"):
                if f"[{name}-" in params or f"-{name}]" in params or f"[{name}]" in params:
                    counts.setdefault(name, {}).setdefault(outcome, 0)
                    counts[name][outcome] += 1
    if counts:
        terminalreporter.section("engine tests per backend")
        for name, outcome_counts in counts.items():
            text = ", ".join(f"{n} {outcome}" for outcome, n in outcome_counts.items())
            terminalreporter.write_line(f"{name}: {text}")
    # Why tests were skipped (no GPU, no PyTorch, ...): one line per reason, always shown.
    reasons = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
            reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skipped tests, by reason")
        for reason, n in reasons.most_common():
            terminalreporter.write_line(f"{n} skipped: {reason}")
