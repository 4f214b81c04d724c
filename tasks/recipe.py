"""How a model is trained: `TrainingConfig`, the training options of every experiment
(each experiment's recipes give their values), and the optimiser and learning-rate
schedule they make.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass
from typing import Any

from tinygrad_ee import nn, optim

from .options import below_one, non_negative, non_negative_int, option, positive, positive_int


@dataclass
class TrainingConfig:
    """How a model is trained; each experiment has its own values (docs/experiments.md).
    The defaults here are the original experiments' (`tasks.experiment.RECIPES`)."""

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
