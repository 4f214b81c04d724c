"""What an experiment is, the settings it runs with, and what experiments share.

An `Experiment` is a command of ``python -m tasks``: its own options (a dataclass of
`tasks.options.option` fields), its training defaults, and ``run(settings) -> metrics``,
``report(metrics) -> markdown`` and ``summary(metrics) -> one line``. The command line
builds one `Settings` per run from what it was given; nothing below it sees argparse.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_ee as tg

from .checkpoint import FOLDER, Checkpoint
from .options import option, positive_int, seed
from .training import TrainingConfig

QUICK_EPOCHS = 2


@dataclass
class Common:
    """The options of every experiment command."""

    device: str = option("cpu", "cpu, cuda or cuda:N")
    data: Path | None = option(
        None,
        "an HDF5 file in the experiment's layout, or a folder holding data1.h5, data2.h5, "
        "data3.h5 (for `all`: such a folder) (default: the embedded data)",
        parse=Path,
    )
    dtype: str = option("float32", "", choices=["float32", "float64"])
    seed: int = option(
        0,
        "random seed, 0 to 2**64 - 1: initialisation, batch order, and which embedded "
        "patches and activity series are made",
        parse=seed,
    )
    out: Path | None = option(
        None, "output folder (default: runs/<experiment>-<timestamp>)", parse=Path
    )
    quick: bool = option(
        False, f"{QUICK_EPOCHS} epochs on a subset of the data: a smoke run in seconds"
    )
    resume: bool = option(
        False, "continue the run stopped in --out (needed) from its checkpoints; see below"
    )
    detect_anomaly: bool = option(
        False,
        "stop at the first op that makes a NaN or infinity, forward or backward, naming it "
        "(slower: every op's result is checked)",
    )
    blas_threads: int = option(
        1,
        "threads for NumPy's BLAS (these models' matrices are small, and more threads than "
        "free cores make every product many times slower)",
        parse=positive_int,
    )


@dataclass(kw_only=True)
class Settings(Common):
    """Everything one experiment run takes: the common options (``out`` its folder,
    ``data`` its file or None), its training settings and its own options."""

    out: Path
    training: TrainingConfig
    options: Any

    def checkpoint(self, run: str, **identity: Any) -> Checkpoint:
        """The checkpoint of the training run ``run``, ``OUT/resume/<run>.npz``, identified
        by ``identity`` (model settings, data fingerprint) and these settings."""
        identity = {"run": run, **identity, "dtype": self.dtype, "seed": self.seed}
        identity.update(batch_size=self.training.batch_size, quick=self.quick)
        path = self.out / FOLDER / f"{run}.npz"
        return Checkpoint(path, identity, device=self.device, resume=self.resume)


@dataclass(frozen=True)
class Experiment:
    """One experiment: its command, the file it reads from a --data folder, its
    options and training defaults, and what it does."""

    name: str
    data_file: str
    description: str  # for --help; its first line is the summary
    options: type  # a dataclass of `option` fields
    training: TrainingConfig
    run: Callable[[Settings], dict]  # train, evaluate, plot: the figures of metrics.json
    report: Callable[[dict], str]  # report.md, from the metrics
    summary: Callable[[dict], str]  # one line, for the terminal and `all`'s report


def fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of arrays' dtypes, shapes and bytes: which data a run was trained on."""
    digest = hashlib.sha256()
    for array in map(np.ascontiguousarray, arrays):
        digest.update(f"{array.dtype.str}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()[:16]


def rows(data: tg.Tensor, indices: np.ndarray | tg.Tensor) -> tg.Tensor:
    """The rows of a device tensor at ``indices`` (host indices, or a tensor of them on
    the data's device, as in a training step): a gather on the device."""
    if not isinstance(indices, tg.Tensor):
        indices = tg.Tensor(indices, device=data.device)
    return data[indices]


def in_batches(fn: Callable[[np.ndarray], tg.Tensor], count: int, size: int = 1000) -> np.ndarray:
    """``fn(indices).numpy()`` over consecutive batches of ``range(count)``, concatenated,
    without recording."""
    with tg.no_grad():
        parts = [fn(np.arange(i, min(i + size, count))).numpy() for i in range(0, count, size)]
    return np.concatenate(parts)


def cross_entropy_and_accuracy(log_probs: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of log-probabilities (N, K) against classes (N,)."""
    picked = log_probs[np.arange(len(truth)), truth]
    return float(-picked.mean()), float((log_probs.argmax(axis=1) == truth).mean())
