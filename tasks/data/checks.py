"""Checks of untrusted arrays: the one check of values a dtype can hold, used for data
files and checkpoints alike, and the check of a dataset's dtype, shape and values.
Every problem with a data file is a `DataError` naming the file and the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class DataError(ValueError):
    """A data file is missing, unreadable, or does not have the expected layout."""


def problem(source: Any, name: str, text: str) -> DataError:
    """The error for dataset ``name`` of the file ``source``."""
    return DataError(f"{source}: dataset '{name}' {text}")


def unholdable(array: np.ndarray, dtype: Any = None) -> tuple[tuple[int, ...], float] | None:
    """The first value of a float ``array`` that ``dtype`` (None: the array's own) cannot
    hold as a finite number -- NaN, an infinity, or beyond its range, such as 1e300 for
    float32 -- as (index, value); None if there is none (or the array is not float)."""
    if array.dtype.kind != "f":
        return None
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(array) <= np.finfo(array.dtype if dtype is None else dtype).max)
    if not bad.any():  # NaN fails the comparison too
        return None
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return index, float(array[index])


def shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def checked(array, source, name: str, shape: str, kinds="iuf", what="numbers", note=""):
    """``array`` as NumPy, checked: its dtype's kind in ``kinds``; ``shape`` a pattern
    such as "(N, 3)" (a letter: any size, a number: that size); not empty; floats finite
    in float32, which the experiments compute in at the least."""
    array = np.asarray(array)
    if array.dtype.kind not in kinds:
        raise problem(source, name, f"must hold {what}, got dtype {array.dtype}")
    sizes = shape.strip("(,)").split(", ")
    fixed = [(int(size), n) for size, n in zip(sizes, array.shape) if size.isdigit()]
    if array.ndim != len(sizes) or any(size != n for size, n in fixed):
        got = shape_text(array.shape)
        raise problem(source, name, f"must have shape {shape}{note}, got {got}")
    if array.size == 0:
        raise problem(source, name, f"must not be empty, got shape {shape_text(array.shape)}")
    if (bad := unholdable(array, np.float32 if array.dtype.kind == "f" else None)) is not None:
        index, value = bad
        if np.isfinite(value):
            raise problem(source, name, f"holds {value:g} at {index}, too large for float32")
        raise problem(source, name, f"must be finite, got {value} at index {index}")
    return array


def require_rows(source: Any, name: str, count: int, minimum: int, why: str) -> None:
    """A DataError naming the file and dataset when it has fewer than ``minimum`` rows
    (``why``: what needs them). Loaders refuse empty datasets; experiments need more."""
    if count < minimum:
        rows = "row" if count == 1 else "rows"
        where = source if source is not None else "the embedded data"
        raise problem(where, name, f"has {count} {rows}, fewer than the {minimum} that {why}")
