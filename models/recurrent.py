"""Recurrent activity classifiers (experiment 3): a cell over all T steps, then an MLP.

Each cell projects all T inputs with one matrix product before the loop
(``project_inputs``), so a step costs one recurrent product plus elementwise ops,
and back-propagation through time costs O(T). An RNN or LSTM step's pre-activation
h_{t-1} W_h + (x_t W_x + b) is one op, ``linear(h, W_h, x_projected)``. LSTM and GRU
compute their gates with one product per input and split the result.
"""

from __future__ import annotations

from tinygrad_ee import Tensor, linear, nn, zeros

State = tuple[Tensor, ...]


class _Cell(nn.Module):
    """Shared parts: ``gates`` blocks of ``hidden_size`` units, Xavier-uniform weights.

    input_weight (input_size, gates * hidden_size), hidden_weight (hidden_size, gates *
    hidden_size), bias (gates * hidden_size,), zero at the start.
    """

    gates = 1

    def __init__(
        self, input_size: int, hidden_size: int, device: str = "cpu", dtype: str = "float32"
    ):
        self.hidden_size = hidden_size
        width = self.gates * hidden_size
        # Xavier bound per gate block: each block is its own (fan_in, hidden_size) layer.
        self.input_weight = nn.uniform(
            (input_size, width), nn.xavier_bound(input_size, hidden_size), device, dtype
        )
        self.hidden_weight = nn.uniform(
            (hidden_size, width), nn.xavier_bound(hidden_size, hidden_size), device, dtype
        )
        self.bias = nn.Parameter(zeros((width,), device, dtype))

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
    """x (B, T, C) -> recurrent cell over all T steps -> last hidden state (B, H)
    -> MLP H -> 70 (ReLU) -> 30 (ReLU) -> K logits (B, K)."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        classes: int,
        hidden_size: int = 128,
        head_sizes: tuple[int, ...] = (70, 30),
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}: expected one of {sorted(CELLS)}")
        self.cell_name = cell
        self.cell = CELLS[cell](input_size, hidden_size, device=device, dtype=dtype)
        sizes = (hidden_size, *head_sizes, classes)
        self.head = [
            nn.Linear(n_in, n_out, init="xavier", device=device, dtype=dtype)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        ]

    def last_hidden(self, x: Tensor) -> Tensor:
        """(B, T, C) -> h_T (B, H), back-propagating through every step."""
        channels = self.cell.input_weight.shape[0]
        if x.ndim != 3 or x.shape[2] != channels or x.shape[1] == 0:
            raise ValueError(
                f"SequenceClassifier: input must have shape (B, T, {channels}) with T > 0, "
                f"got {x.shape}"
            )
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
