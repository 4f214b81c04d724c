"""The training loop shared by the experiments: mini-batches, SGD, progress, timing,
and the reliability around them:

- divergence: a NaN or infinite batch loss, sum of them or validation loss (or, under
  ``--detect-anomaly``, an op's NaN/inf) stops training with :class:`TrainingDiverged`,
  naming the run, epoch and batch; the divergent state is never written to a checkpoint;
- checkpoints: with a :class:`Checkpoint`, the whole training state is written
  atomically at the end of every epoch (layout: :mod:`tasks.checkpoint`), and a run
  resumed from it ends with exactly the parameters of an uninterrupted run;
- Ctrl-C: the first one finishes the current batch, saves the state (mid-epoch) and
  raises :class:`TrainingInterrupted`; a second one stops at once (the last epoch's
  checkpoint stays).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

from .checkpoint import (
    CheckpointError,
    identity_mismatches,
    read_training_checkpoint,
    restore_training,
    write_training_checkpoint,
)

CHECKPOINT_FOLDER = "resume"  # training checkpoints live in <out>/resume/<run>.npz
# Test-only hook (tests/test_reliability_training.py): "[RUN:]EPOCH:BATCH" makes the
# process send itself a signal (SIGKILL unless TINYGRAD_EE_TEST_KILL_SIGNAL names another,
# e.g. INT) once batch BATCH of epoch EPOCH (both from 1) of run RUN (a checkpoint's file
# stem; any run if left out) has been trained. BATCH 0: at the start of that epoch, right
# after the previous epoch's checkpoint was written. Never set it outside tests.
KILL_AT_VARIABLE = "TINYGRAD_EE_TEST_KILL_AT"
KILL_SIGNAL_VARIABLE = "TINYGRAD_EE_TEST_KILL_SIGNAL"


@dataclass
class TrainingConfig:
    """What every experiment's training takes: SPEC.md gives each experiment's values."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    clip: float | None = None  # max global gradient norm; None: no clipping
    progress: bool = True
    compile: bool = True  # train with a compiled step (tg.compile); False: eager


@dataclass
class History:
    """Per-epoch figures of one training run."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False


@dataclass
class Checkpoint:
    """Where one training run keeps its state, and what must match to resume it.

    ``identity``: JSON-able settings that define the run (a checkpoint whose identity
    differs is refused, naming the keys). ``device``: recorded, and may change on
    resume like epochs, lr, momentum and clip. ``resume``: continue from ``path`` if it
    exists (else start afresh and overwrite it).
    """

    path: Path
    identity: dict[str, Any]
    device: str = "cpu"
    resume: bool = False

    @property
    def run(self) -> str:
        return self.path.stem


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite (or anomaly mode found a NaN/inf)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the state was saved to ``path`` (None: nothing saved)."""

    def __init__(self, message: str, path: Path | None) -> None:
        super().__init__(message)
        self.path = path


def batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle of range(count) cut into batches (the last may be smaller)."""
    order = rng.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' dtypes, shapes and bytes: which data a run was trained on."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def describe_position(epoch: int, batch: int) -> str:
    """Where a checkpoint stands: "end of epoch 2", or "epoch 3, after batch 5"."""
    if batch:
        return f"epoch {epoch + 1}, after batch {batch}"
    return f"end of epoch {epoch}"


def note(text: str) -> None:
    """A message for the user on stderr that does not break the progress bars."""
    tqdm.write(text, file=sys.stderr)


@dataclass
class _Position:
    """Where training stands: ``epoch`` epochs done, plus ``batch`` batches of the next
    one whose losses sum to ``loss_sum`` (per sample) in ``seconds``."""

    epoch: int = 0
    batch: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[_StopRequest]:
    """While training: the first Ctrl-C asks the loop to stop after the current batch;
    the handler then steps aside, so a second Ctrl-C raises KeyboardInterrupt at once."""
    stop = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):  # ignored (e.g. nohup), or set outside Python
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


def _kill_point() -> tuple[str | None, int, int] | None:
    text = os.environ.get(KILL_AT_VARIABLE)
    if not text:
        return None
    *run, epoch, batch = text.split(":")
    return (run[0] if run else None), int(epoch), int(batch)


def _maybe_kill(point, run: str | None, epoch: int, batch: int) -> None:
    """The test-only hook of KILL_AT_VARIABLE."""
    if point is None or (point[0] is not None and point[0] != run) or point[1:] != (epoch, batch):
        return
    name = os.environ.get(KILL_SIGNAL_VARIABLE, "KILL")
    os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


def _hint(config: TrainingConfig) -> str:
    clip = (
        f"a smaller --clip (now {config.clip:g})"
        if config.clip
        else "gradient clipping (e.g. --clip 5)"
    )
    lr = f"a smaller learning rate (e.g. --lr {config.lr / 10:g}, now {config.lr:g})"
    return f"try {clip} or {lr}"


class _Trainer:
    """One run of `fit`: the model, its optimiser, the position, and checkpointing."""

    def __init__(self, model, count, config, rng, description, checkpoint, early_stopping):
        self.model, self.count, self.config, self.rng = model, count, config, rng
        self.description, self.checkpoint = description, checkpoint
        self.early_stopping = early_stopping
        self.optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
        self.backend = model.parameters()[0].backend
        self.history = History()
        self.position = _Position()
        self.saved: str | None = None  # where the last good checkpoint stands, for messages

    # --- checkpoints ------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        config = self.config
        return {
            "epochs": config.epochs,
            "lr": config.lr,
            "momentum": config.momentum,
            "clip": config.clip,
            "device": self.checkpoint.device,
        }

    def resume(self) -> None:
        """Restore everything from the checkpoint; refuse one of another run."""
        path = self.checkpoint.path
        dtype = self.model.parameters()[0].dtype
        meta, model_arrays, optimizer_arrays = read_training_checkpoint(path, dtype)
        mismatches = identity_mismatches(meta["identity"], self.checkpoint.identity)
        if mismatches:
            raise CheckpointError(
                f"{path}: cannot resume: it belongs to a different run ("
                + "; ".join(mismatches)
                + "). Resume with the same settings, or start afresh in another --out"
            )
        if meta["history"]["stopped_early"] and not self.early_stopping:
            raise CheckpointError(
                f"{path}: history 'stopped_early' is true, but this run has no early stopping: "
                "the file was changed or belongs to another program"
            )
        per_epoch = math.ceil(self.count / self.config.batch_size)
        if meta["batch"] >= per_epoch:
            raise CheckpointError(
                f"{path}: stopped after batch {meta['batch']} of an epoch of {per_epoch} batches"
            )
        if meta["batch"] and meta["epoch"] >= self.config.epochs:
            # Its parameters are part-way through an epoch: no run of --epochs ends there.
            needed = meta["epoch"] + 1
            raise CheckpointError(
                f"{path}: stopped part-way through epoch {needed}, beyond --epochs "
                f"{self.config.epochs}: resume with --epochs {needed} or more"
            )
        restore_training(path, model_arrays, optimizer_arrays, self.model, self.optimizer)
        self.rng.bit_generator.state = meta["rng"]
        self.backend.set_rng_state(meta["backend_rng"])
        # lr and momentum may change on resume (e.g. after a divergence): the command's win.
        self.optimizer.lr, self.optimizer.momentum = self.config.lr, self.config.momentum
        self.history = History(**meta["history"])
        self.position = _Position(meta["epoch"], meta["batch"], meta["loss_sum"], meta["seconds"])
        self.saved = self._where(self.position)
        changed = [
            f"{key} {value} (was {meta['settings'].get(key)})"
            for key, value in self.settings().items()
            if meta["settings"].get(key) != value
        ]
        note(
            f"{self.description}: resuming from {path} ({self.saved})"
            + (f" with {', '.join(changed)}" if changed else "")
        )

    @staticmethod
    def _where(position: _Position) -> str:
        return describe_position(position.epoch, position.batch)

    def save(self, position: _Position, done: bool) -> None:
        if self.checkpoint is None:
            return
        model_state = self.model.state_dict()
        for name, array in model_state.items():  # never write divergent parameters
            if not np.isfinite(array).all():
                raise self.diverged(
                    f"parameter {name!r} holds NaN or infinite values at {self._where(position)}"
                )
        write_training_checkpoint(
            self.checkpoint.path,
            {
                "identity": self.checkpoint.identity,
                "settings": self.settings(),
                "epoch": position.epoch,
                "batch": position.batch,
                "loss_sum": position.loss_sum,
                "seconds": position.seconds,
                "done": done,
                "history": dataclasses.asdict(self.history),
                "rng": self.rng.bit_generator.state,
                "backend_rng": self.backend.rng_state(),
            },
            model_state,
            self.optimizer.state_dict(),
        )
        self.saved = self._where(position)

    # --- failures ---------------------------------------------------------------------------
    def diverged(self, what: str) -> TrainingDiverged:
        if self.checkpoint is None:
            kept = "This run writes no checkpoints."
        elif self.saved is None:
            kept = "No checkpoint was written: it diverged before the end of its first epoch."
        else:
            kept = (
                f"The last good checkpoint ({self.saved}) is kept in {self.checkpoint.path}: "
                "add --resume (with the new --lr or --clip) to continue from it."
            )
        return TrainingDiverged(
            f"{self.description} diverged: {what}; {_hint(self.config)}. {kept}"
        )

    def interrupted(self, position: _Position, count: int) -> TrainingInterrupted:
        at = f"epoch {position.epoch + 1}, batch {position.batch} of {count}"
        if position.batch == 0:
            at = f"the end of epoch {position.epoch}"
        if self.checkpoint is None:
            return TrainingInterrupted(f"{self.description} stopped at {at}", None)
        return TrainingInterrupted(
            f"{self.description} stopped at {at}; its training state is saved in "
            f"{self.checkpoint.path}",
            self.checkpoint.path,
        )

    # --- the loop ---------------------------------------------------------------------------
    def run(self, batch_loss, after_epoch) -> History:
        config, model, optimizer, count = self.config, self.model, self.optimizer, self.count
        position = self.position
        if self.history.stopped_early or position.epoch >= config.epochs:
            note(
                f"{self.description}: already trained ({position.epoch} epochs"
                + (", stopped early" if self.history.stopped_early else "")
                + "): not trained again"
            )
            return self.history
        run = self.checkpoint.run if self.checkpoint else None
        kill_at = _kill_point()

        def train_step(indices: tg.Tensor) -> tg.Tensor:
            loss = batch_loss(indices)
            optimizer.zero_grad()
            loss.backward()
            if config.clip:
                optim.clip_grad_norm(model.parameters(), config.clip)
            optimizer.step()
            return loss

        step = tg.compile(train_step) if config.compile else train_step
        epochs = tqdm(
            range(position.epoch, config.epochs),
            initial=position.epoch,
            total=config.epochs,
            desc=self.description,
            unit="epoch",
            disable=not config.progress,
        )
        with _stop_on_ctrl_c() as stop:
            for epoch in epochs:
                _maybe_kill(kill_at, run, epoch + 1, 0)
                epoch_rng = self.rng.bit_generator.state  # a fresh dict: the epoch's start
                order = batches(count, config.batch_size, self.rng)
                first, loss_sum = position.batch, position.loss_sum
                start = time.perf_counter() - position.seconds
                steps = tqdm(
                    order[first:],
                    initial=first,
                    total=len(order),
                    desc=f"epoch {epoch + 1}",
                    unit="batch",
                    leave=False,
                    disable=not config.progress,
                )
                for number, indices in enumerate(steps, start=first + 1):
                    where = f"epoch {epoch + 1}, batch {number} of {len(order)}"
                    try:
                        value = step(tg.Tensor(indices, device=self.backend)).item()
                    except FloatingPointError as error:  # tg.AnomalyError under --detect-anomaly
                        raise self.diverged(f"at {where}: {error}") from None
                    if not math.isfinite(value):  # the loss already computed: no extra cost
                        raise self.diverged(f"the training loss became {value} at {where}")
                    loss_sum += value * len(indices)
                    if not math.isfinite(loss_sum):  # finite losses, too large to add up
                        raise self.diverged(f"the summed training loss overflowed at {where}")
                    steps.set_postfix(loss=f"{value:.4f}")
                    _maybe_kill(kill_at, run, epoch + 1, number)
                    if stop.requested and number < len(order):
                        self.rng.bit_generator.state = epoch_rng
                        position = _Position(epoch, number, loss_sum, time.perf_counter() - start)
                        self.save(position, done=False)
                        raise self.interrupted(position, len(order))
                self.history.train_loss.append(loss_sum / count)
                self.history.epoch_seconds.append(time.perf_counter() - start)
                try:
                    wants_stop = bool(after_epoch(epoch, self.history)) if after_epoch else False
                except FloatingPointError as error:
                    what = f"in the evaluation after epoch {epoch + 1}: {error}"
                    raise self.diverged(what) from None
                validation = self.history.validation_loss
                if validation and not math.isfinite(validation[-1]):  # after the last step
                    what = f"the validation loss became {validation[-1]} after epoch {epoch + 1}"
                    raise self.diverged(what)
                stop_early = self.early_stopping and wants_stop
                self.history.stopped_early = stop_early
                position = _Position(epoch + 1)
                done = stop_early or epoch + 1 >= config.epochs
                self.save(position, done)
                postfix = {"loss": f"{self.history.train_loss[-1]:.4f}"}
                if self.history.validation_loss:
                    postfix["val"] = f"{self.history.validation_loss[-1]:.4f}"
                epochs.set_postfix(postfix)
                if stop.requested:  # even when done: the user wants the program to stop
                    raise self.interrupted(position, len(order))
                if stop_early:
                    break
        return self.history


def run_checkpoint(
    out: Path, args: Any, config: TrainingConfig, run: str, **identity: Any
) -> Checkpoint:
    """The checkpoint of one run of an experiment, ``<out>/resume/<run>.npz``, identified by
    ``identity`` (experiment, model settings, data fingerprint) and the command's dtype,
    seed, batch size and --quick; it is resumed when the command has --resume."""
    return Checkpoint(
        path=out / CHECKPOINT_FOLDER / f"{run}.npz",
        identity={
            "run": run,
            **identity,
            "dtype": args.dtype,
            "seed": args.seed,
            "batch_size": config.batch_size,
            "quick": bool(args.quick),
        },
        device=args.device,
        resume=bool(getattr(args, "resume", False)),
    )


def fit(
    model: nn.Module,
    batch_loss: Callable[[np.ndarray], tg.Tensor],
    count: int,
    config: TrainingConfig,
    rng: np.random.Generator,
    description: str,
    after_epoch: Callable[[int, History], bool] | None = None,
    checkpoint: Checkpoint | None = None,
    early_stopping: bool = False,
) -> History:
    """Train ``model`` with SGD-momentum on mini-batches of ``count`` samples.

    ``batch_loss(indices)`` returns the mean loss of the samples at ``indices`` (an
    integer tensor on the model's device: the step it is part of is compiled unless
    ``config.compile`` is False, so it must not read values in Python).
    ``after_epoch(epoch, history)`` may record validation figures in ``history`` and
    returns True to stop early, which it does only with ``early_stopping`` (and a
    checkpoint saying that a run without it stopped early is refused). ``rng`` draws
    the batch order (and is advanced exactly as in an uninterrupted run when resuming).

    With ``checkpoint``, the state is saved at the end of every epoch and on Ctrl-C;
    with ``checkpoint.resume`` and an existing file, training continues from it (a run
    that had finished is not trained again: its parameters and history are loaded).

    Raises :class:`TrainingDiverged` when a batch loss, the epoch's sum of them or the
    validation loss recorded by ``after_epoch`` is NaN or infinite (or an op
    made one under ``tg.detect_anomaly()``), :class:`TrainingInterrupted` on Ctrl-C,
    and :class:`~tasks.checkpoint.CheckpointError` for a checkpoint that cannot be
    resumed (nothing is changed then).
    """
    trainer = _Trainer(model, count, config, rng, description, checkpoint, early_stopping)
    if checkpoint is not None and checkpoint.resume and checkpoint.path.exists():
        trainer.resume()
    return trainer.run(batch_loss, after_epoch)


def in_batches(
    fn: Callable[[np.ndarray], tg.Tensor], count: int, batch_size: int = 1000
) -> np.ndarray:
    """Concatenate ``fn(indices).numpy()`` over consecutive batches, without recording."""
    with tg.no_grad():
        parts = [
            fn(np.arange(start, min(start + batch_size, count))).numpy()
            for start in range(0, count, batch_size)
        ]
    return np.concatenate(parts)


def quick_subset(count: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random ``size``-sample subset (all if count <= size):
    what --quick trains on. Random, so a file sorted by class keeps every class."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def cross_entropy_and_accuracy(log_probs: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of log-probabilities (N, K) against classes (N,)."""
    picked = log_probs[np.arange(len(truth)), truth]
    return float(-picked.mean()), float((log_probs.argmax(axis=1) == truth).mean())


def rows(data: tg.Tensor, indices: np.ndarray | tg.Tensor) -> tg.Tensor:
    """The rows of a device tensor at ``indices`` (host indices, or a tensor of them on
    the data's device, as in a compiled step): a gather on the device."""
    if not isinstance(indices, tg.Tensor):
        indices = tg.Tensor(indices, device=data.device)
    return data[indices]
