"""What an experiment is (`Experiment`), the typed settings of one run (`Common`,
`Settings`: plain data, built once by the command line; nothing below it sees
argparse), and what experiments do alike with them: a seeded model (`make_model`),
training with the run's checkpoint and its identity (`train`), evaluation, the figures
of a training run, the recipe line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_ee as tg
from tinygrad_ee import nn

from .checkpoint import FOLDER, Checkpoint
from .options import as_arguments, option, positive_int, seed
from .training import History, TrainingConfig, fit

QUICK_EPOCHS = 2
RECIPES = ("modern", "original")  # each experiment's defaults: Experiment.recipes


@dataclass
class Common:
    """The options of every experiment command."""

    recipe: str = option(
        "modern", "the defaults below: modern (chosen on validation data) or the original "
        "experiment's (docs/results.md)", choices=RECIPES,
    )  # fmt: skip
    device: str = option("cpu", "cpu, cuda or cuda:N", resumable=True)
    data: Path | None = option(
        None, "an HDF5 file in the experiment's layout, or a folder holding data1.h5, data2.h5, "
        "data3.h5 (for `all`: such a folder) (default: the embedded data)", parse=Path,
    )  # fmt: skip
    dtype: str = option("float32", "", choices=["float32", "float64"])
    seed: int = option(
        0, "random seed, 0 to 2**64 - 1: initialisation, batch order, embedded data", parse=seed
    )
    out: Path | None = option(
        None, "output folder (default: runs/<experiment>-<timestamp>)", parse=Path
    )
    quick: bool = option(False, f"{QUICK_EPOCHS} epochs on a subset of the data: a smoke run")
    resume: bool = option(False, "continue the run stopped in --out (needed); see below")
    detect_anomaly: bool = option(
        False, "stop at the first op making a NaN or infinity, naming it (slower: checks each op)",
        resumable=True,
    )  # fmt: skip
    blas_threads: int = option(
        1, "threads for NumPy's BLAS (more than free cores slow these small products)",
        parse=positive_int, resumable=True,
    )  # fmt: skip


@dataclass(kw_only=True)
class Settings(Common):
    """Everything one experiment run takes: the common options (``out`` its folder,
    ``data`` its file or None), its training settings and its own options."""

    experiment: str  # its name
    out: Path
    training: TrainingConfig
    options: Any


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


@dataclass(frozen=True)
class Experiment:
    """One experiment: its command, the file it reads from a --data folder, its
    options, its recipes (the defaults of each --recipe), and what it does."""

    name: str
    data_file: str
    description: str  # for --help; its first line is the summary
    options: type  # a dataclass of `option` fields
    recipes: dict[str, tuple[TrainingConfig, Any]]  # recipe -> (training, options)
    run: Callable[[Settings], dict]  # train, evaluate, plot: the figures of metrics.json
    report: Callable[[dict], str]  # report.md, from the metrics
    summary: Callable[[dict], str]  # one line, for the terminal and `all`'s report
    validated: bool = True  # False: no validation split (TrainingConfig.VALIDATED refused)


def describe_recipe(settings: Settings, experiment: Experiment) -> str:
    """The recipe of a run, for report.md and metrics.json: its training settings and
    the options that the experiment's recipes set differently, as command-line options."""
    modern, original = (asdict(experiment.recipes[name][1]) for name in RECIPES)
    values = {
        k: v for k, v in asdict(settings.training).items() if k not in ("progress", "compile")
    }
    values.update({k: v for k, v in asdict(settings.options).items() if modern[k] != original[k]})
    return f"--recipe {settings.recipe} {as_arguments(values)}"


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
