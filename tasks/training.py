"""The training loop shared by the experiments: mini-batches, SGD, progress, timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

import tinygrad_ee as tg
from tinygrad_ee import nn, optim


@dataclass
class TrainingConfig:
    """What every experiment's training takes: SPEC.md gives each experiment's values."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    clip: float | None = None  # max global gradient norm; None: no clipping
    progress: bool = True


@dataclass
class History:
    """Per-epoch figures of one training run."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    stopped_early: bool = False


def batches(count: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle of range(count) cut into batches (the last may be smaller)."""
    order = rng.permutation(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def fit(
    model: nn.Module,
    batch_loss: Callable[[np.ndarray], tg.Tensor],
    count: int,
    config: TrainingConfig,
    rng: np.random.Generator,
    description: str,
    after_epoch: Callable[[int, History], bool] | None = None,
) -> History:
    """Train ``model`` with SGD-momentum on mini-batches of ``count`` samples.

    ``batch_loss(indices)`` returns the mean loss of the samples at ``indices``.
    ``after_epoch(epoch, history)`` may record validation figures in ``history`` and
    returns True to stop early.
    """
    optimizer = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    history = History()
    epochs = tqdm(range(config.epochs), desc=description, unit="epoch", disable=not config.progress)
    for epoch in epochs:
        start = time.perf_counter()
        total = 0.0
        steps = tqdm(
            batches(count, config.batch_size, rng),
            desc=f"epoch {epoch + 1}",
            unit="batch",
            leave=False,
            disable=not config.progress,
        )
        for indices in steps:
            loss = batch_loss(indices)
            optimizer.zero_grad()
            loss.backward()
            if config.clip:
                optim.clip_grad_norm(model.parameters(), config.clip)
            optimizer.step()
            value = loss.item()
            total += value * len(indices)
            steps.set_postfix(loss=f"{value:.4f}")
        history.train_loss.append(total / count)
        history.epoch_seconds.append(time.perf_counter() - start)
        stop = after_epoch(epoch, history) if after_epoch else False
        postfix = {"loss": f"{history.train_loss[-1]:.4f}"}
        if history.validation_loss:
            postfix["val"] = f"{history.validation_loss[-1]:.4f}"
        epochs.set_postfix(postfix)
        if stop:
            history.stopped_early = True
            break
    return history


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


def rows(data: tg.Tensor, indices: np.ndarray) -> tg.Tensor:
    """The rows of a device tensor at host ``indices`` (a gather on the device)."""
    return data[tg.Tensor(indices, device=data.device)]
