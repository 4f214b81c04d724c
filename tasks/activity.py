"""Experiment 3: activity classification with RNN, LSTM and GRU cells.

Writes: validation cross-entropy per epoch for each cell, train and test accuracy,
train and test confusion matrices with class names, and a comparison table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import tinygrad_ee as tg
from models import CELLS, SequenceClassifier
from tinygrad_ee import nn

from . import plots
from .checkpoint import save_model
from .data import load_activity, require_rows, split_validation
from .default_data import default_activity
from .memory import check_fits
from .options import positive_int
from .training import (
    TrainingConfig,
    cross_entropy_and_accuracy,
    fingerprint,
    fit,
    in_batches,
    quick_subset,
    rows,
    run_checkpoint,
)

NAME = "activity"
OPTIONS = ("cell", "recurrent_size")
# clip: the max global gradient norm (--clip, 0 for none); vanilla RNNs explode without it.
DEFAULTS = {"epochs": 50, "batch_size": 32, "lr": 0.1, "momentum": 0.85, "clip": 5.0}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("activity")
    group.add_argument(
        "--cell", choices=[*CELLS, "all"], default="all", help="recurrent cell (default: all)"
    )
    group.add_argument(
        "--recurrent-size", type=positive_int, default=128, help="recurrent units (default: 128)"
    )


def _confusion(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def run(args: argparse.Namespace, config: TrainingConfig, out: Path) -> dict:
    data = load_activity(args.data) if args.data else default_activity(seed=args.seed)
    if args.quick:
        keep = quick_subset(len(data.train_y), 320, args.seed)
        data.train_x, data.train_y = data.train_x[keep], data.train_y[keep]
        keep = quick_subset(len(data.test_y), 160, args.seed)
        data.test_x, data.test_y = data.test_x[keep], data.test_y[keep]
    require_rows(
        args.data,
        "trX",
        len(data.train_y),
        2,
        "training needs (one series to train on, one held out for validation)",
    )
    train_idx, val_idx = split_validation(len(data.train_y), 0.1, seed=args.seed)
    device, dtype = args.device, args.dtype
    splits = {
        "train": (data.train_x[train_idx], data.train_y[train_idx]),
        "validation": (data.train_x[val_idx], data.train_y[val_idx]),
        "test": (data.test_x, data.test_y),
    }
    tensors = {
        name: (tg.Tensor(x, device=device, dtype=dtype), tg.Tensor(y, device=device))
        for name, (x, y) in splits.items()
    }
    classes = len(data.class_names)
    cells = list(CELLS) if args.cell == "all" else [args.cell]
    count, steps, channels = splits["train"][0].shape
    size = args.recurrent_size
    for cell in cells:
        gates = CELLS[cell].gates
        check_fits(
            f"--recurrent-size {size} ({cell})",
            parameters=(channels + size) * gates * size + gates * size,  # the cell alone
            # the gates and states of every step of a batch, kept for the backward pass
            activations=min(config.batch_size, count) * steps * (gates + 1) * size,
            dtype=dtype,
            device=device,
        )
    trained_on = fingerprint(*splits["train"], *splits["validation"])
    results = []
    for cell in cells:
        nn.seed(args.seed, device)
        model = SequenceClassifier(
            cell,
            data.train_x.shape[2],
            classes,
            hidden_size=args.recurrent_size,
            device=device,
            dtype=dtype,
        )

        def evaluate(name, model=model):
            """(cross-entropy, accuracy, predicted classes) on one split."""
            x, _ = tensors[name]
            log_probs = in_batches(
                lambda idx: model.logits(rows(x, idx)).log_softmax(axis=1), x.shape[0], 256
            )
            loss, accuracy = cross_entropy_and_accuracy(log_probs, splits[name][1])
            return loss, accuracy, log_probs.argmax(axis=1)

        def after_epoch(epoch, history, evaluate=evaluate):
            history.validation_loss.append(evaluate("validation")[0])
            return False

        train_x, train_y = tensors["train"]
        history = fit(
            model,
            lambda idx, model=model, x=train_x, y=train_y: model.loss(rows(x, idx), rows(y, idx)),
            train_x.shape[0],
            config,
            np.random.default_rng(args.seed),
            f"activity {cell}",
            after_epoch,
            run_checkpoint(
                out,
                args,
                config,
                f"activity_{cell}",
                experiment=NAME,
                data=trained_on,
                cell=cell,
                recurrent_size=args.recurrent_size,
            ),
        )
        checkpoint = f"activity_{cell}.npz"
        save_model(out / checkpoint, model)
        entry = {
            "cell": cell,
            "validation_loss_per_epoch": history.validation_loss,
            "train_loss_per_epoch": history.train_loss,
            "epoch_seconds": history.epoch_seconds,
            "checkpoint": checkpoint,
        }
        for name in ("train", "test"):
            _, entry[f"{name}_accuracy"], predicted = evaluate(name)
            matrix = _confusion(splits[name][1], predicted, classes)
            entry[f"{name}_confusion"] = matrix.tolist()
            plots.confusion_matrix(
                out / f"confusion_{cell}_{name}.png",
                matrix,
                data.class_names,
                f"{cell.upper()} {name} ({entry[f'{name}_accuracy']:.1%})",
            )
        results.append(entry)
    plots.curves(
        out / "validation_loss.png",
        {r["cell"].upper(): r["validation_loss_per_epoch"] for r in results},
        "validation cross-entropy",
        "epoch",
        "cross-entropy (nats)",
    )
    return {
        "experiment": NAME,
        "class_names": data.class_names,
        "samples": {name: int(len(y)) for name, (_, y) in splits.items()},
        "steps": int(data.train_x.shape[1]),
        "channels": int(data.train_x.shape[2]),
        "clip": config.clip,
        "cells": results,
        "figures": ["validation_loss.png"]
        + [f"confusion_{r['cell']}_{name}.png" for r in results for name in ("train", "test")],
        "checkpoints": [r["checkpoint"] for r in results],
    }


def report(metrics: dict) -> str:
    lines = [
        "# Activity classification",
        "",
        f"{metrics['samples']['train']} training, {metrics['samples']['validation']} "
        f"validation and {metrics['samples']['test']} test series of {metrics['steps']} steps x "
        f"{metrics['channels']} channels; classes: {', '.join(metrics['class_names'])}.",
        "",
        "![validation cross-entropy](validation_loss.png)",
        "",
        "| cell | train accuracy | test accuracy | final validation cross-entropy "
        "| seconds per epoch |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in metrics["cells"]:
        seconds = sum(r["epoch_seconds"]) / len(r["epoch_seconds"])
        lines.append(
            f"| {r['cell'].upper()} | {r['train_accuracy']:.1%} | {r['test_accuracy']:.1%} | "
            f"{r['validation_loss_per_epoch'][-1]:.3f} | {seconds:.1f} |"
        )
    lines.append("")
    for r in metrics["cells"]:
        lines.append(
            f"![{r['cell']} train](confusion_{r['cell']}_train.png) "
            f"![{r['cell']} test](confusion_{r['cell']}_test.png)"
        )
    return "\n".join(lines) + "\n"
