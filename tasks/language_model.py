"""Experiment 2: a 4-gram word-embedding language model, three (D, P) configurations.

Writes: validation cross-entropy per epoch for every configuration in one plot, a
table of test cross-entropy / accuracy / perplexity, and for 5 random test trigrams
the 10 most probable next words per configuration.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace

import numpy as np
from tinygrad_ee.models import FourGramLanguageModel

import tinygrad_ee as tg

from . import plots
from .data import NgramData, default_ngrams, load_ngrams, quick_subset, require_rows
from .experiment import Experiment, Settings
from .files import save_model
from .options import below_one, option
from .shared import check_fits, evaluate, fingerprint, make_model, train, training_figures
from .training import TrainingConfig

CONFIGURATIONS = ((32, 256), (16, 128), (8, 64))
SHOWN = 5  # test 4-grams whose predictions the report shows: the test split's minimum


def _configuration(text: str) -> tuple[int, int]:
    try:
        dim, hidden = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected D,P such as 32,256, got {text!r}") from None
    if dim < 1 or hidden < 1:
        raise argparse.ArgumentTypeError(f"D and P must be at least 1, got {text!r}")
    return dim, hidden


@dataclass
class Options:
    """The language model's own options."""

    configs: tuple[tuple[int, int], ...] = option(
        CONFIGURATIONS,
        "embedding size D and hidden size P; repeat for several (default: 32,256 16,128 8,64)",
        parse=_configuration, flag="--config", action="append", metavar="D,P",
    )  # fmt: skip
    dropout: float | None = option(
        None, "probability of dropping each hidden unit while training", parse=below_one,
        rule="from the parameters per training 4-gram: none up to 1, 0.25 at 2, 0.5 from 4",
    )  # fmt: skip


# Capacity control (docs/experiments.md#size-rules), both from the parameters per
# training 4-gram: the more of them, the more a configuration can over-fit its corpus.
DECAY = 0.06  # weight decay DECAY * sqrt(parameters per 4-gram)


def parameter_count(vocabulary: int, dim: int, hidden: int) -> int:
    """Embedding (V, D), hidden layer (3D, P) and bias, output layer (P, V) and bias."""
    return vocabulary * (dim + hidden + 1) + 3 * dim * hidden + hidden


def weight_decay_for(parameters: int, count: int) -> float:
    """The modern recipe's weight decay, 0.06 sqrt(parameters per training 4-gram): for a
    given model, as 1 / sqrt(corpus size) (normalised weight decay, Loshchilov & Hutter,
    Decoupled Weight Decay Regularization, 2019), and less for a smaller model."""
    return round(DECAY * math.sqrt(parameters / count), 4)


def dropout_for(parameters: int, count: int) -> float:
    """The modern recipe's dropout: 0.25 log2(parameters per training 4-gram), from 0 to
    0.5. A model with more parameters than examples over-fits unless its units are kept
    from relying on each other; one with fewer is only held back by dropout."""
    return round(min(max(0.25 * math.log2(parameters / count), 0.0), 0.5), 2)


def _capacity(settings: Settings, count: int, vocabulary: int, dim: int, hidden: int):
    """(training settings, dropout, what the rules set) of one configuration."""
    parameters, rules = parameter_count(vocabulary, dim, hidden), []
    training, dropout = settings.training, settings.options.dropout
    ratio = f"{parameters} parameters, {parameters / count:.2g} per training 4-gram"
    if training.weight_decay is None:
        training = replace(training, weight_decay=weight_decay_for(parameters, count))
        rules.append(f"D={dim}, P={hidden}: weight decay {training.weight_decay:g} ({ratio})")
    if dropout is None:
        dropout = dropout_for(parameters, count)
        rules.append(f"D={dim}, P={hidden}: dropout {dropout:g} ({ratio})")
    return training, dropout, rules


def _data(settings: Settings) -> NgramData:
    data = load_ngrams(settings.data) if settings.data else default_ngrams()
    why = f"the report needs (it shows predictions for {SHOWN} test 4-grams)"
    require_rows(settings.data, "testx", len(data.test_target), SHOWN, why)
    if settings.quick:
        keep = quick_subset(len(data.train_target), 4000, settings.seed)
        data.train_context, data.train_target = data.train_context[keep], data.train_target[keep]
    return data


def _check_sizes(settings: Settings, data: NgramData) -> None:
    vocabulary, batch = len(data.words), min(settings.training.batch_size, len(data.train_target))
    evaluation = min(1000, max(len(data.val_target), len(data.test_target)))
    logit_rows = max(batch, evaluation)  # of a batch's logits (rows, V), or an evaluation's
    for dim, hidden in settings.options.configs:
        parameters = parameter_count(vocabulary, dim, hidden)
        activations = logit_rows * (hidden + vocabulary)
        check_fits(settings, f"--config {dim},{hidden}", parameters, activations)


def _train(settings: Settings, data: NgramData, tensors: dict, dim: int, hidden: int, dropout):
    """One configuration, trained: (model, history)."""
    sizes = (len(data.words), dim, hidden)
    model = make_model(settings, FourGramLanguageModel, *sizes, dropout=dropout)
    context, target = tensors["train"]
    trained_on = (data.train_context, data.train_target, data.val_context, data.val_target)
    identity = {"data": fingerprint(*trained_on), "embedding_dim": dim, "hidden_size": hidden}
    identity["dropout"] = dropout
    history = train(
        settings,
        model,
        lambda idx, key: model.loss(context[idx], target[idx], key),
        len(data.train_target),
        f"language_model_D{dim}_P{hidden}",
        f"language model D={dim}, P={hidden}",
        lambda: evaluate(model.logits, tensors["val"][0], data.val_target)[0],
        **identity,
    )
    return model, history


def _predictions(model, data: NgramData, shown: np.ndarray, device: str) -> list[dict]:
    """The 10 most probable next words of the test 4-grams ``shown``."""
    words, probabilities = model.top_k(tg.Tensor(data.test_context[shown], device=device), 10)
    return [
        {
            "context": [data.words[i] for i in data.test_context[row]],
            "actual": data.words[data.test_target[row]],
            "top10": [[data.words[w], float(p)] for w, p in zip(top, chances)],
        }
        for row, top, chances in zip(shown, words, probabilities)
    ]


def run(settings: Settings) -> dict:
    """Train, evaluate and plot; returns the figures of metrics.json."""
    data = _data(settings)
    count = len(data.train_target)
    settings.training, rules = settings.training.for_data(count, len(data.val_target))
    _check_sizes(settings, data)
    tensors = {
        split: tuple(tg.Tensor(part, device=settings.device) for part in data.split(split))
        for split in ("train", "val", "test")
    }
    shown = np.random.default_rng(settings.seed).choice(len(data.test_target), SHOWN, False)
    results = []
    for dim, hidden in settings.options.configs:
        training, dropout, more = _capacity(settings, count, len(data.words), dim, hidden)
        rules += more
        configured = replace(settings, training=training)
        model, history = _train(configured, data, tensors, dim, hidden, dropout)
        checkpoint = f"language_model_D{dim}_P{hidden}.npz"
        save_model(settings.out / checkpoint, model)
        loss, accuracy, _ = evaluate(model.logits, tensors["test"][0], data.test_target)
        results.append(
            {
                "embedding_dim": dim,
                "hidden_size": hidden,
                "label": f"D={dim}, P={hidden}",
                "dropout": dropout,
                "weight_decay": training.weight_decay,
                **training_figures(history, settings.training),
                "test_cross_entropy": loss,
                "test_accuracy": accuracy,
                "test_perplexity": math.exp(loss) if loss < 700 else math.inf,
                "checkpoint": checkpoint,
                "predictions": _predictions(model, data, shown, settings.device),
            }
        )
    curves = {r["label"]: r["validation_loss_per_epoch"] for r in results}
    path, title = settings.out / "validation_loss.png", "validation cross-entropy"
    plots.curves(path, curves, title, "epoch", "cross-entropy (nats)")
    return {
        "vocabulary": len(data.words),
        "samples": {split: int(t[1].shape[0]) for split, t in tensors.items()},
        "rules": rules,
        "configurations": results,
        "figures": ["validation_loss.png"],
        "checkpoints": [r["checkpoint"] for r in results],
    }


def report(metrics: dict) -> str:
    samples = ", ".join(f"{split} {n}" for split, n in metrics["samples"].items())
    lines = [
        "# 4-gram language model",
        "",
        f"Vocabulary {metrics['vocabulary']} words; 4-grams: {samples}.",
        "",
        "![validation cross-entropy](validation_loss.png)",
        "",
        "| D | P | epochs | selected epoch | validation cross-entropy | test cross-entropy "
        "| test accuracy | test perplexity |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in metrics["configurations"]:
        lines.append(
            f"| {r['embedding_dim']} | {r['hidden_size']} | {r['epochs_run']} | "
            f"{r['selected_epoch']} | {r['validation_loss']:.3f} | "
            f"{r['test_cross_entropy']:.3f} | {r['test_accuracy']:.1%} | "
            f"{r['test_perplexity']:.1f} |"
        )
    lines += ["", "## Most probable fourth words (most probable first)", ""]
    for r in metrics["configurations"]:
        lines += [f"### {r['label']}", ""]
        for p in r["predictions"]:
            guesses = ", ".join(f"{word} ({prob:.2f})" for word, prob in p["top10"])
            lines.append(f"- *{' '.join(p['context'])}* → (actual: {p['actual']}) {guesses}")
        lines.append("")
    return "\n".join(lines)


def summary(metrics: dict) -> str:
    parts = [
        f"{r['label']}: test CE {r['test_cross_entropy']:.3f}, accuracy {r['test_accuracy']:.1%}"
        for r in metrics["configurations"]
    ]
    return "language model " + "; ".join(parts) + f" ({metrics['seconds']:.0f} s)"


# The modern recipe: docs/results.md; its weight decay and dropout follow the corpus's
# size (above).
ORIGINAL = TrainingConfig(epochs=50, batch_size=200, lr=0.15, momentum=0.85)
MODERN = TrainingConfig(
    epochs=50, batch_size=200, lr=0.01, momentum=0.85, optimizer="adam", weight_decay=None,
    schedule="cosine", patience=10, best_epoch=True,
)  # fmt: skip
RECIPES = {"modern": (MODERN, Options()), "original": (ORIGINAL, Options(dropout=0.0))}
EXPERIMENT = Experiment(
    "language-model", "data2.h5", __doc__, Options, RECIPES, run, report, summary
)
