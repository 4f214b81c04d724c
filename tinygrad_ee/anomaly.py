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
import math
from collections.abc import Iterator
from typing import Any

import numpy as np  # host copies of arrays that failed a check, for the message

from .backend import describe_arrays, host_copy
from .compiler.hooks import require, user_site

enabled = False  # read by tensor.apply on every op; only detect_anomaly() sets it


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


creation_site = user_site  # the user's line that made an op


def _finite(xp: Any, array: Any) -> Any:
    """A 0-d bool array: whether a floating ``array`` holds only finite values (None for
    anything that cannot hold NaN or infinity). A NumPy float64 scalar, what NumPy makes
    of a 0-d result, is a Python float too, but an array here, not a constant."""
    if type(array) is float or not hasattr(array, "dtype") or "float" not in str(array.dtype):
        return None
    return xp.all(xp.isfinite(array))


def _bad_values(array: Any) -> str | None:
    """ "nan", "inf" or "nan and inf" when ``array`` (or a Python number, an op's
    constant) holds them, else None. Looked at on a host copy, once a check failed."""
    if isinstance(array, (int, float)):
        return None if math.isfinite(array) else ("nan" if math.isnan(array) else "inf")
    if not hasattr(array, "dtype") or "float" not in str(array.dtype):
        return None
    values = host_copy(array)
    found = (("nan", np.isnan(values).any()), ("inf", np.isinf(values).any()))
    return " and ".join(word for word, present in found if present) or None


def check_forward(xp: Any, name: str, outputs: list, arrays: list, site: str) -> None:
    """Raise if an op was given, or made, a NaN/inf. Inputs are checked too: an op such
    as relu or where can hide a NaN that came in with the data."""
    for index, array in enumerate(arrays):
        if isinstance(array, float) and not math.isfinite(array):
            raise _given(name, index, arrays, site)(array)
        finite = _finite(xp, array)
        if finite is not None:
            require(finite, _given(name, index, arrays, site), array)
    for out in outputs:
        finite = _finite(xp, out)
        if finite is not None:
            require(finite, _produced(name, arrays, site), out)


def _given(name: str, index: int, arrays: list, site: str):
    shapes = describe_arrays(arrays)
    return lambda array: AnomalyError(
        f"{name} was given {_bad_values(array)} in its input {index} (inputs: {shapes}), "
        f"at {site}; no op run in anomaly mode made it: look at the data, or at "
        "what was computed before detect_anomaly()"
    )


def _produced(name: str, arrays: list, site: str):
    shapes = describe_arrays(arrays)
    return lambda out: AnomalyError(
        f"{name} produced {_bad_values(out)} from finite inputs in its forward pass "
        f"(inputs: {shapes}), at {site}"
    )


def check_backward(xp: Any, name: str, grads: Any, grad_out: Any, inputs: Any, site: str) -> None:
    """Raise if an op's backward returned a NaN/inf gradient for an input that needs one
    (a gradient nobody uses, such as a constant exponent's, may be anything)."""
    # A split/unbind hub receives {output index: gradient}, not one array.
    incoming = list(grad_out.values()) if isinstance(grad_out, dict) else [grad_out]
    for index, (x, grad) in enumerate(zip(inputs, grads)):
        finite = _finite(xp, grad)
        if finite is None or not getattr(x, "requires_grad", False):
            continue
        shapes = describe_arrays([getattr(x, "data", x) for x in inputs])

        def error(grad, *incoming, index=index, shapes=shapes):
            bad = [_bad_values(g) for g in incoming]
            state = "finite" if all(b is None for b in bad) else "non-finite"
            return AnomalyError(
                f"the backward of {name} produced {_bad_values(grad)} in the gradient of "
                f"its input {index} (inputs: {shapes}; the incoming gradient was {state}); "
                f"the op was created at {site}"
            )

        require(finite, error, grad, *incoming)


def check_seed(xp: Any, seed: Any) -> None:
    finite = _finite(xp, seed)
    if finite is not None:
        require(
            finite,
            lambda seed: AnomalyError(
                f"backward() was given a gradient holding {_bad_values(seed)}"
            ),
            seed,
        )
