"""What the experiments do alike with the settings of a run (`tasks.experiment.Settings`):
check that a model fits in the device's memory (`check_fits`, `TooLarge`), make it
seeded (`make_model`), train it with the run's checkpoint and identity (`train`),
evaluate it, and report its training (`training_figures`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

import tinygrad_ee as tg
from tinygrad_ee import nn

from .checkpoint import FOLDER, Checkpoint
from .experiment import Settings
from .training import History, TrainingConfig, fit


class TooLarge(ValueError):
    """Settings whose parameters and activations cannot fit in the device's memory."""


def check_fits(settings, setting: str, parameters: int, activations: int) -> None:
    """Raise TooLarge naming ``setting`` (such as "--hidden-size 1000000000") when its
    ``parameters`` (held with their gradients and optimiser state: 3 times with SGD, 4
    with Adam) and ``activations`` (what a batch or an evaluation keeps, at least) need
    more memory than the device of ``settings`` (a `tasks.experiment.Settings`) has: a
    lower bound."""
    memory = tg.get_backend(settings.device).memory_bytes()
    copies = 4 if settings.training.optimizer == "adam" else 3
    needed = (copies * parameters + activations) * np.dtype(settings.dtype).itemsize
    if memory is not None and needed > memory:
        where = f"GPU {settings.device}" if settings.device.startswith("cuda") else "this machine"
        raise TooLarge(
            f"{setting}: {parameters:,} parameters and {activations:,} activations need at "
            f"least {byte_size(needed)} in {settings.dtype} (values, gradients and optimiser "
            f"state), more than the {byte_size(memory)} of {where}; choose a smaller size"
        )


def byte_size(count: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024:
            return f"{count:.3g} {unit}"
        count /= 1024
    return f"{count:.3g} PiB"


def make_model(settings: Settings, make: Callable[..., nn.Module], *sizes, **options) -> nn.Module:
    """``make(*sizes, **options)`` on the run's device and dtype, initialised from its seed."""
    nn.seed(settings.seed, settings.device)
    return make(*sizes, **options, device=settings.device, dtype=settings.dtype)


def train(settings, model, batch_loss, count, run, description, validation_loss=None, **identity):
    """`tasks.training.fit` -> History, with the run's training settings, the batch order
    drawn from its seed, and the checkpoint ``OUT/resume/<run>.npz``, identified by
    ``identity`` (model settings, data fingerprint) and the run's settings."""
    identity = {"run": run, "experiment": settings.experiment, **identity, "dtype": settings.dtype}
    identity.update(settings.training.identity(), seed=settings.seed, quick=settings.quick)
    path, rng = settings.out / FOLDER / f"{run}.npz", np.random.default_rng(settings.seed)
    checkpoint = Checkpoint(path, identity, device=settings.device, resume=settings.resume)
    config = settings.training
    return fit(model, batch_loss, count, config, rng, description, validation_loss, checkpoint)


def training_figures(history: History, config: TrainingConfig) -> dict[str, Any]:
    """A run's per-epoch figures for metrics.json, and the epoch whose parameters `fit`
    left in the model (with its validation loss, if any)."""
    selected = (config.best_epoch and history.best_epoch) or len(history.train_loss)
    losses = history.validation_loss
    return {
        "epochs_run": len(history.train_loss),
        "stopped_early": history.stopped_early,
        "selected_epoch": selected,
        "validation_loss": losses[selected - 1] if losses else None,
        "validation_loss_per_epoch": losses,
        "train_loss_per_epoch": history.train_loss,
        "epoch_seconds": history.epoch_seconds,
    }


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' dtypes, shapes and bytes: which data a run was trained on."""
    digest = hashlib.sha256()
    for array in map(np.ascontiguousarray, arrays):
        digest.update(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()[:16]


def evaluate(logits, inputs: tg.Tensor, truth: np.ndarray, size: int = 1000):
    """(mean cross-entropy, accuracy, predicted classes) of ``logits(batch)`` (N, K)
    over the rows of ``inputs`` against the classes ``truth`` (N,), computed in batches
    of ``size`` rows without recording."""
    with tg.no_grad():
        batches = (inputs[start : start + size] for start in range(0, len(truth), size))
        scores = np.concatenate([logits(b).log_softmax(axis=1).numpy() for b in batches])
    predicted = scores.argmax(axis=1)
    picked = scores[np.arange(len(truth)), truth]
    return float(-picked.mean()), float((predicted == truth).mean()), predicted
