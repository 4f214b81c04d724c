"""The training loop: epochs of seeded mini-batches, one step per batch (`make_step`,
compiled by default), an evaluation after each epoch; a NaN or infinite loss stops it
(`TrainingDiverged`), and so does Ctrl-C (the first finishes the batch, saves and raises
`TrainingInterrupted`; a second stops at once). `fit` continues the run a checkpoint
(`tasks.checkpoint.Checkpoint`) holds, and saves to it at every epoch end and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from tqdm import tqdm

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

from .data import unholdable
from .options import TrainingConfig


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


def note(text: str) -> None:
    """A message for the user on stderr that does not break the progress bars."""
    tqdm.write(text, file=sys.stderr)


def make_step(model: nn.Module, optimizer: optim.Optimizer, batch_loss, config: TrainingConfig):
    """``step(indices) -> loss``: one update from the samples at ``indices`` (an integer
    tensor on the model's device), compiled unless ``config.compile`` is False."""

    def train_step(indices: tg.Tensor) -> tg.Tensor:
        loss = batch_loss(indices)
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


class Progress:
    """The progress bars (tqdm) of a run: its epochs, and the current epoch's batches."""

    def __init__(self, description: str, epochs: int, done: int, shown: bool) -> None:
        self.description, self.bar = description, {"disable": not shown}
        self.epochs = tqdm(desc=description, total=epochs, initial=done, unit="epoch", **self.bar)

    def start_epoch(self, epoch: int, first: int, total: int) -> None:
        """Epoch ``epoch`` (from 1), of ``total`` batches, starts after batch ``first``."""
        bar = {"desc": f"epoch {epoch}", "leave": False, **self.bar}
        self.batches = tqdm(total=total, initial=first, **bar)

    def batch(self, epoch: int, number: int, loss: float) -> None:
        """Batch ``number`` of epoch ``epoch`` (both from 1) is trained."""
        self.batches.update()
        self.batches.set_postfix(loss=f"{loss:.4f}")

    def end_epoch(self, history: History) -> None:
        self.batches.close()
        losses = {"loss": history.train_loss, "val": history.validation_loss}
        self.epochs.set_postfix({key: f"{v[-1]:.4f}" for key, v in losses.items() if v})
        self.epochs.update()


@dataclass
class TrainingRun:
    """One run of `fit`, and what a checkpoint saves of it: ``epoch`` epochs done, and
    ``batch`` batches of the next (after a Ctrl-C), whose per-sample losses sum to
    ``loss_sum``, in ``seconds``. ``rng`` draws the batch order; ``best`` holds the
    parameters of the best validation epoch so far (with ``config.best_epoch``)."""

    model: nn.Module
    optimizer: optim.Optimizer
    schedule: optim.Schedule
    rng: np.random.Generator
    config: TrainingConfig
    count: int  # training samples
    description: str
    checkpoint: Any = None
    history: History = field(default_factory=History)
    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    best: dict[str, np.ndarray] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.count / self.config.batch_size)

    @property
    def done(self) -> bool:
        return self.history.stopped_early or self.epoch >= self.config.epochs

    def diverged(self, what: str) -> TrainingDiverged:
        message = f"{self.description} diverged: {what}"
        return TrainingDiverged(message, self.config, self.checkpoint)

    def interrupted(self) -> TrainingInterrupted:
        where = f"epoch {self.epoch + 1}, batch {self.batch} of {self.batches_per_epoch}"
        where = where if self.batch else f"the end of epoch {self.epoch}"
        path = None if self.checkpoint is None else self.checkpoint.path
        saved = f"; its training state is saved in {path}" if path else ""
        return TrainingInterrupted(f"{self.description} stopped at {where}{saved}", path)

    def save(self, done: bool) -> None:
        """Save to the checkpoint, if any; divergent parameters are never saved."""
        if self.checkpoint is None:
            return
        for name, array in self.model.state_dict().items():
            if unholdable(array) is not None:
                where = describe_position(self.epoch, self.batch)
                raise self.diverged(f"parameter {name!r} holds NaN or infinite values at {where}")
        self.checkpoint.save(self, done)

    def train_epoch(self, epoch: int, step, stop, progress: Progress) -> None:
        """The batches of epoch ``epoch`` (from 0) that are not trained yet."""
        epoch_start = self.rng.bit_generator.state  # a fresh dict
        order = batches(self.count, self.config.batch_size, self.rng)
        start, device = time.perf_counter() - self.seconds, self.model.parameters()[0].backend
        progress.start_epoch(epoch + 1, self.batch, len(order))
        for number in range(self.batch + 1, len(order) + 1):
            indices, where = order[number - 1], f"epoch {epoch + 1}, batch {number} of {len(order)}"
            try:
                value = step(tg.Tensor(indices, device=device)).item()
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
                self.save(done=False)
                raise self.interrupted()

    def end_epoch(self, epoch: int, validation_loss, stop, progress: Progress) -> None:
        """Record epoch ``epoch`` (from 0), evaluate, and save."""
        history = self.history
        history.train_loss.append(self.loss_sum / self.count)
        history.epoch_seconds.append(self.seconds)
        try:
            if validation_loss:
                history.validation_loss.append(validation_loss())
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
        self.save(done=self.done)
        progress.end_epoch(history)
        if stop.requested:  # even when done: the user wants the program to stop
            raise self.interrupted()


def fit(
    model: nn.Module,
    batch_loss: Callable[[tg.Tensor], tg.Tensor],
    count: int,
    config: TrainingConfig,
    rng: np.random.Generator,
    description: str,
    validation_loss: Callable[[], float] | None = None,
    checkpoint=None,
) -> History:
    """Train ``model`` on mini-batches of ``count`` samples drawn by ``rng``.

    ``batch_loss(indices)``: the mean loss of the samples at ``indices``, an integer
    tensor on the model's device (in a compiled step: it must not read values in
    Python). ``validation_loss()``, called after each epoch, gives its validation loss:
    then ``config.patience`` stops the run after that many epochs without a lower one, and
    with ``config.best_epoch`` the model ends with the parameters of the lowest. With
    ``checkpoint``, the run it holds is continued (a finished one is not trained again;
    one that cannot be, `tasks.checkpoint.CheckpointError`) and saved at every epoch end
    and on Ctrl-C.
    """
    optimizer = config.make_optimizer(model.parameters())
    schedule = config.make_schedule(optimizer)
    run = TrainingRun(model, optimizer, schedule, rng, config, count, description, checkpoint)
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
                run.end_epoch(run.epoch, validation_loss, stop, progress)
        progress.epochs.close()
    if run.best is not None:
        model.load_state_dict(run.best)
    return run.history
