"""Optimisers (SGD with momentum, Adam) and gradient-norm clipping.

An optimiser updates each parameter's ``data`` from its ``.grad`` after
``loss.backward()``. The updates are plain array arithmetic on the backend (no
graph is recorded). New arrays are always written, never modified in place:
a gradient array may be shared between tensors.

    opt = SGD(model.parameters(), lr=0.1, momentum=0.85)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

``state_dict()`` is a flat dict of Python numbers and NumPy arrays (it can be
written with ``numpy.savez``), and ``load_state_dict`` restores it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np  # host copies for state dicts only, never tensor data

from .nn import _host_array, _key_problems
from .tensor import Tensor

Array = Any  # an array of the parameters' backend


class Optimizer:
    """What every optimiser shares: its parameter list, zeroing gradients, and saving.

    Subclasses name their hyperparameters in ``HYPERPARAMETERS`` (float
    attributes, saved as ``"lr"``, ...), keep per-parameter state in lists indexed
    like ``params`` (registered in ``_state_lists``, saved as ``"velocity.0"``,
    ...), and define ``step()``.
    """

    HYPERPARAMETERS: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Tensor]) -> None:
        self.params: list[Tensor] = list(params)
        if not self.params:
            raise ValueError("optimiser got no parameters")
        seen = set()  # ids: Tensor's == is elementwise
        for i, p in enumerate(self.params):
            if not isinstance(p, Tensor):
                raise TypeError(f"parameter {i} is a {type(p).__name__}, not a Tensor")
            if id(p) in seen:
                raise ValueError(f"parameter {i} appears twice; it would be updated twice")
            seen.add(id(p))

    def step(self) -> None:
        raise NotImplementedError

    def zero_grad(self) -> None:
        """Forget every parameter's gradient (``.grad = None``)."""
        for p in self.params:
            p.grad = None

    def _state_lists(self) -> dict[str, list]:
        """Per-parameter state by name: lists of arrays (like the parameter) or ints."""
        return {}

    def _zeros(self) -> list[Array]:
        return [p.backend.xp.zeros_like(p.data) for p in self.params]

    # --- saving and loading -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state, as a flat dict of Python numbers
        and NumPy arrays: ``{"lr": 0.1, "velocity.0": array, ...}``."""
        state: dict[str, Any] = {name: float(getattr(self, name)) for name in self.HYPERPARAMETERS}
        for name, values in self._state_lists().items():
            for i, value in enumerate(values):
                is_count = isinstance(value, int)
                state[f"{name}.{i}"] = value if is_count else self.params[i].backend.to_host(value)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` saved (hyperparameters included).

        Everything is checked before anything is assigned: the keys must match this
        optimiser's exactly, numbers must be finite real scalars (0-d arrays, as
        ``numpy.load`` returns them, are fine), counts non-negative integers, and
        arrays numeric with their parameter's shape, finite once in its dtype.
        Otherwise a ValueError names every offending key and nothing changes.
        """
        lists = self._state_lists()
        # key -> (what it must be, index of its parameter)
        expected = {name: ("number", None) for name in self.HYPERPARAMETERS}
        for name, values in lists.items():
            for i, value in enumerate(values):
                expected[f"{name}.{i}"] = ("count" if isinstance(value, int) else "array", i)
        problems = _key_problems(expected=expected, given=state)

        loaded = {}
        for key, (kind, i) in expected.items():
            if key not in state:
                continue
            if kind == "number":
                loaded[key], problem = _number(key, state[key])
            elif kind == "count":
                loaded[key], problem = _count(key, state[key])
            else:
                p = self.params[i]
                loaded[key], problem = _host_array(key, state[key], p.shape, p.dtype)
            if problem:
                problems.append(problem)
        if problems:
            raise ValueError(f"{type(self).__name__}.load_state_dict: " + "; ".join(problems))

        for name in self.HYPERPARAMETERS:
            setattr(self, name, loaded[name])
        for name, values in lists.items():
            for i, value in enumerate(values):
                new = loaded[f"{name}.{i}"]
                if not isinstance(value, int):
                    p = self.params[i]
                    new = p.backend.asarray(new, dtype=p.dtype)
                values[i] = new


def _scalar(value: Any) -> np.ndarray | None:
    """A Python number or 0-d array as a 0-d NumPy array of numbers, else None."""
    if isinstance(value, Tensor):
        value = value.numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return None
    return array if array.shape == () and array.dtype.kind in "iuf" else None


def _number(key: str, value: Any) -> tuple[float | None, str | None]:
    array = _scalar(value)
    if array is None or not math.isfinite(float(array)):
        return None, f"{key!r} must be a finite number, got {value!r}"
    return float(array), None


def _count(key: str, value: Any) -> tuple[int | None, str | None]:
    array = _scalar(value)
    if array is None or array.dtype.kind not in "iu" or int(array) < 0:
        return None, f"{key!r} must be a non-negative integer, got {value!r}"
    return int(array), None


class SGD(Optimizer):
    """Stochastic gradient descent with (heavy-ball) momentum.

    For each parameter p with gradient g, with a velocity v that starts at 0:

        v <- momentum * v - lr * g
        p <- p + v

    ``momentum=0`` is plain gradient descent, p <- p - lr * g. Parameters whose
    ``.grad`` is None are skipped (their velocity is kept as it is).
    """

    HYPERPARAMETERS = ("lr", "momentum")

    def __init__(self, params: Iterable[Tensor], lr: float, momentum: float = 0.0) -> None:
        super().__init__(params)
        if not lr > 0:
            raise ValueError(f"SGD: lr must be positive, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"SGD: momentum must lie in [0, 1), got {momentum}")
        self.lr = lr
        self.momentum = momentum
        self.velocity: list[Array] = self._zeros()

    def _state_lists(self) -> dict[str, list]:
        return {"velocity": self.velocity}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            self.velocity[i] = self.momentum * self.velocity[i] - self.lr * p.grad.data
            p.data = p.data + self.velocity[i]


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015) with bias-corrected moment estimates.

    For each parameter p with gradient g, moments m and v starting at 0, and
    t counting this parameter's updates (starting at 1):

        m <- beta1 * m + (1 - beta1) * g
        v <- beta2 * v + (1 - beta2) * g^2
        m_hat = m / (1 - beta1^t)
        v_hat = v / (1 - beta2^t)
        p <- p - lr * m_hat / (sqrt(v_hat) + eps)

    Parameters whose ``.grad`` is None are skipped, and their t does not advance
    (so their bias correction stays right when they join late).
    """

    HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps")

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(params)
        beta1, beta2 = betas
        if not lr > 0:
            raise ValueError(f"Adam: lr must be positive, got {lr}")
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"Adam: betas must lie in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"Adam: eps must be positive, got {eps}")
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.first_moment: list[Array] = self._zeros()  # m
        self.second_moment: list[Array] = self._zeros()  # v
        self.steps: list[int] = [0] * len(self.params)  # t

    def _state_lists(self) -> dict[str, list]:
        return {
            "step": self.steps,
            "first_moment": self.first_moment,
            "second_moment": self.second_moment,
        }

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad.data
            self.steps[i] += 1
            t = self.steps[i]
            self.first_moment[i] = self.beta1 * self.first_moment[i] + (1 - self.beta1) * g
            self.second_moment[i] = self.beta2 * self.second_moment[i] + (1 - self.beta2) * (g * g)
            m_hat = self.first_moment[i] / (1 - self.beta1**t)
            v_hat = self.second_moment[i] / (1 - self.beta2**t)
            p.data = p.data - self.lr * m_hat / (p.backend.xp.sqrt(v_hat) + self.eps)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> float:
    """Rescale gradients so that their global L2 norm is at most ``max_norm``.

    The global norm is sqrt(sum over parameters of sum(grad^2)); parameters without
    a gradient are ignored. If it exceeds ``max_norm``, every gradient is multiplied
    by max_norm / norm (same direction, norm exactly max_norm up to rounding);
    otherwise nothing changes. A non-finite norm (inf or nan) leaves the gradients
    untouched: scaling could only turn them into nan. New arrays are written, never
    in place.

    Returns the norm before clipping, as a Python float.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    squared = 0.0
    for grad in grads:
        squared += float(grad.backend.xp.sum(grad.data * grad.data))
    norm = math.sqrt(squared)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for grad in grads:
            grad.data = grad.data * scale
    return norm
