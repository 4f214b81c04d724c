"""What the engine knows of compiled steps: the calls through which its code tells a
trace what array calls do not show, the only part of the compiler that ops.py,
optim.py and anomaly.py import (backend.py mixes in lowering.py). Outside a trace each
is a test of ``active`` and the eager action; in one, the `trace.Recorder` takes it.
"""

from __future__ import annotations

import linecache
import os
import sys
from collections.abc import Callable
from typing import Any

active: Any = None  # the trace.Recorder of the trace in progress (set by trace.tracing)

_COMPILER = os.path.dirname(os.path.abspath(__file__))
_ENGINE = {_COMPILER, os.path.dirname(_COMPILER)}  # tinygrad_ee/ and tinygrad_ee/compiler/


class TraceError(RuntimeError):
    """A step that cannot be compiled, naming what it did and where."""


def is_tracing() -> bool:
    return active is not None


def require(ok: Any, error: Callable[..., Exception], *arrays: Any) -> None:
    """Raise ``error(*arrays)`` unless ``ok`` (a 0-d bool array) holds; a compiled step
    keeps the check and makes it at every call."""
    if active is not None:
        active.require(ok, error, arrays)
    elif not bool(ok):
        raise error(*arrays)


def host_scalar(read: Callable[[], float]) -> Any:
    """``read()``: a Python number that may change between calls of a compiled step (a
    scheduled ``lr``); a compiled step reads it again at each call."""
    return read() if active is None else active.host(read)


def guard(read: Callable[[], Any]) -> None:
    """In a trace: the program is valid only while ``read()`` returns what it returns
    now (an optimiser's parameter list); a change traces again."""
    if active is not None:
        active.guards.append((read, read()))


def value_read(what: str) -> TraceError:
    """The error for reading an array's value in Python inside a compiled step."""
    return TraceError(
        f"{what} inside a compiled step, at {user_site()}: a compiled step replays "
        "array operations only, so it cannot read a tensor's value in Python (to branch "
        "on it, print it or convert it). Compute with ops instead (where, clip, ...), "
        "or read the value outside the step, e.g. from the tensors it returns"
    )


def user_site() -> str:
    """``file:line in function: source`` of the innermost caller outside the engine."""
    frame = sys._getframe(1)
    while frame is not None and os.path.dirname(frame.f_code.co_filename) in _ENGINE:
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    filename, line = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, line).strip()
    return f"{filename}:{line} in {frame.f_code.co_name}" + (f": {source}" if source else "")
