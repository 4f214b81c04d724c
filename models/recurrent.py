"""Recurrent activity classifiers (experiment 3): a cell over all T steps, then an MLP.

Each cell projects all T inputs with one matrix product before the loop
(``project_inputs``), so a step costs one recurrent product plus elementwise ops,
and back-propagation through time costs O(T). An RNN or LSTM step's pre-activation
h_{t-1} W_h + (x_t W_x + b) is one op, ``linear(h, W_h, x_projected)``. LSTM and GRU
compute their gates with one product per input and split the result.

Two starts (``init=``), the same for the three cells except where noted:

- ``"xavier"`` (the original experiment's, and the default): every gate block of
  both weights Xavier-uniform, each block its own layer, W ~ U[-w0, w0] with
  w0 = sqrt(6 / (fan_in + H)), fan_in the block's input size (C for input_weight, H
  for hidden_weight); biases 0.
- ``"orthogonal"`` (common practice for recurrent nets): input_weight as above;
  each (H, H) gate block U_k of hidden_weight an independent random orthogonal matrix,
  U_k^T U_k = I (`nn.orthogonal`), so that h_{t-1} U_k keeps the norm of h_{t-1} and
  gradients through time neither grow nor shrink from the product alone; biases 0,
  except the LSTM's forget gate, b_f = 1: f = sigmoid(... + 1) starts near 0.73, so the
  cell state is kept rather than forgotten early in training.

Both draw from the initialisers' generator (`nn.seed`), input_weight first.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # host arrays: statistics of the training inputs, initial biases

from tinygrad_ee import Tensor, concat, linear, nn, zeros
from tinygrad_ee.backend import dtype_name

State = tuple[Tensor, ...]
INITS = ("xavier", "orthogonal")


class _Cell(nn.Module):
    """Shared parts: ``gates`` blocks of ``hidden_size`` units, started as ``init``
    says (the module docstring).

    input_weight (input_size, gates * hidden_size), hidden_weight (hidden_size, gates *
    hidden_size), bias (gates * hidden_size,).
    """

    gates = 1
    forget_gate: int | None = None  # the block whose bias "orthogonal" sets to 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        init: str = "xavier",
    ):
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}: expected one of {list(INITS)}")
        self.hidden_size = hidden_size
        width = self.gates * hidden_size
        # Xavier bound per gate block: each block is its own (fan_in, hidden_size) layer.
        self.input_weight = nn.uniform(
            (input_size, width), nn.xavier_bound(input_size, hidden_size), device, dtype
        )
        bias = np.zeros(width)
        if init == "xavier":
            self.hidden_weight = nn.uniform(
                (hidden_size, width), nn.xavier_bound(hidden_size, hidden_size), device, dtype
            )
        else:
            blocks = [
                nn.orthogonal((hidden_size, hidden_size), device=device, dtype=dtype).detach()
                for _ in range(self.gates)
            ]
            self.hidden_weight = nn.Parameter(concat(blocks, axis=1))
            if self.forget_gate is not None:
                bias[self.forget_gate * hidden_size : (self.forget_gate + 1) * hidden_size] = 1
        self.bias = nn.Parameter(bias, device=device, dtype=dtype)

    def project_inputs(self, x: Tensor) -> list[Tensor]:
        """x (B, T, C) -> T tensors (B, gates * hidden_size): x_t W_x + b for every t."""
        batch, steps, channels = x.shape
        by_time = x.permute(1, 0, 2).reshape(steps * batch, channels)
        projected = linear(by_time, self.input_weight, self.bias).reshape(steps, batch, -1)
        return projected.unbind(axis=0)

    def initial_state(self, batch: int, like: Tensor) -> State:
        return (zeros((batch, self.hidden_size), like.device, like.dtype),)


class RNNCell(_Cell):
    """h_t = tanh(x_t W_x + h_{t-1} W_h + b)."""

    def step(self, x_projected: Tensor, state: State) -> State:
        (h,) = state
        return (linear(h, self.hidden_weight, x_projected).tanh(),)


class LSTMCell(_Cell):
    """Gates i, f, o (sigmoid) and candidate g (tanh), blocks in the order [i, f, g, o]:

    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t).
    """

    gates = 4
    forget_gate = 1

    def initial_state(self, batch: int, like: Tensor) -> State:
        (h,) = super().initial_state(batch, like)
        return (h, h)  # (h, c), both zero

    def step(self, x_projected: Tensor, state: State) -> State:
        h, c = state
        i, f, g, o = linear(h, self.hidden_weight, x_projected).split(4, axis=1)
        c = f.sigmoid() * c + i.sigmoid() * g.tanh()
        return (o.sigmoid() * c.tanh(), c)


class GRUCell(_Cell):
    """Update gate z and reset gate r (sigmoid), blocks in the order [z, r, n]:

    n = tanh(x_t W_n + r * (h_{t-1} U_n) + b_n);  h_t = (1 - z) * h_{t-1} + z * n.

    PyTorch's GRUCell has h_t = (1 - z') * n + z' * h_{t-1}: its z' is our 1 - z, so its
    update-gate weights and biases are ours negated; and it adds a bias b_hn inside
    r * (...), which is zero in ours.
    """

    gates = 3

    def step(self, x_projected: Tensor, state: State) -> State:
        (h,) = state
        xz, xr, xn = x_projected.split(3, axis=1)
        hz, hr, hn = (h @ self.hidden_weight).split(3, axis=1)
        z = (xz + hz).sigmoid()
        r = (xr + hr).sigmoid()
        n = (xn + r * hn).tanh()
        return (h + z * (n - h),)  # = (1 - z) * h + z * n, one op fewer


CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


class SequenceClassifier(nn.Module):
    """x (B, T, C) -> [standardised] -> recurrent cell over all T steps -> last hidden
    state (B, H) -> MLP H -> 70 (ReLU) -> 30 (ReLU) -> K logits (B, K).

    ``init``: the recurrent cell's start, ``"xavier"`` or ``"orthogonal"`` (module
    docstring); the MLP head is Xavier-uniform (`nn.Linear`) with either.

    ``standardize=True``: the inputs are standardised per channel before the cell,

        x'[b, t, c] = (x[b, t, c] - input_mean[c]) / input_std[c],

    with two `nn.Buffer`s (C,) saved in `state_dict` and applied wherever the model
    runs (training, evaluation, prediction). They start as 0 and 1 (no change);
    `fit_standardization` sets them from the training inputs. ``standardize=False``
    (the default) is the model without them, exactly as before.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        classes: int,
        hidden_size: int = 128,
        head_sizes: tuple[int, ...] = (70, 30),
        device: str = "cpu",
        dtype: str = "float32",
        init: str = "xavier",
        standardize: bool = False,
    ) -> None:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: expected one of {sorted(CELLS)}")
        self.cell_name = cell
        self.cell = CELLS[cell](input_size, hidden_size, device=device, dtype=dtype, init=init)
        sizes = (hidden_size, *head_sizes, classes)
        self.head = [
            nn.Linear(n_in, n_out, init="xavier", device=device, dtype=dtype)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        ]
        self.standardize = standardize
        if standardize:
            self.input_mean = nn.Buffer(np.zeros(input_size), device=device, dtype=dtype)
            self.input_std = nn.Buffer(np.ones(input_size), device=device, dtype=dtype)

    def fit_standardization(self, x_train: Any) -> None:
        """Set ``input_mean`` and ``input_std`` from the training inputs ``x_train``
        (B, T, C), a NumPy array or Tensor, and nothing else.

        Per channel c, over all B * T values x[:, :, c], in float64 on the host: the mean
        and the population standard deviation sqrt(mean((x - mean)^2)). A channel whose
        deviation is 0 in the model's dtype (constant in training) gets 1: it is only
        centred. A channel whose x - mean (or mean, or deviation) the model's dtype
        cannot hold is a ValueError naming it. Call it outside a compiled step (it reads values
        on the host).
        """
        if not self.standardize:
            raise ValueError(
                "fit_standardization: this model was built with standardize=False "
                "(it has no input statistics to set)"
            )
        x = x_train.numpy() if isinstance(x_train, Tensor) else np.asarray(x_train)
        channels = self.input_mean.shape[0]
        if x.ndim != 3 or x.shape[2] != channels or x.shape[0] * x.shape[1] == 0:
            raise ValueError(
                f"fit_standardization: training inputs must have shape (B, T, {channels}) "
                f"with B, T > 0, got {x.shape}"
            )
        if x.dtype.kind not in "iuf":
            raise ValueError(f"fit_standardization: training inputs must be numbers, got {x.dtype}")
        if not np.isfinite(x).all():
            raise ValueError("fit_standardization: training inputs hold NaN or infinity")
        dtype = dtype_name(self.input_std.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # found below
            x = x.astype(np.float64)
            mean = x.mean(axis=(0, 1)).astype(dtype)
            std = x.std(axis=(0, 1)).astype(dtype)
            low, high = x.min(axis=(0, 1)), x.max(axis=(0, 1))
            reach = np.maximum(high - mean, mean - low)  # the largest |x - mean| computed
            finite = np.isfinite(mean) & np.isfinite(std) & np.isfinite(reach.astype(dtype))
        if not finite.all():  # std <= reach: a finite reach is a finite deviation
            c = int(np.argmin(finite))
            raise ValueError(
                f"fit_standardization: channel {c} spans {low[c]:g} to {high[c]:g}: x - mean "
                f"reaches {reach[c]:g}, beyond the range of {dtype} ({np.finfo(dtype).max:g})"
            )
        std[std == 0] = 1
        for buffer, values in ((self.input_mean, mean), (self.input_std, std)):
            buffer.data = buffer.backend.asarray(values, dtype=buffer.dtype)

    def state_problems(self, values: dict[str, np.ndarray]) -> list[str]:
        """A loaded ``input_std`` must be positive (it divides the inputs)."""
        std = values.get("input_std")
        if std is None or (std > 0).all():
            return []
        return [
            f"'input_std' must be positive, got {std.min().item()!r} (channel {int(std.argmin())})"
        ]

    def last_hidden(self, x: Tensor) -> Tensor:
        """(B, T, C) -> h_T (B, H), back-propagating through every step (inputs
        standardised first when the model standardises)."""
        channels = self.cell.input_weight.shape[0]
        if x.ndim != 3 or x.shape[2] != channels or x.shape[1] == 0:
            raise ValueError(
                f"SequenceClassifier: input must have shape (B, T, {channels}) with T > 0, "
                f"got {x.shape}"
            )
        if self.standardize:
            x = (x - self.input_mean) / self.input_std
        state = self.cell.initial_state(x.shape[0], like=x)
        for x_projected in self.cell.project_inputs(x):
            state = self.cell.step(x_projected, state)
        return state[0]

    def logits(self, x: Tensor) -> Tensor:
        """(B, T, C) -> class logits (B, K)."""
        h = self.last_hidden(x)
        for layer in self.head[:-1]:
            h = layer(h).relu()
        return self.head[-1](h)

    def loss(self, x: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of integer class targets (B,)."""
        return nn.cross_entropy(self.logits(x), targets)
