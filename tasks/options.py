"""Argument types for the command line: numbers that must be in range, checked by argparse
so that a bad value is a one-line usage error, not a traceback later."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import numpy as np

MAX_SEED = 2**64 - 1


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(kind: type) -> Callable[[str], float]:
    """An argparse type: a finite number of ``kind`` that is not negative."""

    def parse(text: str):
        value = kind(text)
        if not (value >= 0 and math.isfinite(value)):  # nan fails both comparisons
            raise argparse.ArgumentTypeError(f"must be finite and not negative, got {text}")
        return value

    parse.__name__ = f"non-negative {kind.__name__}"
    return parse


def positive(kind: type) -> Callable[[str], float]:
    """An argparse type: a finite number of ``kind`` greater than 0 (a learning rate)."""

    def parse(text: str):
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be finite and positive, got {text}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def momentum(text: str) -> float:
    """An argparse type: a momentum coefficient in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def open_unit_interval(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a rate such as rho)."""
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1, got {text}")
    return value


def seed(text: str) -> int:
    """An argparse type: a random seed, an integer from 0 to MAX_SEED."""
    value = int(text)
    if not 0 <= value <= MAX_SEED:
        shown = text if len(text) <= 30 else f"{text[:20]}... ({len(text)} characters)"
        raise argparse.ArgumentTypeError(
            f"must be an integer from 0 to 2**64 - 1 = {MAX_SEED}, got {shown}"
        )
    return value


def dtype_problem(value: float, dtype: str) -> str | None:
    """What goes wrong with ``value`` in ``dtype`` ("rounds to 0 ...", "overflows ..."),
    or None if it is held as a finite number, and not as 0 unless it is 0."""
    limits = np.finfo(dtype)
    with np.errstate(over="ignore", under="ignore"):
        held = np.asarray(value, dtype=dtype)
    if value != 0 and held == 0:
        return f"rounds to 0 in {dtype}, whose smallest magnitude is {limits.smallest_subnormal:g}"
    if not np.isfinite(held):
        return f"overflows to inf in {dtype}, whose largest value is {limits.max:g}"
    return None
