"""A tiny model trained with the engine alone: a 2-16-2 MLP separating two rings, with
bare tensors, ops, backward and a plain gradient-descent step."""

from __future__ import annotations

import numpy as np

import tinygrad_ee as tg


def two_rings(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy points on an inner ring (class 0) and an outer one (class 1): inputs
    (count, 2) float64 and labels (count,) int64."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    angle = rng.uniform(0, 2 * np.pi, size=count)
    radius = 1.0 + labels + rng.normal(0, 0.15, size=count)
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1), labels


def train_demo(device: str = "cpu", steps: int = 300, lr: float = 0.5, seed: int = 0) -> dict:
    """Full-batch gradient descent; returns the first and last loss and the accuracy."""
    points, labels = two_rings(256, seed)
    x = tg.Tensor(points, device=device, dtype="float32")
    one_hot = tg.Tensor(np.eye(2)[labels], device=device, dtype="float32")
    rng = np.random.default_rng(seed)

    def parameter(shape):  # weights drawn from N(0, 0.5^2), biases 0
        value = rng.normal(0, 0.5, shape) if len(shape) == 2 else np.zeros(shape)
        return tg.Tensor(value, requires_grad=True, device=device, dtype="float32")

    params = [parameter(shape) for shape in [(2, 16), (16,), (16, 2), (2,)]]
    w1, b1, w2, b2 = params
    losses = []
    for _ in range(steps):
        logits = (x @ w1 + b1).tanh() @ w2 + b2
        loss = -(logits.log_softmax(axis=1) * one_hot).sum(axis=1).mean()
        loss.backward()
        losses.append(loss.item())
        for p in params:
            p.data, p.grad = p.data - lr * p.grad.data, None
    with tg.no_grad():
        predicted = ((x @ w1 + b1).tanh() @ w2 + b2).argmax(axis=1).numpy()
    accuracy = float(np.mean(predicted == labels))
    return {"first_loss": losses[0], "last_loss": losses[-1], "accuracy": accuracy}
