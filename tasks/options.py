"""Typed settings that are also command-line options: dataclass fields made with
`option` carry their help and parser (an argparse type that checks the range, so a bad
value is a one-line usage error); `add_arguments` makes their arguments, and `given`
picks what the command line set, for ``dataclasses.replace(defaults, **given(...))``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, Field, field, fields
from typing import Any

import numpy as np

MAX_SEED = 2**64 - 1


def option(
    default: Any = MISSING, help: str = "", parse=None, flag=None, in_dtype=False,
    resumable=False, rule=None, **more,
):  # fmt: skip
    """A field and its option ``--name`` (or ``flag``), parsed by ``parse``; a bool field
    is a switch (a ``flag`` such as "--no-sweep" turns a True default off), or with
    ``action=argparse.BooleanOptionalAction`` both --name and --no-name. ``in_dtype``:
    a number the run's dtype must hold. ``resumable``: it may change when a stopped run
    is resumed. ``rule``: what --help shows for a value of None (set from the data's size,
    `tasks.training.TrainingConfig.for_data`). ``more``: argparse's choices, metavar, action."""
    metadata = {"help": help, "parse": parse, "flag": flag, "in_dtype": in_dtype, "more": more}
    return field(default=default, metadata={**metadata, "resumable": resumable, "rule": rule})


def flag(item: Field) -> str:
    """The command-line option of a field made by `option`: "--batch-size", "--no-sweep"."""
    return item.metadata["flag"] or "--" + item.name.replace("_", "-")


def resumable_flags(*settings: type) -> list[str]:
    """The options of the dataclasses ``settings`` that may change on resume."""
    return [flag(item) for s in settings for item in fields(s) if item.metadata["resumable"]]


def add_arguments(parser, settings, shared: bool = False, original=None) -> None:
    """An argument per field of ``settings`` (a dataclass, or an instance holding the
    defaults to show; ``shared``: each experiment has its own; ``original``: the
    instance of --recipe original, whose values are shown where they differ). Options
    not given are not stored (see `given`)."""
    for item in fields(settings):
        meta, default = item.metadata, getattr(settings, item.name, None)
        more, help = {"dest": item.name, "default": argparse.SUPPRESS, **meta["more"]}, meta["help"]
        switch = item.type == "bool" and "action" not in more  # else: --X and --no-X
        if switch:
            more["action"] = "store_false" if default else "store_true"
        elif item.type != "bool":
            more["type"] = meta["parse"]
        if not switch and "(default:" not in help:
            shown = "the experiment's" if shared else _shown(default, meta["rule"])
            if original is not None and getattr(original, item.name) != default:
                shown += f"; --recipe original: {_shown(getattr(original, item.name))}"
            help += f" (default: {shown})"
        parser.add_argument(flag(item), help=help, **more)


def _shown(value: Any, rule: str | None = None) -> str:
    """An option's value as --help shows it (``rule`` where it is None)."""
    if value is None and rule:
        return rule
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else "none" if value is None else str(value)


def as_arguments(values: dict[str, Any]) -> str:
    """Settings as the options that give them: {"lr": 0.1, "best_epoch": False, "clip":
    None} -> "--lr 0.1 --no-best-epoch --clip 0"."""
    flags = []
    for name, value in values.items():
        name = name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(f"--{name}" if value else f"--no-{name}")
        else:
            flags.append(f"--{name} {_shown(value or 0)}")
    return " ".join(flags)


def given(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of the dataclass ``settings`` that the command line gave."""
    return {item.name: getattr(args, item.name) for item in fields(settings) if item.name in args}


def dtype_options(settings: type) -> list[str]:
    """The fields of ``settings`` holding numbers that the run's dtype must hold."""
    return [item.name for item in fields(settings) if item.metadata.get("in_dtype")]


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


def _checked(convert, accept, expected: str):
    """An argparse type: ``convert(text)``, which must ``accept`` (NaN never does)."""

    def parse(text: str):
        value = convert(text)
        if not accept(value):
            shown = text if len(text) <= 30 else f"{text[:20]}... ({len(text)} characters)"
            raise argparse.ArgumentTypeError(f"{expected}, got {shown}")
        return value

    parse.__name__ = convert.__name__  # argparse names it in "invalid float value"
    return parse


positive_int = _checked(int, lambda v: v >= 1, "must be at least 1")
non_negative_int = _checked(int, lambda v: v >= 0, "must be at least 0")
positive = _checked(float, lambda v: 0 < v < math.inf, "must be finite and positive")
non_negative = _checked(float, lambda v: 0 <= v < math.inf, "must be finite and not negative")
below_one = _checked(float, lambda v: 0 <= v < 1, "must lie in [0, 1)")
open_unit_interval = _checked(float, lambda v: 0 < v < 1, "must lie strictly between 0 and 1")
seed = _checked(
    int, lambda v: 0 <= v <= MAX_SEED, f"must be an integer from 0 to 2**64 - 1 = {MAX_SEED}"
)
seed.__name__ = "seed"  # argparse: "invalid seed value"
