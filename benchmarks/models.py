"""The benchmarked models and how the engine and the hand-derived reference run them.

Each model at the sizes of docs/experiments.md (`model_specs`): autoencoder 256-64-256 batch 32;
language model (D, P) = (32, 256) batch 200; RNN/LSTM/GRU classifiers with hidden 128,
T = 150, batch 32. `make_case` fixes its parameters and one batch of data, so that every
side starts from the same state; `engine_callables` and `hand_callables` give each
side's training step (forward + backward + SGD-momentum update) and inference pass.
``benchmarks/torch_reference.py`` runs the same cases in PyTorch, and
``python -m benchmarks`` times them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from tinygrad_ee.models import FourGramLanguageModel, SequenceClassifier, SparseAutoencoder

import tinygrad_ee as tg
from tinygrad_ee import nn, optim

from . import reference

RECURRENT_CELLS = ("rnn", "lstm", "gru")
# The recurrent classifiers' data, as in the activity experiment: a 3-axis
# accelerometer (C = 3) and K = 6 classes.
CHANNELS, CLASSES = 3, 6


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model: what it is, its sizes and its training hyperparameters.

    ``kind`` is "autoencoder", "language_model" or "recurrent" (then ``name`` is the
    cell: "rnn", "lstm" or "gru"). ``sizes`` holds the shapes that matter: the
    autoencoder's input/hidden/batch; the language model's vocab/dim (D)/hidden (P)/
    batch; the classifier's input (C)/hidden (H)/classes (K)/steps (T)/batch (B).
    ``loss_args`` are extra arguments of the loss (the autoencoder's lam, beta, rho).
    """

    name: str
    kind: str
    label: str
    sizes: dict[str, int]
    lr: float
    momentum: float
    loss_args: dict[str, float] = field(default_factory=dict)


def autoencoder_spec() -> ModelSpec:
    """Experiment 1 at its defaults: 256 -> 64 -> 256, batch 32."""
    return ModelSpec(
        name="autoencoder",
        kind="autoencoder",
        label="autoencoder 256-64-256 N=32",
        sizes={"input": 256, "hidden": 64, "batch": 32},
        lr=0.075,
        momentum=0.85,
        loss_args={"lam": 5e-4, "beta": 2.0, "rho": 0.025},
    )


def language_model_spec() -> ModelSpec:
    """Experiment 2, configuration (D, P) = (32, 256), batch 200."""
    return ModelSpec(
        name="language_model",
        kind="language_model",
        label="language model D=32 P=256 N=200",
        sizes={"vocab": 250, "dim": 32, "hidden": 256, "batch": 200},
        lr=0.15,
        momentum=0.85,
    )


def recurrent_spec(cell: str, steps: int = 150, batch: int = 32, hidden: int = 128) -> ModelSpec:
    """Experiment 3: ``cell`` over T = ``steps``, then the MLP head; batch B."""
    return ModelSpec(
        name=cell,
        kind="recurrent",
        label=f"{cell} H={hidden} T={steps} B={batch}",
        sizes={
            "input": CHANNELS,
            "hidden": hidden,
            "classes": CLASSES,
            "steps": steps,
            "batch": batch,
        },
        lr=0.1,
        momentum=0.85,
    )


def model_specs(steps: int = 150, batch: int = 32, hidden: int = 128) -> list[ModelSpec]:
    """Every benchmarked model; ``steps``, ``batch`` and ``hidden`` size the recurrent ones
    (the experiments' sizes by default; smaller for quick runs)."""
    recurrent = [recurrent_spec(cell, steps, batch, hidden) for cell in RECURRENT_CELLS]
    return [autoencoder_spec(), language_model_spec(), *recurrent]


@dataclass
class Case:
    """A spec made concrete: initial parameters and one batch of data, on the host.

    ``params`` uses the engine's state-dict names and layouts (see reference.py);
    ``data`` holds "x" (autoencoder: (N, 256) in [0.1, 0.9]; classifier: (B, T, C)) or
    "context" (language model: (N, 3) word indices), and "targets" (N,) class or word
    indices except for the autoencoder. Every runner copies what it uses, so one case
    can feed the engine, the hand-derived reference and PyTorch alike.
    """

    spec: ModelSpec
    dtype: str
    params: dict[str, np.ndarray]
    data: dict[str, np.ndarray]


def make_case(spec: ModelSpec, dtype: str, rng: np.random.Generator | None = None) -> Case:
    """Parameters initialised as docs/experiments.md says, random data of the spec's sizes,
    in ``dtype``.

    ``rng`` defaults to a fresh seed-0 generator, so that a model gets the same
    parameters and data on every device and (up to rounding) in every dtype.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    np_dtype = np.dtype(dtype)
    s = spec.sizes
    if spec.kind == "autoencoder":
        params = reference.init_autoencoder(s["hidden"], rng, np_dtype, input_size=s["input"])
        data = {"x": rng.uniform(0.1, 0.9, (s["batch"], s["input"])).astype(np_dtype)}
    elif spec.kind == "language_model":
        params = reference.init_language_model(s["vocab"], s["dim"], s["hidden"], rng, np_dtype)
        data = {
            "context": rng.integers(0, s["vocab"], (s["batch"], 3)),
            "targets": rng.integers(0, s["vocab"], s["batch"]),
        }
    elif spec.kind == "recurrent":
        params = reference.init_recurrent(
            spec.name, s["input"], s["hidden"], s["classes"], rng, np_dtype
        )
        data = {
            "x": rng.normal(size=(s["batch"], s["steps"], s["input"])).astype(np_dtype),
            "targets": rng.integers(0, s["classes"], s["batch"]),
        }
    else:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return Case(spec, dtype, params, data)


class Runners(NamedTuple):
    """What gets timed for one model on one side of a comparison.

    ``step()``: forward + backward + SGD-momentum update; returns the loss before the
    update (a float, or a 0-d tensor of that library). ``infer()``: one forward pass
    without recording gradients; returns the model's output (autoencoder: the
    reconstruction (N, 256); language model: logits (N, V); classifier: logits (B, K)).
    """

    step: Callable[[], Any]
    infer: Callable[[], Any]


def engine_step(model, optimizer, loss_fn) -> Callable[[], Any]:
    """One training step of an engine model; returns the loss tensor (before the update)."""

    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss

    return step


def engine_model(case: Case, device: str = "cpu") -> nn.Module:
    """The engine's model for ``case`` on ``device``, holding ``case.params``."""
    spec, s = case.spec, case.spec.sizes
    common = {"device": device, "dtype": case.dtype}
    if spec.kind == "autoencoder":
        model = SparseAutoencoder(s["input"], s["hidden"], **common)
    elif spec.kind == "language_model":
        model = FourGramLanguageModel(s["vocab"], s["dim"], s["hidden"], **common)
    else:
        model = SequenceClassifier(
            spec.name, s["input"], s["classes"], hidden_size=s["hidden"], **common
        )
    model.load_state_dict(case.params)
    return model


def engine_callables(case: Case, device: str = "cpu") -> Runners:
    """The engine's training step and inference pass for ``case`` on ``device``."""
    spec = case.spec
    model = engine_model(case, device)
    data = {name: tg.Tensor(array, device=device) for name, array in case.data.items()}
    optimizer = optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    if spec.kind == "autoencoder":
        loss_fn = lambda: model.loss(data["x"], **spec.loss_args)
        forward = lambda: model(data["x"])
    elif spec.kind == "language_model":
        loss_fn = lambda: model.loss(data["context"], data["targets"])
        forward = lambda: model.logits(data["context"])
    else:
        loss_fn = lambda: model.loss(data["x"], data["targets"])
        forward = lambda: model.logits(data["x"])

    def infer():
        with tg.no_grad():
            return forward()

    return Runners(engine_step(model, optimizer, loss_fn), infer)


def compiled_callables(case: Case, device: str = "cpu") -> Runners:
    """The engine's training step and inference pass for ``case``, compiled
    (`tinygrad_ee.compile`): the first call traces, later calls replay."""
    eager = engine_callables(case, device)
    step = tg.compile(eager.step)
    forward = tg.compile(eager.infer)
    return Runners(step, forward)


def program_bytes(compiled: Callable[[], Any]) -> int:
    """The memory a compiled step holds between calls: its buffers (and, on a GPU, what
    its captured graphs keep)."""
    program = compiled.program()
    held = sum(buffer.nbytes for buffer in program.buffers)
    return held + getattr(program.run, "held_bytes", lambda: 0)()


def hand_callables(case: Case) -> Runners:
    """The hand-derived NumPy step and forward pass for ``case`` (CPU only).

    Works on its own copy of the parameters: the step updates them in place.
    """
    spec, data = case.spec, case.data
    params = {name: array.copy() for name, array in case.params.items()}
    optimizer = reference.SGDMomentum(spec.lr, spec.momentum)
    if spec.kind == "autoencoder":
        args = spec.loss_args
        return Runners(
            lambda: reference.autoencoder_step(
                params, optimizer, data["x"], args["lam"], args["beta"], args["rho"]
            ),
            lambda: reference.autoencoder_forward(params, data["x"]),
        )
    if spec.kind == "language_model":
        return Runners(
            lambda: reference.language_model_step(
                params, optimizer, data["context"], data["targets"]
            ),
            lambda: reference.language_model_logits(params, data["context"]),
        )
    return Runners(
        lambda: reference.recurrent_step(spec.name, params, optimizer, data["x"], data["targets"]),
        lambda: reference.recurrent_logits(spec.name, params, data["x"]),
    )
