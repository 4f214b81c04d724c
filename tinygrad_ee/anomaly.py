"""Anomaly mode: stop at the first NaN or infinity an op makes, forward or backward.

    with tg.detect_anomaly():
        loss = model.loss(x)
        loss.backward()        # AnomalyError names the op, its shapes and its line

Off by default. When off it costs one flag test per op. When on, every array an op
is given or makes, and every gradient an op's backward returns, is checked (a pass
over each array, and on a GPU a device sync per op), and every recorded op
remembers the line of user code that made it, so a NaN found in the backward is
traced to where the op was written.
"""

from __future__ import annotations

import contextlib
import linecache
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from .backend import describe_arrays

enabled = False  # read by tensor.apply on every op; only detect_anomaly() sets it

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))


class AnomalyError(FloatingPointError):
    """An op made a NaN or an infinity while anomaly mode was on."""


@contextlib.contextmanager
def detect_anomaly(enable: bool = True) -> Iterator[None]:
    """Within the block (and for backward passes run within it), raise `AnomalyError`
    at the first op whose result or gradient holds a NaN or an infinity."""
    global enabled
    previous, enabled = enabled, enable
    try:
        yield
    finally:
        enabled = previous


def is_anomaly_enabled() -> bool:
    return enabled


def creation_site() -> str:
    """``file:line in function: source`` of the innermost caller outside the engine."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) == _ENGINE_DIR:
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, line).strip()
    return f"{filename}:{line} in {frame.f_code.co_name}" + (f": {source}" if source else "")


def _bad_values(xp: Any, array: Any) -> str | None:
    """ "nan", "inf" or "nan and inf" when a floating ``array`` (or a Python number, an
    op's constant) holds them, else None."""
    if isinstance(array, float):
        return None if math.isfinite(array) else ("nan" if math.isnan(array) else "inf")
    if not hasattr(array, "dtype") or "float" not in str(array.dtype):
        return None
    if bool(xp.all(xp.isfinite(array))):
        return None
    has_nan = bool(xp.any(xp.isnan(array)))
    has_inf = bool(xp.any(xp.isinf(array)))
    return " and ".join(word for word, found in (("nan", has_nan), ("inf", has_inf)) if found)


def check_forward(xp: Any, name: str, outputs: list, arrays: list, site: str) -> None:
    """Raise if an op was given, or made, a NaN/inf. Inputs are checked too: an op such
    as relu or where can hide a NaN that came in with the data."""
    for index, array in enumerate(arrays):
        bad = _bad_values(xp, array)
        if bad is not None:
            raise AnomalyError(
                f"{name} was given {bad} in its input {index} (inputs: {describe_arrays(arrays)}), "
                f"at {site}; no op run in anomaly mode made it: look at the data, or at "
                "what was computed before detect_anomaly()"
            )
    for out in outputs:
        bad = _bad_values(xp, out)
        if bad is not None:
            raise AnomalyError(
                f"{name} produced {bad} from finite inputs in its forward pass "
                f"(inputs: {describe_arrays(arrays)}), at {site}"
            )


def check_backward(xp: Any, name: str, grads: Any, grad_out: Any, inputs: Any, site: str) -> None:
    """Raise if an op's backward returned a NaN/inf gradient for an input that needs one
    (a gradient nobody uses, such as a constant exponent's, may be anything)."""
    for index, (x, grad) in enumerate(zip(inputs, grads)):
        bad = _bad_values(xp, grad)
        if bad is None or not getattr(x, "requires_grad", False):
            continue
        shapes = describe_arrays([getattr(x, "data", x) for x in inputs])
        # A split/unbind hub receives {output index: gradient}, not one array.
        incoming = list(grad_out.values()) if isinstance(grad_out, dict) else [grad_out]
        state = "finite" if all(_bad_values(xp, g) is None for g in incoming) else "non-finite"
        raise AnomalyError(
            f"the backward of {name} produced {bad} in the gradient of its input {index} "
            f"(inputs: {shapes}; the incoming gradient was {state}); "
            f"the op was created at {site}"
        )


def check_seed(xp: Any, seed: Any) -> None:
    bad = _bad_values(xp, seed)
    if bad is not None:
        raise AnomalyError(f"backward() was given a gradient holding {bad}")
