"""A tiny model trained with the engine alone: a 2-16-2 MLP separating two rings.

Shows the whole loop in a few lines: tensors, ops, backward, a plain SGD step.
"""

from __future__ import annotations

import numpy as np

import tinygrad_ee as tg


def two_rings(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on an inner ring (class 0) and an outer ring (class 1), with noise.

    Returns inputs (count, 2) float64 and labels (count,) int64.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=count)
    angle = rng.uniform(0, 2 * np.pi, size=count)
    radius = 1.0 + labels + rng.normal(0, 0.15, size=count)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points, labels


def train_demo(device: str = "cpu", steps: int = 300, lr: float = 0.5, seed: int = 0) -> dict:
    """Train the MLP with full-batch gradient descent; returns first/last loss and accuracy."""
    points, labels = two_rings(256, seed)
    x = tg.Tensor(points, device=device, dtype="float32")
    one_hot = tg.Tensor(np.eye(2)[labels], device=device, dtype="float32")
    rng = np.random.default_rng(seed)
    params = [
        tg.Tensor(rng.normal(0, 0.5, (2, 16)), requires_grad=True, device=device, dtype="float32"),
        tg.Tensor(np.zeros(16), requires_grad=True, device=device, dtype="float32"),
        tg.Tensor(rng.normal(0, 0.5, (16, 2)), requires_grad=True, device=device, dtype="float32"),
        tg.Tensor(np.zeros(2), requires_grad=True, device=device, dtype="float32"),
    ]
    w1, b1, w2, b2 = params
    losses = []
    for _ in range(steps):
        logits = (x @ w1 + b1).tanh() @ w2 + b2
        loss = -(logits.log_softmax(axis=1) * one_hot).sum(axis=1).mean()
        loss.backward()
        losses.append(loss.item())
        for p in params:
            p.data = p.data - lr * p.grad.data
            p.grad = None
    with tg.no_grad():
        predicted = ((x @ w1 + b1).tanh() @ w2 + b2).argmax(axis=1).numpy()
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "accuracy": float(np.mean(predicted == labels)),
    }
