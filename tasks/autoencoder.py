"""Experiment 1: a sparse autoencoder on 16x16 natural image patches.

Writes: patches before/after preprocessing, the loss curve, the first-layer weight
grid, and (unless ``--no-sweep``) one weight grid per hidden size x lambda.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tinygrad_ee.models import SparseAutoencoder

import tinygrad_ee as tg

from . import plots
from .data import DataError, default_patches, load_patches, preprocess_patches, quick_subset
from .experiment import Experiment, Settings
from .files import save_model
from .options import non_negative, open_unit_interval, option, positive_int
from .shared import check_fits, fingerprint, make_model, train, training_figures
from .training import TrainingConfig

SWEEP_HIDDEN = (16, 49, 100)
SWEEP_LAMBDA = (0.0, 2e-4, 1e-3)


@dataclass
class Options:
    """The autoencoder's own options."""

    hidden_size: int = option(64, "hidden units L_hid", parse=positive_int)
    lam: float = option(5e-4, "weight decay lambda", parse=non_negative, in_dtype=True)
    beta: float = option(2.0, "sparsity weight beta", parse=non_negative, in_dtype=True)
    rho: float = option(0.025, "target activation rho", parse=open_unit_interval, in_dtype=True)
    sweep: bool = option(True, "skip the 3 x 3 hidden size x lambda sweep", flag="--no-sweep")
    sweep_epochs: int | None = option(
        None, "epochs per sweep configuration (default: 25; with --quick: 2)", parse=positive_int
    )


def _patches(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """(RGB patches (N, 3, S, S), preprocessed ones (N, S*S)) of the run."""
    data = settings.data
    rgb = load_patches(data) if data else default_patches(seed=settings.seed)
    if rgb.shape[2] != rgb.shape[3]:
        shape = f"{rgb.shape[2]} x {rgb.shape[3]}"
        raise DataError(
            f"{data}: dataset 'data': the autoencoder needs square patches, got {shape}"
        )
    if settings.quick:
        rgb = rgb[quick_subset(len(rgb), 2048, settings.seed)]
    return rgb, preprocess_patches(rgb)


def _plot_patches(settings: Settings, rgb: np.ndarray, patches: np.ndarray) -> None:
    """200 random patches (seeded), before and after preprocessing, 20 a row."""
    shown = np.random.default_rng(settings.seed).choice(len(rgb), min(200, len(rgb)), False)
    colour, rgb_range = rgb[shown].transpose(0, 2, 3, 1), (float(rgb.min()), float(rgb.max()))
    grey = patches[shown].reshape(-1, rgb.shape[-1], rgb.shape[-1])  # values in [0.1, 0.9]
    for name, images, when, scale in (
        ("raw", colour, "before", rgb_range),
        ("preprocessed", grey, "after", (0.0, 1.0)),
    ):
        path = settings.out / f"patches_{name}.png"
        plots.image_grid(path, images, f"patches {when} preprocessing", 20, scale)


def _train(settings: Settings, x: tg.Tensor, data: str, hidden: int, lam: float, run: str):
    """A model of ``hidden`` units trained with weight decay ``lam`` on ``x`` (whose
    fingerprint is ``data``): (model, history)."""
    o = settings.options
    model = make_model(settings, SparseAutoencoder, x.shape[1], hidden)
    identity = {"data": data, "hidden_size": hidden, "lam": lam, "beta": o.beta, "rho": o.rho}
    history = train(
        settings,
        model,
        lambda indices, key: model.loss(x[indices], lam, o.beta, o.rho),
        x.shape[0],
        run,
        run if run == "autoencoder" else f"sweep hidden={hidden} lambda={lam:g}",
        **identity,
    )
    return model, history


def _unit_images(model: SparseAutoencoder) -> np.ndarray:
    weights = model.first_layer_weights()  # (hidden, S*S)
    side = int(round(weights.shape[1] ** 0.5))
    return weights.reshape(-1, side, side)


def _sweep(settings: Settings, x: tg.Tensor, data: str, epochs: int) -> list[dict]:
    """The 3 x 3 sweep of hidden size and lambda, ``epochs`` each: one weight grid each."""
    sweep = replace(settings, training=replace(settings.training, epochs=epochs))
    results = []
    for hidden in SWEEP_HIDDEN:
        for lam in SWEEP_LAMBDA:
            name = f"sweep_hidden{hidden}_lambda{lam:g}"
            model, history = _train(sweep, x, data, hidden, lam, name)
            title = f"hidden {hidden}, lambda {lam:g}"
            plots.image_grid(settings.out / f"{name}.png", _unit_images(model), title)
            loss, figure = history.train_loss[-1], f"{name}.png"
            entry = {"hidden_size": hidden, "lambda": lam, "final_train_loss": loss}
            results.append({**entry, "figure": figure})
    return results


def run(settings: Settings) -> dict:
    """Train, evaluate and plot; returns the figures of metrics.json."""
    o = settings.options
    rgb, patches = _patches(settings)
    count, inputs = patches.shape
    settings.training, rules = settings.training.for_data(count, 0)
    parameters = 2 * inputs * o.hidden_size + o.hidden_size + inputs
    activations = count * (inputs + o.hidden_size)  # the data, encoded whole at the end
    check_fits(settings, f"--hidden-size {o.hidden_size}", parameters, activations)
    _plot_patches(settings, rgb, patches)
    x, data = tg.Tensor(patches, device=settings.device, dtype=settings.dtype), fingerprint(patches)
    model, history = _train(settings, x, data, o.hidden_size, o.lam, "autoencoder")
    save_model(settings.out / "autoencoder.npz", model)
    curve = {"training loss J": history.train_loss}
    plots.curves(settings.out / "loss.png", curve, "autoencoder loss", "epoch", "J")
    title = f"first-layer weights, {o.hidden_size} hidden units"
    plots.image_grid(settings.out / "weights.png", _unit_images(model), title)
    with tg.no_grad():
        final_loss = model.loss(x, o.lam, o.beta, o.rho).item()
        mean_activation = float(model.encode(x).mean(axis=0).numpy().mean())
    sweep_epochs = o.sweep_epochs or (2 if settings.quick else 25)
    sweep = _sweep(settings, x, data, sweep_epochs) if o.sweep else []
    return {
        "samples": count,
        "rules": rules,
        "final_loss": final_loss,
        **training_figures(history, settings.training),
        "mean_hidden_activation": mean_activation,
        "sweep": sweep,
        "sweep_epochs": sweep_epochs,
        "figures": ["patches_raw.png", "patches_preprocessed.png", "loss.png", "weights.png"]
        + [entry["figure"] for entry in sweep],
        "checkpoints": ["autoencoder.npz"],
    }


def report(metrics: dict) -> str:
    """The markdown of report.md."""
    paragraphs = [
        "# Sparse autoencoder",
        f"{metrics['samples']} preprocessed 16x16 patches; "
        f"final loss J = {metrics['final_loss']:.4f}; "
        f"mean hidden activation {metrics['mean_hidden_activation']:.4f}.",
        "![patches before](patches_raw.png) ![patches after](patches_preprocessed.png)",
        "![loss](loss.png)",
        "![weights](weights.png)",
    ]
    if metrics["sweep"]:
        table = ["| hidden | lambda | final training J | weights |", "|---:|---:|---:|---|"]
        for e in metrics["sweep"]:
            loss = f"{e['final_train_loss']:.4f}"
            table.append(f"| {e['hidden_size']} | {e['lambda']:g} | {loss} | ![]({e['figure']}) |")
        paragraphs += ["## Sweep: hidden size x lambda", "\n".join(table)]
    return "\n\n".join(paragraphs) + "\n"


def summary(metrics: dict) -> str:
    return f"autoencoder final loss J {metrics['final_loss']:.4f} ({metrics['seconds']:.0f} s)"


# The original experiment's learning rate, 0.075, drives every hidden unit to zero
# activation within an epoch with the exact gradient of J; 0.01 trains to rho_hat ~ rho
# (docs/results.md). --lr 0.075 gives the original value.
ORIGINAL = TrainingConfig(epochs=200, batch_size=32, lr=0.01, momentum=0.85)
RECIPES = {"modern": (ORIGINAL, Options()), "original": (ORIGINAL, Options())}
EXPERIMENT = Experiment(
    "autoencoder", "data1.h5", __doc__, Options, RECIPES, run, report, summary, validated=False
)
