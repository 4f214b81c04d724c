"""Typed settings that are also command-line options: dataclass fields made with
`option` carry their help and parser (an argparse type that checks the range, so a bad
value is a one-line usage error); `add_arguments` makes their arguments, and `given`
picks what the command line set, for ``dataclasses.replace(defaults, **given(...))``.
`TrainingConfig` holds the training options of every experiment (each experiment's
recipes give their values) and makes the optimiser and learning-rate schedule.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from tinygrad_ee import nn, optim

MAX_SEED = 2**64 - 1


def option(default: Any = MISSING, help: str = "", parse=None, flag=None, in_dtype=False, **more):
    """A field and its option ``--name`` (or ``flag``), parsed by ``parse``; a bool field
    is a switch (a ``flag`` such as "--no-sweep" turns a True default off), or with
    ``action=argparse.BooleanOptionalAction`` both --name and --no-name. ``in_dtype``:
    a number the run's dtype must hold. ``more``: argparse's choices, metavar, action."""
    metadata = {"help": help, "parse": parse, "flag": flag, "in_dtype": in_dtype, "more": more}
    return field(default=default, metadata=metadata)


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
            shown = "the experiment's" if shared else _shown(default)
            if original is not None and getattr(original, item.name) != default:
                shown += f"; --recipe original: {_shown(getattr(original, item.name))}"
            help += f" (default: {shown})"
        parser.add_argument(meta["flag"] or "--" + item.name.replace("_", "-"), help=help, **more)


def _shown(value: Any) -> str:
    """An option's value as --help shows it."""
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


@dataclass
class TrainingConfig:
    """How a model is trained; each experiment has its own values (docs/experiments.md).
    Each experiment's recipes (`RECIPES` in tasks/autoencoder.py, language_model.py,
    activity.py) give the values."""

    epochs: int = option(help="training epochs (at most)", parse=positive_int)
    batch_size: int = option(help="mini-batch size", parse=positive_int)
    lr: float = option(help="learning rate", parse=positive, in_dtype=True)
    momentum: float = option(help="SGD's momentum, in [0, 1)", parse=below_one, in_dtype=True)
    clip: float | None = option(
        None, "max global gradient norm, 0 for none", parse=non_negative, in_dtype=True
    )
    optimizer: str = option("sgd", "sgd (with --momentum) or adam (AdamW)", choices=["sgd", "adam"])
    weight_decay: float = option(
        0.0, "decoupled weight decay: p <- p - lr wd p at each step", parse=non_negative,
        in_dtype=True,
    )  # fmt: skip
    schedule: str = option(
        "constant", "learning rate per epoch: constant, cosine (half a cosine to 0 at the "
        "last epoch) or step (x0.1 at each third)", choices=["constant", "cosine", "step"],
    )  # fmt: skip
    warmup: int = option(0, "epochs of linear learning-rate warm-up", parse=non_negative_int)
    patience: int = option(
        0, "stop when the validation loss has not fallen for N epochs; 0: never",
        parse=non_negative_int,
    )  # fmt: skip
    best_epoch: bool = option(
        False, "keep the parameters of the epoch of lowest validation loss, not the last",
        action=argparse.BooleanOptionalAction,
    )  # fmt: skip
    progress: bool = option(True, "no progress bars (for logs)", flag="--no-progress")
    compile: bool = option(
        True, "train op by op, not with compiled steps (traced once, replayed)", flag="--no-compile"
    )

    RESUMABLE = ("epochs", "lr", "momentum", "clip", "progress", "compile")  # may change

    def __post_init__(self) -> None:
        self.clip = self.clip or None  # 0: no clipping

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the one it continues."""
        return {k: v for k, v in asdict(self).items() if k not in self.RESUMABLE}

    def make_optimizer(self, parameters: list[nn.Parameter]) -> optim.Optimizer:
        """The optimiser these settings describe."""
        if self.optimizer == "adam":
            return optim.Adam(parameters, lr=self.lr, weight_decay=self.weight_decay)
        return optim.SGD(parameters, self.lr, self.momentum, self.weight_decay)

    def make_schedule(self, optimizer: optim.Optimizer) -> optim.Schedule:
        """The learning-rate schedule, stepped once per epoch (a changed lr re-captures
        a compiled step's CUDA graphs: once per batch would cost that every batch)."""
        decay = self.epochs - self.warmup
        if self.schedule == "cosine":
            return optim.CosineDecay(optimizer, self.warmup + max(decay, 1), self.warmup)
        if self.schedule == "step":
            return optim.StepDecay(optimizer, max(math.ceil(decay / 3), 1), 0.1, self.warmup)
        return optim.Constant(optimizer, self.warmup)
