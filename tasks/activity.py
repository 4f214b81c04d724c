"""Experiment 3: activity classification with RNN, LSTM and GRU cells.

Writes: validation cross-entropy per epoch for each cell, train and test accuracy,
train and test confusion matrices with class names, and a comparison table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np
from tinygrad_ee.models import CELLS, SequenceClassifier
from tinygrad_ee.models.recurrent import INITS

import tinygrad_ee as tg

from . import plots
from .data import ActivityData, default_activity, load_activity, require_rows
from .data.checks import problem
from .data.preprocessing import quick_subset, split_validation
from .experiment import Experiment, Settings
from .files import save_model
from .options import open_unit_interval, option, positive, positive_int
from .shared import check_fits, evaluate, fingerprint, make_model, train, training_figures
from .training import TrainingConfig

MIN_VALIDATION = 50  # series: fewer make the validation loss a noisy guide


@dataclass
class Options:
    """The activity classifiers' own options."""

    cell: str = option("all", "recurrent cell", choices=[*CELLS, "all"])
    recurrent_size: int = option(128, "recurrent units", parse=positive_int)
    init: str = option("orthogonal", "the recurrent weights' start", choices=INITS)
    standardize: bool = option(
        True, "standardise the inputs per channel (training split's mean and deviation)",
        action=argparse.BooleanOptionalAction,
    )  # fmt: skip
    validation_fraction: float = option(
        0.1, "of the training series held out for validation", parse=open_unit_interval
    )
    rnn_lr_scale: float = option(
        1.0, "the vanilla RNN's learning rate, as a multiple of --lr", parse=positive,
    )  # fmt: skip


def _splits(settings: Settings) -> tuple[ActivityData, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The data, and its train, validation (a seeded fraction of trX) and test splits."""
    data = load_activity(settings.data) if settings.data else default_activity(seed=settings.seed)
    if settings.quick:
        keep = quick_subset(len(data.train_y), 320, settings.seed)
        data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
        keep = quick_subset(len(data.test_y), 160, settings.seed)
        data.test_x, data.test_y = data.test_x[keep], data.test_y[keep]
    why = "training needs (one series to train on, one held out for validation)"
    require_rows(settings.data, "trX", len(data.train_y), 2, why)
    fraction = settings.options.validation_fraction
    train, validation = split_validation(len(data.train_y), fraction, seed=settings.seed)
    return data, {
        "train": (data.train_x[train], data.train_y[train]),
        "validation": (data.train_x[validation], data.train_y[validation]),
        "test": (data.test_x, data.test_y),
    }


def _check_sizes(settings: Settings, cells: list[str], train_x: np.ndarray) -> None:
    (count, steps, channels), size = train_x.shape, settings.options.recurrent_size
    for cell in cells:
        gates, setting = CELLS[cell].gates, f"--recurrent-size {size} ({cell})"
        cell_alone = (channels + size) * gates * size + gates * size
        # the gates and states of every step of a batch, kept for the backward pass
        batch = min(settings.training.batch_size, count) * steps * (gates + 1) * size
        check_fits(settings, setting, cell_alone, batch)


def _train(settings: Settings, cell: str, data: ActivityData, splits: dict, tensors: dict):
    """One cell's classifier, trained: (model, history, scores), where ``scores(split)``
    gives (cross-entropy, accuracy, predicted classes)."""
    o, channels = settings.options, data.train_x.shape[2]
    model = make_model(
        settings, SequenceClassifier, cell, channels, data.num_classes, o.recurrent_size,
        init=o.init, standardize=o.standardize,
    )  # fmt: skip
    if o.standardize:
        try:
            model.fit_standardization(splits["train"][0])  # the training split only
        except ValueError as error:  # values the run's dtype cannot standardise
            where, cure = (
                settings.data or "the embedded data",
                "--no-standardize or --dtype float64",
            )
            text = str(error).removeprefix("fit_standardization: ")
            raise problem(where, "trX", f"{text} (--standardize; {cure} avoid it)") from None

    def scores(split: str):
        return evaluate(model.logits, tensors[split][0], splits[split][1], 256)

    x, y = tensors["train"]
    if cell == "rnn" and o.rnn_lr_scale != 1:
        lr = settings.training.lr * o.rnn_lr_scale
        settings = replace(settings, training=replace(settings.training, lr=lr))
    identity = {"data": fingerprint(*splits["train"], *splits["validation"]), "cell": cell}
    identity.update(recurrent_size=o.recurrent_size, init=o.init, standardize=o.standardize)
    history = train(
        settings,
        model,
        lambda idx, key: model.loss(x[idx], y[idx]),
        x.shape[0],
        f"activity_{cell}",
        f"activity {cell}",
        lambda: scores("validation")[0],
        **identity,
    )
    return model, history, scores


def _cell(settings: Settings, cell: str, data: ActivityData, splits: dict, tensors: dict) -> dict:
    """Train one cell, save it, and plot its confusion matrices: its metrics."""
    model, history, scores = _train(settings, cell, data, splits, tensors)
    save_model(settings.out / f"activity_{cell}.npz", model)
    entry = {"cell": cell, **training_figures(history, settings.training)}
    entry.update(validation_accuracy=scores("validation")[1], checkpoint=f"activity_{cell}.npz")
    for split in ("train", "test"):
        _, entry[f"{split}_accuracy"], predicted = scores(split)
        matrix = np.zeros((data.num_classes,) * 2, dtype=np.int64)
        np.add.at(matrix, (splits[split][1], predicted), 1)  # [truth, predicted]
        entry[f"{split}_confusion"] = matrix.tolist()
        title = f"{cell.upper()} {split} ({entry[f'{split}_accuracy']:.1%})"
        path = settings.out / f"confusion_{cell}_{split}.png"
        plots.confusion_matrix(path, matrix, data.class_names, title)
    return entry


def run(settings: Settings) -> dict:
    """Train, evaluate and plot; returns the figures of metrics.json."""
    data, splits = _splits(settings)
    counts = (len(splits[name][1]) for name in ("train", "validation"))
    settings.training, rules = settings.training.for_data(*counts)
    cells = list(CELLS) if settings.options.cell == "all" else [settings.options.cell]
    _check_sizes(settings, cells, splits["train"][0])
    device, dtype = settings.device, settings.dtype
    tensors = {
        name: (tg.Tensor(x, device=device, dtype=dtype), tg.Tensor(y, device=device))
        for name, (x, y) in splits.items()
    }
    results = [_cell(settings, cell, data, splits, tensors) for cell in cells]
    curves = {r["cell"].upper(): r["validation_loss_per_epoch"] for r in results}
    path, title = settings.out / "validation_loss.png", "validation cross-entropy"
    plots.curves(path, curves, title, "epoch", "cross-entropy (nats)")
    return {
        "class_names": data.class_names,
        "samples": {name: int(len(y)) for name, (_, y) in splits.items()},
        "steps": int(data.train_x.shape[1]),
        "channels": int(data.train_x.shape[2]),
        "clip": settings.training.clip,
        "rules": rules,
        "cells": results,
        "figures": ["validation_loss.png"]
        + [f"confusion_{r['cell']}_{split}.png" for r in results for split in ("train", "test")],
        "checkpoints": [r["checkpoint"] for r in results],
    }


def report(metrics: dict) -> str:
    samples = metrics["samples"]
    lines = [
        "# Activity classification",
        "",
        f"{samples['train']} training, {samples['validation']} validation and "
        f"{samples['test']} test series of {metrics['steps']} steps x {metrics['channels']} "
        f"channels; classes: {', '.join(metrics['class_names'])}.",
        "",
        "![validation cross-entropy](validation_loss.png)",
        "",
        "| cell | epochs | selected epoch | validation cross-entropy | train accuracy "
        "| test accuracy | seconds per epoch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if samples["validation"] < MIN_VALIDATION:
        lines[4:4] = [
            f"**Only {samples['validation']} validation series**: too few to choose an epoch "
            "or stop on (`--validation-fraction` sets the split; see the recipe below).",
            "",
        ]
    for r in metrics["cells"]:
        seconds = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
        lines.append(
            f"| {r['cell'].upper()} | {r['epochs_run']} | {r['selected_epoch']} | "
            f"{r['validation_loss']:.3f} | {r['train_accuracy']:.1%} | {r['test_accuracy']:.1%} "
            f"| {seconds:.1f} |"
        )
    lines.append("")
    for cell in (r["cell"] for r in metrics["cells"]):
        train, test = (f"![{cell} {s}](confusion_{cell}_{s}.png)" for s in ("train", "test"))
        lines.append(f"{train} {test}")
    return "\n".join(lines) + "\n"


def summary(metrics: dict) -> str:
    parts = [
        f"{r['cell'].upper()} test accuracy {r['test_accuracy']:.1%}" for r in metrics["cells"]
    ]
    return "activity " + ", ".join(parts) + f" ({metrics['seconds']:.0f} s)"


# clip: vanilla RNNs explode without it on this task. The modern recipe's length, batch
# size and selection follow the data's size (TrainingConfig.for_data; docs/results.md).
ORIGINAL = TrainingConfig(epochs=50, batch_size=32, lr=0.1, momentum=0.85, clip=5.0)
MODERN = TrainingConfig(
    updates=2500, lr=1e-3, momentum=0.85, clip=1.0, optimizer="adam", schedule="cosine",
    warmup=2, patience=10, best_epoch=True, min_validation=MIN_VALIDATION,
)  # fmt: skip
RECIPES = {
    "modern": (MODERN, Options(rnn_lr_scale=0.3)),
    "original": (ORIGINAL, Options(init="xavier", standardize=False)),
}
EXPERIMENT = Experiment("activity", "data3.h5", __doc__, Options, RECIPES, run, report, summary)
