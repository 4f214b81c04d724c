"""The training loop and its settings: `TrainingConfig` (the training options; it makes
the optimiser and the learning-rate schedule); epochs of seeded mini-batches, one step
per batch (`make_step`, compiled by default), an evaluation after each epoch. A NaN or
infinite loss stops it (`TrainingDiverged`), and so does Ctrl-C (the first finishes the
batch, saves and raises `TrainingInterrupted`; a second stops at once). A `TrainingRun`
gives and takes its whole state (`state_dict`, `load_state_dict`: checked against the
run before anything changes); `fit` continues the run a checkpoint holds and saves to it
at every epoch end and on Ctrl-C. The checkpoint is any object with ``restore(run)``,
``save(state)`` and ``path`` (`tasks.checkpoint.Checkpoint`: the file and its checks).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from types import SimpleNamespace
from typing import Any

import numpy as np

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

from .data import unholdable
from .options import below_one, non_negative, non_negative_int, option, positive, positive_int
from .progress import Progress, note

# The batch-size rule (TrainingConfig.for_data): 1/8 of the samples, from 8 to 32.
BATCHES_AT_LEAST, SMALLEST_BATCH, LARGEST_BATCH = 8, 8, 32


@dataclass(kw_only=True)
class TrainingConfig:
    """How a model is trained; each experiment's recipes (`RECIPES` in
    tasks/autoencoder.py, language_model.py, activity.py) give the values. A field made
    with ``resumable=True`` may change when a run is resumed; the others are the run's
    identity: a resumed run must have the same."""

    epochs: int | None = option(
        None, "training epochs (at most)", parse=positive_int, resumable=True,
        rule="as many as --updates takes",
    )  # fmt: skip
    batch_size: int | None = option(
        None, "mini-batch size", parse=positive_int,
        rule=f"1/{BATCHES_AT_LEAST} of the training samples, from {SMALLEST_BATCH} to "
        f"{LARGEST_BATCH}",
    )  # fmt: skip
    updates: int | None = option(
        None, "training length in updates (batches) where --epochs is not given: epochs = "
        "updates / batches an epoch, rounded up", parse=positive_int, resumable=True,
        rule="none: --epochs sets the length",
    )  # fmt: skip
    lr: float = option(help="learning rate", parse=positive, in_dtype=True, resumable=True)
    momentum: float = option(
        help="SGD's momentum, in [0, 1)", parse=below_one, in_dtype=True, resumable=True
    )
    clip: float | None = option(
        None, "max global gradient norm, 0 for none", parse=non_negative, in_dtype=True,
        resumable=True,
    )  # fmt: skip
    optimizer: str = option("sgd", "sgd (with --momentum) or adam (AdamW)", choices=["sgd", "adam"])
    weight_decay: float | None = option(
        0.0, "decoupled weight decay: p <- p - lr wd p at each step", parse=non_negative,
        in_dtype=True, rule="the experiment's rule, from the training set's size",
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
    min_validation: int = option(
        0, "fewest validation samples for --patience and --best-epoch to act on; with "
        "fewer, the run trains all its epochs and keeps the last", parse=non_negative_int,
    )  # fmt: skip
    progress: bool = option(
        True, "no progress reports (bars on a terminal, a line per epoch elsewhere)",
        flag="--no-progress", resumable=True,
    )  # fmt: skip
    compile: bool = option(
        True, "train op by op, not with compiled steps (traced once, replayed)",
        flag="--no-compile", resumable=True,
    )  # fmt: skip

    VALIDATED = ("patience", "best_epoch")  # what needs a validation loss to do anything

    def __post_init__(self) -> None:
        self.clip = self.clip or None  # 0: no clipping

    def for_data(self, count: int, validation: int) -> tuple[TrainingConfig, list[str]]:
        """These settings for ``count`` training and ``validation`` validation samples,
        and what the size rules set (docs/experiments.md#size-rules), each a sentence.
        The rules fill only what is None: a value the recipe or the command line gives
        stays. Batch size: 1/8 of the training samples (at least 8 batches an epoch), from
        8 to 32 (fewer make noisy steps; more, too few of them on small data). Epochs:
        enough for ``updates`` batches. Selection: with fewer than ``min_validation``
        validation samples, no early stopping and the last epoch's parameters (an epoch
        chosen on a handful of samples is chosen by noise)."""
        config, rules = replace(self), []
        if config.batch_size is None:
            batch = min(max(count // BATCHES_AT_LEAST, SMALLEST_BATCH), LARGEST_BATCH, count)
            config.batch_size = batch
            rules.append(
                f"batch size {batch}: 1/{BATCHES_AT_LEAST} of {count} training samples, from "
                f"{SMALLEST_BATCH} to {LARGEST_BATCH}"
            )
        if config.epochs is None:
            if config.updates is None:
                raise ValueError("TrainingConfig: give epochs or updates")
            per_epoch = math.ceil(count / config.batch_size)
            config.epochs = math.ceil(config.updates / per_epoch)
            rules.append(
                f"{config.epochs} epochs: {config.updates} updates of {per_epoch} batches an epoch"
            )
        if validation < config.min_validation and (config.patience or config.best_epoch):
            config.patience, config.best_epoch = 0, False
            rules.append(
                f"no early stopping, the last epoch kept: {validation} validation samples, "
                f"fewer than {config.min_validation}"
            )
        return config, rules

    def resumable(self) -> dict[str, Any]:
        """The settings that may change when the run is resumed."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["resumable"]}

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the one it continues."""
        return {k: v for k, v in asdict(self).items() if k not in self.resumable()}

    def warmup_problem(self) -> str | None:
        """Why the learning rate never reaches ``lr``, or None: the warm-up (``warmup``
        epochs, rising by lr / (warmup + 1) an epoch) lasts the whole training."""
        if self.epochs is None or self.warmup < self.epochs:  # None: set by the data's size
            return None
        return (
            f"--warmup {self.warmup} is not shorter than --epochs {self.epochs}: the learning "
            f"rate never reaches --lr (at most {self.epochs}/{self.warmup + 1} of it)"
        )

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


@dataclass
class History:
    """Per-epoch figures of one training run."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False

    @property
    def best_epoch(self) -> int | None:
        """The epoch (from 1) of the lowest validation loss (the first, if tied), if any."""
        losses = self.validation_loss
        return int(np.argmin(losses)) + 1 if losses else None


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite (or anomaly mode found one); ``config`` and
    ``checkpoint`` (None: none) are the run's, the latter holding its last good state."""

    def __init__(self, message: str, config: TrainingConfig, checkpoint: Any) -> None:
        super().__init__(message)
        self.config, self.checkpoint = config, checkpoint


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the state was saved to ``path`` (None: nothing saved)."""

    def __init__(self, message: str, path: Any) -> None:
        super().__init__(message)
        self.path = path


def batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle of range(count) cut into batches (the last may be smaller)."""
    order = rng.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def describe_position(epoch: int, batch: int) -> str:
    """Where a run stands: "end of epoch 2", or "epoch 3, after batch 5"."""
    return f"epoch {epoch + 1}, after batch {batch}" if batch else f"end of epoch {epoch}"


def make_step(model: nn.Module, optimizer: optim.Optimizer, batch_loss, config: TrainingConfig):
    """``step(indices, key) -> loss``: one update from the samples at ``indices`` (an
    integer tensor on the model's device; ``key``, one integer, for the model's random
    choices, such as dropout's), compiled unless ``config.compile`` is False."""

    def train_step(indices: tg.Tensor, key: tg.Tensor) -> tg.Tensor:
        loss = batch_loss(indices, key)
        optimizer.zero_grad()
        loss.backward()
        if config.clip:
            optim.clip_grad_norm(model.parameters(), config.clip)
        optimizer.step()
        return loss

    return tg.compile(train_step) if config.compile else train_step


@contextlib.contextmanager
def _stop_on_ctrl_c():
    """The first Ctrl-C sets ``stop.requested``; its handler then steps aside, so that a
    second raises KeyboardInterrupt at once. An ignored SIGINT (nohup) stays ignored."""
    stop, previous = SimpleNamespace(requested=False), signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None) or threading.current_thread() != threading.main_thread():
        yield stop
        return

    def request(signum, frame):  # no printing here: a handler may interrupt a print
        stop.requested = True
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(value)
    except (TypeError, OverflowError):  # not a number; an integer too large for a float
        return False


_OBJECT = (lambda value: isinstance(value, dict), "an object")
_FLAG = (lambda value: isinstance(value, bool), "true or false")
_NUMBERS = (lambda value: isinstance(value, list) and all(map(_number, value)), "numbers")
STATE = {  # what a saved run holds besides its arrays: name -> (check, what it must be)
    **dict.fromkeys(("settings", "history", "rng", "backend_rng", "schedule"), _OBJECT),
    **dict.fromkeys(("epoch", "batch"), (_count, "a non-negative integer")),
    "loss_sum": (_number, "a finite number"),
    "seconds": (lambda value: _number(value) and value >= 0, "a non-negative number"),
    "done": _FLAG,
}
HISTORY = {**dict.fromkeys(("train_loss", "validation_loss", "epoch_seconds"), _NUMBERS)}
HISTORY["stopped_early"] = _FLAG
ARRAYS = ("model", "optimizer", "best")  # the parts of a state that are name -> array


def _check_fields(where: str, given: dict, expected: dict, exact: bool) -> None:
    if exact and set(given) - set(expected):
        raise ValueError(f"{where}has unexpected keys {sorted(set(given) - set(expected))}")
    for name, (check, description) in expected.items():
        if name not in given or not check(given[name]):
            got = f"got {given[name]!r:.80}" if name in given else "it is missing"
            raise ValueError(f"{where}{name!r} must be {description}, {got}")


def check_state(state: dict[str, Any]) -> None:
    """Raise ValueError naming the first field of a saved run's ``state`` (as
    `TrainingRun.state_dict` gives it; its arrays apart) that is missing, of the wrong
    kind, or at odds with another: each list of the history has one entry per epoch
    done (the validation losses none, when the run has no validation)."""
    _check_fields("", state, STATE, exact=False)
    history, epoch = state["history"], state["epoch"]
    _check_fields("history ", history, HISTORY, exact=True)
    if history["stopped_early"] and not state["done"]:
        raise ValueError("history 'stopped_early' is true but 'done' is false")
    for name in ("train_loss", "epoch_seconds", "validation_loss"):
        if len(history[name]) != epoch and (name != "validation_loss" or history[name]):
            entries = f"{len(history[name])} entries"
            raise ValueError(f"history {name!r} has {entries} for 'epoch' {epoch}: one an epoch")
    for name in ("rng", "backend_rng"):
        try:
            np.random.default_rng().bit_generator.state = state[name]
        except Exception:  # ValueError, TypeError, KeyError, OverflowError
            raise ValueError(f"{name!r} is not a random generator state") from None


@dataclass
class TrainingRun:
    """One run of `fit`, and what a checkpoint saves of it: ``epoch`` epochs done, and
    ``batch`` batches of the next (after a Ctrl-C), whose per-sample losses sum to
    ``loss_sum``, in ``seconds``. ``rng`` draws the batch order; ``best`` holds the
    parameters of the best validation epoch so far (with ``config.best_epoch``);
    ``validation_loss()`` (None: the run has no validation) is called after each epoch."""

    model: nn.Module
    optimizer: optim.Optimizer
    schedule: optim.Schedule
    rng: np.random.Generator
    config: TrainingConfig
    count: int  # training samples
    description: str
    validation_loss: Callable[[], float] | None = None
    checkpoint: Any = None
    history: History = field(default_factory=History)
    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    best: dict[str, np.ndarray] | None = None
    key_base: int = field(init=False)  # of the steps' keys (`step_key`)

    POSITION = ("epoch", "batch", "loss_sum", "seconds")  # where a run stands

    def __post_init__(self) -> None:
        # From a copy of the generator as the run is made (fresh, before any checkpoint
        # is restored): the batch order stays as it was, and a resumed run gets the same.
        self.key_base = int(copy.deepcopy(self.rng).integers(2**31))

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.count / self.config.batch_size)

    @property
    def done(self) -> bool:
        return self.history.stopped_early or self.epoch >= self.config.epochs

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: its position (`POSITION`), ``done``, the
        settings that may change on resume, the history, the random generators' and the
        schedule's states (all JSON-able), and the arrays of the model, the optimiser
        and the best epoch (`ARRAYS`: name -> array each)."""
        return {
            **{name: getattr(self, name) for name in self.POSITION},
            "done": self.done,
            "settings": self.config.resumable(),
            "history": asdict(self.history),
            "rng": self.rng.bit_generator.state,
            "backend_rng": self.model.parameters()[0].backend.rng_state(),
            "schedule": self.schedule.state_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best": self.best or {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (`state_dict`'s layout), keeping this run's
        resumable settings (epochs, lr, ...). A state that is malformed, of a position
        this run cannot reach, or whose arrays do not fit, is a ValueError naming the
        field, and nothing changes."""
        check_state(state)
        self._check_reachable(state)
        config, model, optimizer = self.config, self.model, self.optimizer
        if config.best_epoch and state["history"]["validation_loss"] and not state["best"]:
            raise ValueError("holds no parameters of its best epoch (best/)")
        chosen = {name: getattr(optimizer, name) for name in optimizer.HYPERPARAMETERS}
        model_before, optimizer_before = model.state_dict(), optimizer.state_dict()
        schedule = {**self.schedule.state_dict(), "count": state["schedule"].get("count")}
        try:
            if state["best"]:  # checked by loading them; the last parameters come next
                model.load_state_dict(state["best"])
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for name, value in chosen.items():  # this run's lr, momentum, ...
                setattr(optimizer, name, value)
            self.schedule.load_state_dict(schedule)  # its count; this run's lr, epochs
        except ValueError as error:
            model.load_state_dict(model_before)
            optimizer.load_state_dict(optimizer_before)
            raise ValueError(f"does not fit the model: {error}") from None
        self.best = (state["best"] or None) if config.best_epoch else None
        self.rng.bit_generator.state = state["rng"]
        model.parameters()[0].backend.set_rng_state(state["backend_rng"])
        self.history = History(**state["history"])
        for name in self.POSITION:
            setattr(self, name, state[name])

    def _check_reachable(self, state: dict[str, Any]) -> None:
        """Refuse a state this run could not have reached: more epochs than it trains,
        early stopping without patience, a batch beyond an epoch's, a validation
        history the run would not have."""
        epoch, batch, history = state["epoch"], state["batch"], state["history"]
        epochs = self.config.epochs
        if epoch > epochs or (batch and epoch >= epochs):
            done = f"part-way through epoch {epoch + 1}" if batch else f"{epoch} epochs"
            needed = epoch + 1 if batch else epoch
            raise ValueError(
                f"'epoch' {epoch}: it has trained {done}, beyond --epochs {epochs}: resume "
                f"with --epochs {needed} or more"
            )
        if history["stopped_early"] and not self.config.patience:
            raise ValueError(
                "history 'stopped_early' is true, but this run has no early stopping: the "
                "file was changed or belongs to another program"
            )
        if batch >= self.batches_per_epoch:
            raise ValueError(
                f"'batch' {batch}: beyond an epoch of {self.batches_per_epoch} batches"
            )
        if bool(history["validation_loss"]) != (self.validation_loss is not None and epoch > 0):
            has = "has" if history["validation_loss"] else "has no"
            raise ValueError(f"history 'validation_loss' {has} entries, unlike this run")

    def diverged(self, what: str) -> TrainingDiverged:
        message = f"{self.description} diverged: {what}"
        return TrainingDiverged(message, self.config, self.checkpoint)

    def interrupted(self) -> TrainingInterrupted:
        where = f"epoch {self.epoch + 1}, batch {self.batch} of {self.batches_per_epoch}"
        where = where if self.batch else f"the end of epoch {self.epoch}"
        path = None if self.checkpoint is None else self.checkpoint.path
        saved = f"; its training state is saved in {path}" if path else ""
        return TrainingInterrupted(f"{self.description} stopped at {where}{saved}", path)

    def save(self) -> None:
        """Save to the checkpoint, if any; divergent parameters are never saved."""
        if self.checkpoint is None:
            return
        state = self.state_dict()
        for name, array in state["model"].items():
            if unholdable(array) is not None:
                where = describe_position(self.epoch, self.batch)
                raise self.diverged(f"parameter {name!r} holds NaN or infinite values at {where}")
        self.checkpoint.save(state)

    def step_key(self, epoch: int, batch: int) -> np.ndarray:
        """The key of batch ``batch`` (from 1) of epoch ``epoch`` (from 0): the run's
        ``key_base`` plus the update's number, so that a resumed run gives the same."""
        return np.asarray((self.key_base + epoch * self.batches_per_epoch + batch) % 2**31)

    def train_epoch(self, epoch: int, step, stop, progress: Progress) -> None:
        """The batches of epoch ``epoch`` (from 0) that are not trained yet."""
        epoch_start = self.rng.bit_generator.state  # a fresh dict
        order = batches(self.count, self.config.batch_size, self.rng)
        start, device = time.perf_counter() - self.seconds, self.model.parameters()[0].backend
        progress.start_epoch(epoch + 1, self.batch, len(order))
        for number in range(self.batch + 1, len(order) + 1):
            indices, where = order[number - 1], f"epoch {epoch + 1}, batch {number} of {len(order)}"
            key = tg.Tensor(self.step_key(epoch, number), device=device)
            try:
                value = step(tg.Tensor(indices, device=device), key).item()
            except FloatingPointError as error:  # tg.AnomalyError under --detect-anomaly
                raise self.diverged(f"at {where}: {error}") from None
            if not math.isfinite(value):  # the loss already fetched: no extra cost
                raise self.diverged(f"the training loss became {value} at {where}")
            self.loss_sum += value * len(indices)
            if not math.isfinite(self.loss_sum):  # finite losses, too large to add up
                raise self.diverged(f"the summed training loss overflowed at {where}")
            self.batch, self.seconds = number, time.perf_counter() - start
            progress.batch(epoch + 1, number, value)
            if stop.requested and number < len(order):
                self.rng.bit_generator.state = epoch_start  # to draw the same order again
                self.save()
                raise self.interrupted()

    def end_epoch(self, epoch: int, stop, progress: Progress) -> None:
        """Record epoch ``epoch`` (from 0), evaluate, and save."""
        history = self.history
        history.train_loss.append(self.loss_sum / self.count)
        history.epoch_seconds.append(self.seconds)
        try:
            if self.validation_loss:
                history.validation_loss.append(self.validation_loss())
        except FloatingPointError as error:
            raise self.diverged(f"in the evaluation after epoch {epoch + 1}: {error}") from None
        if history.validation_loss and not math.isfinite(history.validation_loss[-1]):
            loss = history.validation_loss[-1]  # finite parameters can still overflow it
            raise self.diverged(f"the validation loss became {loss} after epoch {epoch + 1}")
        self.schedule.step()  # between compiled steps, as it must be
        since_best = len(history.validation_loss) - (history.best_epoch or 0)
        if self.config.best_epoch and history.validation_loss and since_best == 0:
            self.best = self.model.state_dict()
        history.stopped_early = 0 < self.config.patience <= since_best
        self.epoch, self.batch, self.loss_sum, self.seconds = epoch + 1, 0, 0.0, 0.0
        self.save()
        progress.end_epoch(history.train_loss, history.validation_loss, history.epoch_seconds[-1])
        if stop.requested:  # even when done: the user wants the program to stop
            raise self.interrupted()


def fit(
    model: nn.Module,
    batch_loss: Callable[[tg.Tensor, tg.Tensor], tg.Tensor],
    count: int,
    config: TrainingConfig,
    rng: np.random.Generator,
    description: str,
    validation_loss: Callable[[], float] | None = None,
    checkpoint=None,
) -> History:
    """Train ``model`` on mini-batches of ``count`` samples drawn by ``rng``.

    ``batch_loss(indices, key)``: the mean loss of the samples at ``indices``, an integer
    tensor on the model's device (``key``: a new integer each step, for dropout; in a
    compiled step it must not read values in Python). ``validation_loss()``, called after
    each epoch, gives its validation loss: then ``config.patience`` stops the run after that
    many epochs without a lower one, and with ``config.best_epoch`` the model ends with the
    parameters of the lowest (without it, both are refused: they would do nothing). With
    ``checkpoint``, the run it holds is continued (a finished one is not trained again; one
    that cannot be, `tasks.checkpoint.CheckpointError`) and saved at every epoch end and on
    Ctrl-C.
    """
    if None in (config.epochs, config.batch_size, config.weight_decay):
        raise ValueError(f"fit: {description}: epochs, batch_size or weight_decay unset")
    if validation_loss is None and (given := [n for n in config.VALIDATED if getattr(config, n)]):
        raise ValueError(
            f"fit: without a validation loss, {', '.join(given)} would do nothing ({description})"
        )
    optimizer = config.make_optimizer(model.parameters())
    schedule = config.make_schedule(optimizer)
    run = TrainingRun(
        model, optimizer, schedule, rng, config, count, description, validation_loss, checkpoint
    )
    if checkpoint is not None:
        checkpoint.restore(run)
    if run.done:
        stopped = ", stopped early" if run.history.stopped_early else ""
        note(f"{description}: already trained ({run.epoch} epochs{stopped}): not trained again")
    else:
        step = make_step(model, optimizer, batch_loss, config)
        progress = Progress(description, config.epochs, run.epoch, config.progress)
        with _stop_on_ctrl_c() as stop:
            while not run.done:
                run.train_epoch(run.epoch, step, stop, progress)
                run.end_epoch(run.epoch, stop, progress)
        progress.close()
    if run.best is not None:
        model.load_state_dict(run.best)
    return run.history
