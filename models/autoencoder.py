"""Sparse autoencoder (experiment 1): 256 -> hidden -> 256, sigmoid on both layers."""

from __future__ import annotations

from typing import Any

from tinygrad_ee import Tensor, nn, sum_of_squares


class SparseAutoencoder(nn.Module):
    """x (N, input_size) -> h = sigmoid(x W1 + b1) (N, hidden_size) -> o = sigmoid(h W2 + b2).

    Weights and biases start uniform in [-w0, w0], w0 = sqrt(6 / (fan_in + fan_out)).
    """

    def __init__(
        self,
        input_size: int = 256,
        hidden_size: int = 64,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        self.encoder = nn.Linear(input_size, hidden_size, init="xavier", device=device, dtype=dtype)
        self.decoder = nn.Linear(hidden_size, input_size, init="xavier", device=device, dtype=dtype)

    def encode(self, x: Tensor) -> Tensor:
        """(N, input_size) -> hidden activations (N, hidden_size), in (0, 1)."""
        return self.encoder(x).sigmoid()

    def decode(self, h: Tensor) -> Tensor:
        """(N, hidden_size) -> reconstruction (N, input_size), in (0, 1)."""
        return self.decoder(h).sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def loss(self, x: Tensor, lam: float, beta: float, rho: float) -> Tensor:
        """J for a batch x (N, input_size), a 0-d tensor:

        J = 1/(2N) sum_n ||x_n - o_n||^2 + lam/2 (||W1||^2 + ||W2||^2)
            + beta sum_b KL(rho || rho_hat_b),  rho_hat_b = mean_n h_nb.
        Biases are not regularised.
        """
        h = self.encode(x)
        reconstruction = sum_of_squares(x - self.decode(h)) / (2 * x.shape[0])
        w1, w2 = self.encoder.weight, self.decoder.weight
        weight_decay = (lam / 2) * (sum_of_squares(w1) + sum_of_squares(w2))
        sparsity = beta * nn.bernoulli_kl(rho, h.mean(axis=0)).sum()
        return reconstruction + weight_decay + sparsity

    def first_layer_weights(self) -> Any:
        """Host copy of W1 as (hidden_size, input_size): one row per hidden unit."""
        return self.encoder.weight.numpy().T
