"""PyTorch eager references for the benchmarked models (optional: torch is imported lazily).

Two references per model, run on the same device, dtype, parameters and data as the
engine (a `benchmarks.models.Case`), trained with ``torch.optim.SGD`` with momentum:

- ``"elementary"``: the model written from elementary torch ops (matmul, sigmoid,
  tanh, relu, indexing, ...) with the same equations, the same parameter layout and
  the same op order as ``models/*.py``, differentiated by torch's autograd. This is the
  like-for-like comparison: same graph, other engine. Like our engine, it uses one
  fused cross-entropy (``torch.nn.functional.cross_entropy``).
- ``"nn"`` (recurrent models only): ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` with
  ``batch_first=True`` and the same MLP head (``Linear``, ``ReLU``, ``Linear``,
  ``ReLU``, ``Linear``) on the last hidden state, loaded with the same parameters
  (its second bias ``bias_hh`` held at zero): what a PyTorch user would write, with
  torch's fused recurrent kernels.

torch's SGD (v <- momentum v + g; p <- p - lr v) and ours (v <- momentum v - lr g;
p <- p + v) are the same update for a constant learning rate: its v is ours / -lr.

Without torch every function that needs it raises `TorchUnavailable`, and
`unavailable_reason` says why, so that callers can report "torch not installed"
instead of failing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from .models import Case, Runners

TORCH_MISSING = "torch not installed"
VARIANTS = ("elementary", "nn")
CLIP_EPS = 1e-6  # the autoencoder's rho_hat is clipped into [eps, 1 - eps], as in nn.bernoulli_kl


class TorchUnavailable(RuntimeError):
    """torch is not installed, or cannot serve the requested device."""


def load_torch() -> Any | None:
    """The ``torch`` module, or None when it is not installed (the one place that
    imports it; tests replace this function to simulate a machine without torch)."""
    try:
        return importlib.import_module("torch")
    except Exception:  # not installed, or installed but broken (OSError from its libraries)
        return None


def unavailable_reason(device: str) -> str | None:
    """Why torch cannot run on ``device`` ("cpu", "cuda", "cuda:N"), or None if it can."""
    torch = load_torch()
    if torch is None:
        return TORCH_MISSING
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"torch {torch.__version__} has no usable CUDA device"
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            return f"torch sees {torch.cuda.device_count()} CUDA device(s), not {device}"
    return None


def _require_torch(device: str) -> Any:
    reason = unavailable_reason(device)
    if reason is not None:
        raise TorchUnavailable(reason)
    return load_torch()


def has_variant(case: Case, variant: str) -> bool:
    """Whether ``variant`` exists for this model (``"nn"`` only for the recurrent ones)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant == "elementary" or case.spec.kind == "recurrent"


def callables(case: Case, device: str = "cpu", variant: str = "elementary") -> Runners:
    """torch's training step and inference pass for ``case`` on ``device``.

    ``step()`` returns the loss (a 0-d torch tensor) before the update; ``infer()``
    runs the forward pass under ``torch.no_grad()`` (see `benchmarks.models.Runners`).
    Raises `TorchUnavailable` without torch, ValueError for a missing variant.
    """
    torch = _require_torch(device)
    if not has_variant(case, variant):
        raise ValueError(f"no torch.nn variant for the {case.spec.name}: only recurrent models")
    torch_device = torch.device(device)
    data = {name: torch.tensor(array, device=torch_device) for name, array in case.data.items()}
    if variant == "nn":
        module, loss_fn, forward = _nn_recurrent(torch, case, torch_device)
        parameters = list(module.parameters())
    else:
        # fresh leaf tensors (copies: the step updates them in place), same names as ours
        params = {
            name: torch.tensor(array, device=torch_device, requires_grad=True)
            for name, array in case.params.items()
        }
        loss_fn, forward = _ELEMENTARY[case.spec.kind](torch, case, params)
        parameters = list(params.values())
    optimizer = torch.optim.SGD(parameters, lr=case.spec.lr, momentum=case.spec.momentum)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(data)
        loss.backward()
        optimizer.step()
        return loss.detach()

    def infer():
        with torch.no_grad():
            return forward(data)

    return Runners(step, infer)


Model = tuple[Callable[[dict], Any], Callable[[dict], Any]]  # (loss(data), forward(data))


# --------------------------------------------------------------------------- elementary ops


def _autoencoder(torch: Any, case: Case, p: dict) -> Model:
    """models.SparseAutoencoder: x (N, I) -> h = sigmoid(x W1 + b1) -> o = sigmoid(h W2 + b2).

    J = 1/(2N) sum ||x - o||^2 + lam/2 (||W1||^2 + ||W2||^2) + beta sum_b KL(rho || q_b),
    q = clip(mean_n h, eps, 1 - eps).
    """
    w1, b1 = p["encoder.weight"], p["encoder.bias"]
    w2, b2 = p["decoder.weight"], p["decoder.bias"]
    lam, beta, rho = (case.spec.loss_args[k] for k in ("lam", "beta", "rho"))

    def encode(x):
        return torch.sigmoid(x @ w1 + b1)

    def forward(data):
        return torch.sigmoid(encode(data["x"]) @ w2 + b2)

    def loss(data):
        x = data["x"]
        h = encode(x)
        error = x - torch.sigmoid(h @ w2 + b2)
        reconstruction = (error * error).sum() / (2 * x.shape[0])
        weight_decay = (lam / 2) * ((w1 * w1).sum() + (w2 * w2).sum())
        q = h.mean(dim=0).clamp(CLIP_EPS, 1 - CLIP_EPS)
        kl = rho * torch.log(rho / q) + (1 - rho) * torch.log((1 - rho) / (1 - q))
        return reconstruction + weight_decay + beta * kl.sum()

    return loss, forward


def _language_model(torch: Any, case: Case, p: dict) -> Model:
    """models.FourGramLanguageModel: context (N, 3) -> E[context] (N, 3, D) -> (N, 3D)
    -> h = sigmoid(e Wh + bh) (N, P) -> logits h Wo + bo (N, V); mean cross-entropy."""
    embedding = p["embedding.weight"]
    wh, bh, wo, bo = p["hidden.weight"], p["hidden.bias"], p["output.weight"], p["output.bias"]

    def forward(data):
        context = data["context"]
        joined = embedding[context].reshape(context.shape[0], -1)
        return torch.sigmoid(joined @ wh + bh) @ wo + bo

    def loss(data):
        return torch.nn.functional.cross_entropy(forward(data), data["targets"])

    return loss, forward


def _recurrent(torch: Any, case: Case, p: dict) -> Model:
    """models.SequenceClassifier: x (B, T, C) -> cell over all T steps -> h_T (B, H)
    -> Linear-ReLU-Linear-ReLU-Linear -> logits (B, K); mean cross-entropy.

    As in models/recurrent.py: all T input projections x_t Wx + b in one product before
    the loop, then per step one recurrent product h_{t-1} Wh split into gate blocks.
    """
    cell = case.spec.name
    wx, wh, b = p["cell.input_weight"], p["cell.hidden_weight"], p["cell.bias"]
    head = [(p[f"head.{k}.weight"], p[f"head.{k}.bias"]) for k in range(3)]
    hidden = wh.shape[0]

    def rnn(x_t, state):
        (h,) = state
        return (torch.tanh(x_t + h @ wh),)

    def lstm(x_t, state):  # blocks [i, f, g, o]
        h, c = state
        i, f, g, o = (x_t + h @ wh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return (torch.sigmoid(o) * torch.tanh(c), c)

    def gru(x_t, state):  # blocks [z, r, n]
        (h,) = state
        xz, xr, xn = x_t.chunk(3, dim=1)
        hz, hr, hn = (h @ wh).chunk(3, dim=1)
        z = torch.sigmoid(xz + hz)
        r = torch.sigmoid(xr + hr)
        n = torch.tanh(xn + r * hn)
        return (h + z * (n - h),)

    step = {"rnn": rnn, "lstm": lstm, "gru": gru}[cell]

    def forward(data):
        x = data["x"]
        batch, steps, channels = x.shape
        by_time = x.permute(1, 0, 2).reshape(steps * batch, channels)
        projected = (by_time @ wx + b).reshape(steps, batch, -1)
        h = x.new_zeros((batch, hidden))
        state = (h, h) if cell == "lstm" else (h,)
        for x_t in projected.unbind(0):
            state = step(x_t, state)
        out = state[0]
        for weight, bias in head[:-1]:
            out = torch.relu(out @ weight + bias)
        weight, bias = head[-1]
        return out @ weight + bias

    def loss(data):
        return torch.nn.functional.cross_entropy(forward(data), data["targets"])

    return loss, forward


_ELEMENTARY = {
    "autoencoder": _autoencoder,
    "language_model": _language_model,
    "recurrent": _recurrent,
}


# --------------------------------------------------------------------------- torch.nn


def torch_gate_layout(cell: str, ours: np.ndarray) -> np.ndarray:
    """One of our cell parameters in torch.nn's layout.

    Ours: Wx (C, G H), Wh (H, G H), b (G H,), gate blocks along the last axis; torch.nn:
    weight_ih (G H, C), weight_hh (G H, H), bias (G H,). RNN and LSTM (blocks [i, f, g, o]
    in both) only transpose. Our GRU has blocks [z, r, n] and h_t = (1 - z) h + z n;
    torch's has [r, z', n] and h_t = (1 - z') n + z' h, so z' = 1 - z = sigmoid(-a_z):
    its update-gate block is ours negated.
    """
    if cell == "gru":
        z, r, n = np.split(ours, 3, axis=-1)
        ours = np.concatenate([r, -z, n], axis=-1)
    return ours.T.copy()


def _nn_recurrent(torch: Any, case: Case, device: Any) -> tuple[Any, Callable, Callable]:
    """torch.nn recurrent layer + MLP head holding ``case.params``: (module, loss, forward)."""
    nn, s, p, cell = torch.nn, case.spec.sizes, case.params, case.spec.name
    layer_type = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
    dtype = getattr(torch, case.dtype)
    recurrent = layer_type(s["input"], s["hidden"], batch_first=True, device=device, dtype=dtype)
    widths = [s["hidden"], *[p[f"head.{k}.bias"].shape[0] for k in range(3)]]
    layers = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(n_in, n_out, device=device, dtype=dtype), nn.ReLU()]
    head = nn.Sequential(*layers[:-1])  # no ReLU after the last Linear
    with torch.no_grad():
        # (parameter, value) pairs, not a dict: a tensor's == is elementwise
        values = [
            (recurrent.weight_ih_l0, torch_gate_layout(cell, p["cell.input_weight"])),
            (recurrent.weight_hh_l0, torch_gate_layout(cell, p["cell.hidden_weight"])),
            (recurrent.bias_ih_l0, torch_gate_layout(cell, p["cell.bias"])),
            (recurrent.bias_hh_l0, np.zeros_like(p["cell.bias"])),  # ours has one bias only
        ]
        for k in range(3):
            linear = head[2 * k]  # Sequential(Linear, ReLU, Linear, ReLU, Linear)
            values.append((linear.weight, p[f"head.{k}.weight"].T.copy()))  # (out, in)
            values.append((linear.bias, p[f"head.{k}.bias"]))
        for parameter, value in values:
            parameter.copy_(torch.as_tensor(value))
    # Our cells have one bias; torch.nn's second one stays zero and out of training, so
    # that both models follow the same updates (torch's SGD skips it: no gradient).
    recurrent.bias_hh_l0.requires_grad_(False)
    module = nn.ModuleDict({"recurrent": recurrent, "head": head})

    def forward(data):
        outputs, _ = recurrent(data["x"])  # (B, T, H): every step's h
        return head(outputs[:, -1])

    def loss(data):
        return nn.functional.cross_entropy(forward(data), data["targets"])

    return module, loss, forward
