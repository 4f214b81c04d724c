"""Optimisers (SGD with momentum, Adam) and gradient-norm clipping.

An optimiser updates each parameter's ``data`` from its ``.grad`` after
``loss.backward()``. The updates are plain array arithmetic on the backend (no
graph is recorded). New arrays are always written, never modified in place:
a gradient array may be shared between tensors.

Everything an update reads is an array, so a compiled step (`tinygrad_ee.compile`)
replays it: the per-parameter state (velocities, moments, Adam's step counts) lives in
tensors, the hyperparameters are read through `host_scalar` at every call (a schedule
may change ``lr`` between steps), and clipping computes its scale as an array.

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
from .tracing import guard, host_scalar

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

    def _state_lists(self) -> dict[str, list[Tensor]]:
        """Per-parameter state by name: lists of tensors, one per parameter (arrays like
        the parameter, or 0-d integer counts)."""
        return {}

    def _zeros(self, dtype: Any = None) -> list[Tensor]:
        """One state tensor per parameter: zeros like it, or 0-d zeros of ``dtype``."""
        if dtype is None:
            return [Tensor._make(p.backend.xp.zeros_like(p.data), p.backend) for p in self.params]
        return [
            Tensor._make(p.backend.xp.zeros((), dtype=p.backend.dtype(dtype)), p.backend)
            for p in self.params
        ]

    def _hyperparameters(self) -> list[Any]:
        """The hyperparameters as numbers a compiled step reads at every call, and its
        guard that the parameter list is the one it was traced with."""
        guard(lambda: [id(p) for p in self.params])
        return [host_scalar(lambda name=name: getattr(self, name)) for name in self.HYPERPARAMETERS]

    # --- saving and loading -------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and per-parameter state, as a flat dict of Python numbers
        and NumPy arrays: ``{"lr": 0.1, "velocity.0": array, ...}``."""
        state: dict[str, Any] = {name: float(getattr(self, name)) for name in self.HYPERPARAMETERS}
        for name, values in self._state_lists().items():
            for i, value in enumerate(values):
                state[f"{name}.{i}"] = int(value.item()) if _is_count(value) else value.numpy()
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
                expected[f"{name}.{i}"] = ("count" if _is_count(value) else "array", i)
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
                value.data = value.backend.asarray(loaded[f"{name}.{i}"], dtype=value.dtype)


def _is_count(value: Tensor) -> bool:
    return value.ndim == 0 and value.backend.kinds.get(value.dtype) == "int"


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
        self.velocity: list[Tensor] = self._zeros()

    def _state_lists(self) -> dict[str, list[Tensor]]:
        return {"velocity": self.velocity}

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        lr, momentum = self._hyperparameters()
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            v.data = momentum * v.data - lr * p.grad.data
            p.data = p.data + v.data


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
        self.first_moment: list[Tensor] = self._zeros()  # m
        self.second_moment: list[Tensor] = self._zeros()  # v
        self.steps: list[Tensor] = self._zeros("int64")  # t, on the device: no value read

    def _state_lists(self) -> dict[str, list[Tensor]]:
        return {
            "step": self.steps,
            "first_moment": self.first_moment,
            "second_moment": self.second_moment,
        }

    def step(self) -> None:
        """Update every parameter that has a gradient."""
        lr, beta1, beta2, eps = self._hyperparameters()
        for p, m, v, t in zip(self.params, self.first_moment, self.second_moment, self.steps):
            if p.grad is None:
                continue
            xp, g = p.backend.xp, p.grad.data
            t.data = t.data + 1
            count = xp.astype(t.data, xp.float64)
            m.data = beta1 * m.data + (1 - beta1) * g
            v.data = beta2 * v.data + (1 - beta2) * (g * g)
            m_hat = m.data / xp.astype(1 - beta1**count, p.dtype)
            v_hat = v.data / xp.astype(1 - beta2**count, p.dtype)
            p.data = p.data - lr * m_hat / (xp.sqrt(v_hat) + eps)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float) -> Tensor:
    """Rescale gradients so that their global L2 norm is at most ``max_norm``.

    The global norm is sqrt(sum over parameters of sum(grad^2)), accumulated in
    float64; parameters without a gradient are ignored. If it exceeds ``max_norm``,
    every gradient is multiplied by max_norm / norm (same direction, norm exactly
    max_norm up to rounding); otherwise by exactly 1. A non-finite norm (inf or nan)
    leaves the gradients as they are: scaling could only turn them into nan. The scale
    is computed as an array, never read in Python, so a compiled step replays it.

    Returns the norm before clipping: a 0-d float64 tensor (``.item()`` for a number).
    """
    if not max_norm > 0:
        raise ValueError(f"clip_grad_norm: max_norm must be positive, got {max_norm}")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0, dtype="float64")
    backend = grads[0].backend
    xp = backend.xp
    squared = xp.zeros((), dtype=xp.float64)
    for grad in grads:
        squared = squared + xp.astype(xp.sum(grad.data * grad.data), xp.float64)
    norm = xp.sqrt(squared)
    scale = xp.where(xp.isfinite(norm), max_norm / xp.maximum(norm, max_norm), 1.0)
    for grad in grads:
        grad.data = grad.data * xp.astype(scale, grad.dtype)
    return Tensor._make(norm, backend)
